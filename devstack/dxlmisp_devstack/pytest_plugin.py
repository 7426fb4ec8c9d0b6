"""The dev stack's pytest plugin (``pytest11`` entry point ``dxlmisp_devstack``): opt-in fixtures, none autouse.

- ``devstack``: the running stack with the service (:class:`~dxlmisp_devstack.testing.StackHandle`), one per
  session, stopped by PID at the end; its fault hooks are documented on the handle.
- ``misp_clean``: empties the dev MISP server (events, attributes, objects, sightings, tags) for the test.
- ``misp``: a PyMISP client on the dev MISP server, with the admin key.
- ``dxl_requester``: a :class:`~dxlmisp_devstack.testing.Requester` over the stack's real fabric.
- ``dxl_events``: a factory: ``dxl_events(topic)`` is an :class:`~dxlmisp_devstack.testing.EventWaiter`,
  subscribed before it returns and closed after the test.

Without mosquitto the ``devstack`` fixture fails with one line that says how to install it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dxlmisp_devstack.fabric.broker import BrokerError, find_mosquitto
from dxlmisp_devstack.testing import EventWaiter, Requester, StackHandle, running_stack


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """The dev stack (fabric, MISP, service) for the whole session."""
    problem = ""
    try:
        find_mosquitto()
    except BrokerError as exc:
        problem = str(exc)
    if problem:  # outside the except block: one line, no chained traceback
        pytest.fail(f"dxlmisp-devstack: {problem}", pytrace=False)
    with running_stack(tmp_path_factory.mktemp("devstack"), service=True) as handle:
        yield handle


@pytest.fixture()
def misp_clean(devstack: StackHandle) -> None:
    """An empty dev MISP server for this test."""
    devstack.reset_misp()


@pytest.fixture(scope="session")
def misp(devstack: StackHandle) -> Any:
    """PyMISP on the dev MISP server, with the admin key."""
    return devstack.misp()


@pytest.fixture(scope="session")
def dxl_requester(devstack: StackHandle) -> Requester:
    """A DXL requester on the stack's fabric (closed with the stack)."""
    return devstack.requester()


@pytest.fixture()
def dxl_events(dxl_requester: Requester) -> Iterator[Callable[[str], EventWaiter]]:
    """``dxl_events(topic)``: an event waiter on ``topic``; every waiter made is closed after the test."""
    waiters: list[EventWaiter] = []

    def subscribe(topic: str) -> EventWaiter:
        waiter = dxl_requester.event_waiter(topic)
        waiters.append(waiter)
        return waiter

    yield subscribe
    for waiter in waiters:
        waiter.close()
