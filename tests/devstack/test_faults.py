"""The dev stack's fault hooks and its real-broker limits, on a stack of their own (they disturb it)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dxlmisp_devstack.fabric.broker import MAX_PACKET_SIZE
from dxlmisp_devstack.testing import StackHandle, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """A stack without the service, for this module only."""
    with running_stack(tmp_path_factory.mktemp("faults"), service=False) as handle:
        yield handle


def _version(stack: StackHandle, timeout: float = 5.0) -> requests.Response:
    return requests.get(stack.info["misp_url"].rstrip("/") + "/servers/getVersion", timeout=timeout,
                        headers={"Authorization": stack.info["misp_api_key"], "Accept": "application/json"})


def test_request_log_lists_method_path_and_status(stack: StackHandle) -> None:
    """The request log has each answered request with its status, 404s included, and a reset empties it."""
    stack.reset_misp()
    assert stack.misp_requests() == []
    _version(stack)
    requests.get(stack.info["misp_url"].rstrip("/") + "/no/such/route", timeout=5,
                 headers={"Authorization": stack.info["misp_api_key"], "Accept": "application/json"})
    assert stack.misp_requests() == [{"method": "GET", "path": "/servers/getVersion", "status": 200},
                                     {"method": "GET", "path": "/no/such/route", "status": 404}]
    stack.reset_misp()
    assert stack.misp_requests() == []


def test_delayed_route_outlasts_a_short_client_timeout(stack: StackHandle) -> None:
    """A route delayed by 3 s makes a 0.5 s client time out; other routes are not delayed; 0 lifts it."""
    stack.reset_misp()
    stack.delay_route("/servers/getVersion", 3)
    with pytest.raises(requests.ReadTimeout):
        _version(stack, timeout=0.5)
    assert stack.misp().search_index(limit=1) == []  # another route answers at once
    stack.delay_route("/servers/getVersion", 0)
    assert _version(stack, timeout=2).status_code == 200


def test_bad_delay_is_refused_with_a_message(stack: StackHandle) -> None:
    """A delay without a leading '/' or out of range is MISP's 400 naming the problem."""
    with pytest.raises(RuntimeError, match="must start with '/'"):
        stack.delay_route("servers", 1)
    with pytest.raises(RuntimeError, match="must be from 0 to"):
        stack.delay_route("/servers", 10_000)


def test_canned_answer_stands_in_for_one_route_until_removed(stack: StackHandle) -> None:
    """A canned answer replaces one route's answer (status and JSON body), is logged, leaves other routes
    alone, and is gone after status 0 and after a reset."""
    stack.reset_misp()
    stack.answer_route("/servers/getVersion", {"odd": [1]}, status=202)
    reply = _version(stack)
    assert (reply.status_code, reply.json()) == (202, {"odd": [1]})
    assert stack.misp().search_index(limit=1) == []
    assert stack.misp_requests()[0] == {"method": "GET", "path": "/servers/getVersion", "status": 202}
    stack.answer_route("/servers/getVersion", None, status=0)
    assert "version" in _version(stack).json()
    stack.answer_route("/servers/getVersion", {})
    stack.reset_misp()
    assert "version" in _version(stack).json()
    with pytest.raises(RuntimeError, match="must be from 200 to 599"):
        stack.answer_route("/servers/getVersion", {}, status=99)


def test_misp_stops_and_comes_back_with_its_data_on_the_same_url(stack: StackHandle) -> None:
    """stop_misp refuses connections; start_misp serves the same URL and the same database."""
    stack.reset_misp()
    misp = stack.misp()
    made = misp.add_event({"info": "survives a restart"}, pythonify=True)
    old_pid = stack.info["pids"]["misp"]
    stack.stop_misp()
    with pytest.raises(requests.ConnectionError):
        _version(stack, timeout=2)
    stack.start_misp()
    assert stack.info["pids"]["misp"] != old_pid
    assert stack.misp().get_event(made.id, pythonify=True).info == "survives a restart"


def test_broker_restart_keeps_the_port_and_clients_reconnect(stack: StackHandle) -> None:
    """restart_broker starts a new mosquitto on the same port; a connected client's events flow again."""
    sender, receiver = stack.requester("spare1"), stack.requester("spare2")
    port, pid = stack.info["broker_port"], stack.info["pids"]["broker"]
    stack.restart_broker()
    assert stack.info["broker_port"] == port and stack.info["pids"]["broker"] != pid
    sender.wait_connected()
    receiver.wait_connected()
    waiter = receiver.event_waiter("/devstack/faults/after-restart")
    sender.publish("/devstack/faults/after-restart", {"n": 1})
    assert waiter.wait_for(lambda e: e == {"n": 1}, timeout=30) == {"n": 1}


def test_broker_disconnects_a_client_that_sends_over_the_real_limit(stack: StackHandle) -> None:
    """A packet over 1,048,576 bytes is not delivered and its sender is cut off, as by the real broker."""
    sender, receiver = stack.requester("spare1"), stack.requester("spare3")
    waiter = receiver.event_waiter("/devstack/faults/size/#")
    sender.publish("/devstack/faults/size/large", "x" * (MAX_PACKET_SIZE + 1000))
    for _ in range(30):  # the disconnect takes what was queued behind the large packet: send until one lands
        sender.wait_connected()
        sender.publish("/devstack/faults/size/small", {"after": True})
        try:
            waiter.wait_for(lambda e: e == {"after": True}, timeout=1)
            break
        except TimeoutError:
            continue
    assert waiter.events and all(e == {"after": True} for e in waiter.events)
    log = Path(stack.info["workdir"], "broker", "mosquitto.log").read_text(errors="replace")
    assert "disconnected due to oversize packet" in log
