"""The status topic over the real stack: the stack's own service reports what it runs and how it is going."""
from __future__ import annotations

import time
from typing import Any

from dxlmisp_devstack.testing import Requester, StackHandle
from dxlmispservice import __version__
from dxlmispservice.names import request_topic
from tests.e2e import helpers


def status(dxl_requester: Requester) -> dict[str, Any]:
    """The stack's service's status answer."""
    return helpers.call(dxl_requester, "status", {})


def test_status_reports_misp_the_requests_the_feed_and_the_forwarder(devstack: StackHandle, dxl_requester: Requester,
                                                                    misp: Any) -> None:
    """After one good and one bad request, status counts both, finds MISP reachable, and reports the feed
    (its position and counts) and the forwarder (its topics and MISP's last heartbeat)."""
    before = status(dxl_requester)
    helpers.call(dxl_requester, "search", {"eventid": 987654})
    bad = dxl_requester.request(request_topic("new_event"), {"title": "x"})
    assert not bad.ok and bad.error_code == 2
    deadline = time.monotonic() + 30  # MISP's heartbeat comes every 5 s on the dev stack
    answer = status(dxl_requester)
    while answer["forwarder"]["last_heartbeat"] is None and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = status(dxl_requester)
    assert answer["version"] == __version__ and answer["misp"]["state"] == "reachable"
    assert answer["misp"]["url"].rstrip("/") == devstack.info["misp_url"].rstrip("/")
    assert answer["requests"].get("ok", 0) >= before["requests"].get("ok", 0) + 2  # search, and status itself
    assert answer["requests"].get("invalid_arguments", 0) == before["requests"].get("invalid_arguments", 0) + 1
    feed = answer["feed"]
    assert feed["running"] and feed["topic"] == "/opendxl-misp/event/feed/event"
    assert set(feed["position"]) == {"field", "timestamp", "uuid"} and isinstance(feed["failures"], int)
    forwarder = answer["forwarder"]
    assert forwarder["running"] and forwarder["connected"] and "misp_json_event" in forwarder["topics"]
    assert forwarder["last_heartbeat"] is not None and answer["roles"][0] == "feed"
    assert answer["roles"][1].startswith("forwarder:misp_json")
