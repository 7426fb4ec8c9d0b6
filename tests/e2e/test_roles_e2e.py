"""One role per instance, over the real stack: of two instances of one service type with the feed on, the
first holds the feed and the second keeps it off, then takes it when the first stops."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from dxlmisp_devstack.testing import Requester, StackHandle, make_config_dir

UNIQUE_ID = "e2e-roles"
FEED_TOPIC = f"/opendxl-misp/event/feed/{UNIQUE_ID}/event"


def config(devstack: StackHandle, directory: Path, api_names: str = "status") -> Path:
    """A feed-only instance of the e2e-roles service with its own state file, checking roles every 0.5 s."""
    base = directory / "base"
    shutil.copytree(devstack.info["service_config_dir"], base, ignore=shutil.ignore_patterns("*feed-state*"))
    return make_config_dir(base, directory / "service", {
        "General": {"serviceUniqueId": UNIQUE_ID, "zeroMqNotificationTopics": None, "apiNames": api_names,
                    "roleCheckInterval": "0.5"},
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
