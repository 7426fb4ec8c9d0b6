"""Faults over the real wire, each on a service variant of its own: a slow MISP, a full incoming queue, a
broker restart and a SIGTERM with requests in hand. Outcomes are asserted, never times.
"""
from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dxlclient.message import Message, Request

from dxlmisp_devstack.testing import Requester, ServiceProcess, StackHandle
from dxlmispservice.names import request_topic
from tests.e2e.helpers import Collect

QUIET = {"zeroMqNotificationTopics": None, "zeroMqPort": None}


@contextmanager
def variant(devstack: StackHandle, directory: Path, unique_id: str, general: dict[str, str | None] | None = None,
            sections: dict[str, dict[str, str]] | None = None) -> Iterator[ServiceProcess]:
    """A service variant under ``unique_id`` (feed and forwarding off), stopped by PID at the end."""
    config = devstack.config_dir(directory / "config", {
        "General": {**QUIET, "serviceUniqueId": unique_id, **(general or {})}, "Feed": {"enabled": "false"},
        **(sections or {})})
    with devstack.run_service(config) as service:
        yield service


def send_async(requester: Requester, unique_id: str, api_name: str, payloads: list[dict[str, Any]],
               collect: Collect) -> list[str]:
    """Send each payload as an asynchronous request; their message ids."""
    ids = []
    for payload in payloads:
        request = Request(request_topic(api_name, unique_id))
        request.payload = json.dumps(payload).encode()
        ids.append(request.message_id)
        requester.client.async_request(request, collect)
    return ids


def test_slow_misp_is_misp_unavailable_after_request_timeout_and_others_are_served(
        devstack: StackHandle, dxl_requester: Requester, misp: Any, tmp_path: Path) -> None:
    """With restSearch delayed past requestTimeout, a search answers misp_unavailable, and a get_event sent
    after it is answered first, while the search still waits."""
    event = misp.add_event({"info": "served meanwhile", "distribution": 0}, pythonify=False)["Event"]
    with variant(devstack, tmp_path, "e2e-slow", {"requestTimeout": "1"}):
        devstack.delay_route("/events/restSearch", 4)
        slow = Collect(1)
        began = time.monotonic()
        send_async(dxl_requester, "e2e-slow", "search", [{"eventid": event["id"]}], slow)
        fast = dxl_requester.request(request_topic("get_event", "e2e-slow"), {"event_id": event["id"]})
        assert fast.ok and fast.payload["Event"]["uuid"] == event["uuid"]
        assert not slow.done.is_set()  # the search is still waiting on MISP
        assert slow.done.wait(30)
        print(f"measured: misp_unavailable after {time.monotonic() - began:.2f} s (requestTimeout 1 s)")
    (answer,) = slow.responses.values()
    assert answer.error_code == 4 and "timeout" in answer.error_message.lower(), answer.error_message


def test_a_full_incoming_queue_answers_service_busy_and_the_service_stays_up(
        devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """With one worker thread and a queue of two, a burst of twelve slow searches gets every request an
    answer: some service_busy, the rest their results; the service keeps its connection and counts it."""
    pool = {"IncomingMessagePool": {"threadCount": "1", "queueSize": "2"}}
    with variant(devstack, tmp_path, "e2e-busy", {"apiNames": "search,status"}, pool) as service:
        devstack.delay_route("/events/restSearch", 1)
        burst = Collect(12)
        send_async(dxl_requester, "e2e-busy", "search", [{"eventid": 987654}] * 12, burst)
        assert burst.done.wait(60), f"{len(burst.responses)} of 12 answers"
        devstack.delay_route("/events/restSearch", 0)
        status = dxl_requester.request(request_topic("status", "e2e-busy"), {})
        log = service.log_text()
    codes = burst.codes()
    assert 7 in codes and 0 in codes and set(codes) <= {0, 7}
    assert status.ok and status.payload["requests"]["service_busy"] == codes.count(7)
    busy = next(r for r in burst.responses.values() if r.message_type == Message.MESSAGE_TYPE_ERROR)
    assert "incoming queue is full" in busy.error_message and json.loads(busy.payload)["error"] == "service_busy"
    assert "Unexpected disconnect" not in log and "Failed to connect" not in log


def test_the_service_comes_back_after_a_broker_restart(devstack: StackHandle, dxl_requester: Requester,
                                                      tmp_path: Path) -> None:
    """The broker restarts on the same port: the service reconnects, registers again and answers, within
    a bounded wait."""
    with variant(devstack, tmp_path, "e2e-broker", {"apiNames": "status"}):
        assert dxl_requester.request(request_topic("status", "e2e-broker"), {}).ok
        began = time.monotonic()
        devstack.restart_broker()
        dxl_requester.wait_connected(60)
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                answer = dxl_requester.request(request_topic("status", "e2e-broker"), {}, timeout=5)
            except TimeoutError:
                continue
            if answer.ok:
                break
            time.sleep(0.5)  # 0x80000001 until the service has registered again
        assert answer is not None and answer.ok, answer
        print(f"measured: answering again {time.monotonic() - began:.2f} s after the broker restart began")


@pytest.mark.parametrize("count", [32])
def test_sigterm_answers_every_request_received_before_exiting(devstack: StackHandle, dxl_requester: Requester,
                                                               tmp_path: Path, count: int) -> None:
    """SIGTERM while 32 slow requests are in hand: every one is answered before the process exits, and the
    exit is clean."""
    pool = {"IncomingMessagePool": {"threadCount": "4", "queueSize": "100"}}
    with variant(devstack, tmp_path, "e2e-sigterm", {"apiNames": "search"}, pool) as service:
        devstack.delay_route("/events/restSearch", 0.3)
        answers = Collect(count)
        send_async(dxl_requester, "e2e-sigterm", "search", [{"eventid": 987654}] * count, answers)
        deadline = time.monotonic() + 30
        while not [r for r in devstack.misp_requests() if r["path"] == "/events/restSearch"]:
            assert time.monotonic() < deadline, "the service never asked MISP"
            time.sleep(0.05)
        began = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        assert answers.done.wait(60), f"{len(answers.responses)} of {count} answers"
        answered = time.monotonic() - began
        assert service.process.wait(60) == 0
        print(f"measured: {len(answers.responses)} answers {answered:.2f} s after SIGTERM, exit "
              f"{time.monotonic() - began:.2f} s after it")
    assert answers.codes() == [0] * count
