"""One role per instance, over the real stack: of two instances of one service type with the feed on (and
forwarding the same ZeroMQ topics), the first holds the roles and the second keeps them off, then takes them
when the first stops, or once the registration a ``kill -9`` left behind expires."""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from dxlmisp_devstack.testing import Requester, StackHandle, make_config_dir
from dxlmispservice.names import notification_topic, service_type

UNIQUE_ID = "e2e-roles"
FEED_TOPIC = f"/opendxl-misp/event/feed/{UNIQUE_ID}/event"
FORWARDED_TOPIC = notification_topic("misp_json_event", UNIQUE_ID)


def config(devstack: StackHandle, directory: Path, api_names: str = "status", forward: bool = False) -> Path:
    """An instance of the e2e-roles service with the feed on (and, with ``forward``, forwarding the stack's
    ZeroMQ topics) and its own state file, checking roles every 0.5 s."""
    base = directory / "base"
    shutil.copytree(devstack.info["service_config_dir"], base, ignore=shutil.ignore_patterns("*feed-state*"))
    forwarding = {} if forward else {"zeroMqNotificationTopics": None}
    return make_config_dir(base, directory / "service", {
        "General": {"serviceUniqueId": UNIQUE_ID, "apiNames": api_names, "roleCheckInterval": "0.5",
                    **forwarding},
        "Feed": {"enabled": "true", "interval": "0.5", "lookback": "1m"},
    })


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_standby_keeps_the_feed_off_and_takes_it_when_the_holder_stops(
        devstack: StackHandle, dxl_requester: Requester, misp: object, tmp_path: Path) -> None:
    """The second instance logs one line that it keeps the feed off (the first serves no topic at all: it
    registers to claim the feed); once the first stops (and unregisters), the second takes the feed and
    publishes an event made after that."""
    with dxl_requester.event_waiter(FEED_TOPIC) as waiter:
        with devstack.run_service(config(devstack, tmp_path / "first", api_names="")) as first:
            second_context = devstack.run_service(config(devstack, tmp_path / "second"))
            second = second_context.__enter__()
            try:
                wait_for(lambda: "Keeping the feed off" in second.log_text())
                assert "Keeping the feed off" not in first.log_text()
            except BaseException:
                second_context.__exit__(None, None, None)
                raise
        try:
            wait_for(lambda: "Taking the feed" in second.log_text())
            made = misp.add_event({"info": "after the handover", "timestamp": int(time.time()) - 10},  # type: ignore[attr-defined]
                                  pythonify=False)["Event"]
            event = waiter.wait_for(lambda e: e["Event"]["uuid"] == made["uuid"], timeout=30)
            status = dxl_requester.request(f"/opendxl-misp/service/misp-api/{UNIQUE_ID}/status", {})
        finally:
            log = second.log_text()
            second_context.__exit__(None, None, None)
    assert event["feed"]["complete"] is True
    assert log.count("Keeping the feed off") == 1
    assert status.ok and status.payload["roles"] == ["feed"]


def test_a_standby_takes_the_roles_once_a_killed_holders_registration_expires(
        devstack: StackHandle, dxl_requester: Requester, misp: object, tmp_path: Path) -> None:
    """A holder of the feed and the forwarding killed with SIGKILL leaves its registration behind: the
    standby keeps both roles off while that registration lives, and takes both once the registry drops it
    (aged past the TTL and the grace); the feed and the forwarded ZeroMQ topic then come from the standby."""
    with devstack.run_service(config(devstack, tmp_path / "first", forward=True)) as first, \
            devstack.run_service(config(devstack, tmp_path / "second", forward=True)) as second:
        wait_for(lambda: second.log_text().count("Keeping the") == 2)
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        time.sleep(2.0)  # four role checks of the standby, with the killed holder's registration still there
        assert first.service_guid in dxl_requester.services(service_type(UNIQUE_ID))
        assert "Taking the" not in second.log_text()
        with dxl_requester.event_waiter(FEED_TOPIC) as feed, dxl_requester.event_waiter(FORWARDED_TOPIC) as zmq:
            assert devstack.age_registration(first.service_guid, minutes=24 * 60)
            wait_for(lambda: second.log_text().count("Taking the") == 2)
            made = misp.add_event({"info": "after the kill", "timestamp": int(time.time()) - 10},  # type: ignore[attr-defined]
                                  pythonify=False)["Event"]
            fed = feed.wait_for(lambda e: e["Event"]["uuid"] == made["uuid"], timeout=30)
            forwarded = zmq.wait_for(lambda e: e.get("Event", {}).get("uuid") == made["uuid"], timeout=30)
        status = dxl_requester.request(f"/opendxl-misp/service/misp-api/{UNIQUE_ID}/status", {})
    assert first.service_guid not in dxl_requester.services(service_type(UNIQUE_ID))
    assert fed["feed"]["complete"] is True and forwarded["Event"]["info"] == "after the kill"
    assert status.ok and sorted(role.split(":")[0] for role in status.payload["roles"]) == ["feed", "forwarder"]


def test_two_instances_started_at_once_end_with_one_feed(
        devstack: StackHandle, dxl_requester: Requester, misp: object, tmp_path: Path) -> None:
    """Two instances started in the same instant (the start-up race): whether or not both began the feed,
    within a few role checks exactly one keeps it off, and an event made after that is fed exactly once."""
    with dxl_requester.event_waiter(FEED_TOPIC) as waiter, \
            devstack.run_service(config(devstack, tmp_path / "a"), wait_registered=False) as one, \
            devstack.run_service(config(devstack, tmp_path / "b"), wait_registered=False) as two:
        wait_for(lambda: len(dxl_requester.services(service_type(UNIQUE_ID))) == 2)
        wait_for(lambda: sum("Keeping the feed off" in s.log_text() for s in (one, two)) == 1)
        time.sleep(2.0)  # four more role checks: the decision holds
        logs = [s.log_text() for s in (one, two)]
        assert sum("Keeping the feed off" in log for log in logs) == 1
        made = misp.add_event({"info": "after the race", "timestamp": int(time.time()) - 10},  # type: ignore[attr-defined]
                              pythonify=False)["Event"]
        waiter.wait_for(lambda e: e["Event"]["uuid"] == made["uuid"], timeout=30)
        time.sleep(3.0)  # six feed polls of either instance: a second copy would have come
        copies = [e for e in waiter.events if e["Event"]["uuid"] == made["uuid"]]
    assert len(copies) == 1
