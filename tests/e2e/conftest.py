"""End-to-end fixtures: one dev stack (fabric, MISP, service) for the session, and a clean MISP per test.

Every end-to-end test runs over these: ``stack`` is :func:`dxlmispservice.testing.running_stack` in a temp
dir (``python -m devstack up`` as a child, stopped by PID at the end), ``requester`` a DXL client on the
stack's fabric, and ``clean_misp`` empties MISP before each test. The feed's state file is left to the feed
tests.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dxlmispservice.testing import Requester, StackHandle, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """The dev stack with the service, for the whole session."""
    with running_stack(tmp_path_factory.mktemp("devstack"), service=True) as handle:
        yield handle


@pytest.fixture(scope="session")
def requester(stack: StackHandle) -> Requester:
    """A DXL requester connected to the stack's fabric (closed with the stack)."""
    return stack.requester()


@pytest.fixture(autouse=True)
def clean_misp(stack: StackHandle) -> None:
    """Empty the dev MISP server before each test."""
    stack.reset_misp()


@pytest.fixture(scope="session")
def misp(stack: StackHandle) -> Any:
    """PyMISP straight on the dev MISP server (admin key): the judge of what MISP holds."""
    return stack.misp()
