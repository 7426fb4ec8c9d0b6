"""The feed in several formats (events.feedformats and Feed with [Feed] formats), and fetch_events' format."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dxlmispservice.events import feed as feed_module
from dxlmispservice.events.feed import Feed, fetch_events
from dxlmispservice.events.feedformats import format_message
from dxlmispservice.events.feedstate import Position, load_position
from dxlmispservice.events.publisher import TooLarge
from dxlmispservice.settings.feed import FeedSettings
from dxlmispservice.settings.formats import FormatSettings
from tests.events.test_feed import NOW, FakeMisp

FORMATS = FormatSettings(event_url="https://misp.example/events/view/{uuid}")


class Sent:
    """Collects (topic, payload); refuses payloads over ``limit`` bytes as the fabric would."""

    def __init__(self, limit: int | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.limit = limit

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        size = len(json.dumps(payload).encode())
        if self.limit is not None and size > self.limit:
            raise TooLarge(topic, size, self.limit)
        self.sent.append((topic, payload))
        if getattr(payload, "on_written", None) is not None:
            payload.on_written()


def dated(misp: FakeMisp, uuid: str, timestamp: int, date: str | None = "2024-05-01") -> None:
    misp.add(uuid, timestamp)
    misp.events[uuid]["Orgc"] = {"id": "1", "name": "ORG", "uuid": "11111111-1111-4111-8111-111111111111"}
    if date:
        misp.events[uuid]["date"] = date


def test_each_change_goes_out_in_each_format_on_its_topic(tmp_path: Path) -> None:
    """misp, ctim and xsoar: three messages per change, in that order, one topic each, one message id per
    topic, the same position and previous; the state moves once per change."""
    misp, out = FakeMisp(), Sent()
    dated(misp, "a", NOW - 20)
    dated(misp, "b", NOW - 10)
    settings = FeedSettings(enabled=True, lookback="1h", state_file=str(tmp_path / "s.json"),
                            formats=("misp", "ctim", "xsoar"))
    feed = Feed(settings, misp, out, service_unique_id="u1", clock=lambda: NOW, settle=0, formats=FORMATS)
    assert feed.poll_once() == 2
    assert [t for t, _ in out.sent] == ["/opendxl-misp/event/feed/u1/event", "/opendxl-misp/event/feed/u1/ctim",
                                        "/opendxl-misp/event/feed/u1/xsoar"] * 2
    first = [p for _, p in out.sent[:3]]
    assert first[0]["Event"]["uuid"] == "a" and first[1]["document"]["type"] == "bundle"
    assert first[2]["document"]["name"] == "event a" and first[2]["format"] == "xsoar"
    assert len({p["feed"]["message_id"] for p in first}) == 3
    assert all(p["feed"]["position"] == first[0]["feed"]["position"] for p in first)
    assert out.sent[3][1]["feed"]["previous"] == first[0]["feed"]["position"]
    assert load_position(settings.state_file) == Position(NOW - 10, "b")


def test_a_change_a_format_cannot_convert_gets_a_notice_there_and_the_rest_goes_on(tmp_path: Path) -> None:
    """An event without a date: ctim gives a notice naming the reason, counted; misp goes out whole."""
    misp, out = FakeMisp(), Sent()
    dated(misp, "a", NOW - 20, date=None)
    dated(misp, "b", NOW - 10)
    settings = FeedSettings(enabled=True, lookback="1h", state_file=str(tmp_path / "s.json"), formats=("misp", "ctim"))
    feed = Feed(settings, misp, out, clock=lambda: NOW, settle=0, formats=FORMATS)
    assert feed.poll_once() == 2
    notice = out.sent[1][1]
    assert notice["feed"]["complete"] is False and "date" in notice["feed"]["reason"]
    assert notice["Event"]["uuid"] == "a" and out.sent[0][1]["feed"]["complete"] is True
    assert out.sent[3][1]["document"]["incidents"][0]["title"] == "event b"
    assert feed.conversion_failures == 1 and feed.status()["formats"] == ["misp", "ctim"]


def test_a_format_too_big_for_the_fabric_is_a_notice_in_its_place(tmp_path: Path) -> None:
    """A stix2 message over the limit becomes a notice on the stix2 topic; misp's smaller one goes whole."""
    misp, out = FakeMisp(), Sent(limit=2500)
    uuid = "5f1e2d3c-4b5a-4c6d-8e7f-901234567890"  # a STIX id needs a real UUID
    dated(misp, uuid, NOW - 20)
    misp.events[uuid]["Attribute"] = [{"uuid": f"00000000-0000-4000-8000-{n:012d}", "type": "domain",
                                      "value": f"d{n}.example", "to_ids": True, "category": "Network activity",
                                      "timestamp": str(NOW - 20)} for n in range(3)]
    settings = FeedSettings(enabled=True, lookback="1h", state_file=str(tmp_path / "s.json"), formats=("misp", "stix2"))
    feed = Feed(settings, misp, out, clock=lambda: NOW, settle=0, formats=FORMATS)
    feed.poll_once()
    assert out.sent[0][1]["feed"]["complete"] is True
    assert out.sent[1][0].endswith("/stix2") and out.sent[1][1]["feed"]["complete"] is False
    assert feed.notices == 1


def test_format_message_for_misp_is_the_event_itself() -> None:
    """The misp format carries the event beside the envelope, with its size."""
    message, ok = format_message("misp", {"uuid": "u", "info": "i"}, {"complete": True}, FORMATS)
    assert ok and message == {"feed": {"complete": True, "size": 23}, "Event": {"uuid": "u", "info": "i"}}


def test_fetch_events_answers_each_change_in_the_format_asked(monkeypatch: Any) -> None:
    """fetch_events {"format": "xsoar"}: each item is the XSOAR incident in the envelope; a bad format is
    refused naming the formats."""
    monkeypatch.setattr(feed_module, "clock", lambda: NOW + feed_module.SETTLE_SECONDS)
    misp = FakeMisp()
    dated(misp, "a", NOW - 20)
    answer = fetch_events(misp, {"since": NOW - 100, "format": "xsoar"}, formats=FORMATS)
    item = answer["events"][0]
    assert item["format"] == "xsoar" and item["document"]["dbotMirrorId"] == "a" and item["feed"]["complete"]
    try:
        fetch_events(misp, {"since": 0, "format": "pdf"})
    except Exception as exc:  # InvalidArguments
        assert "'pdf' is not a format" in str(exc) and "xsoar" in str(exc)
    else:
        raise AssertionError("a bad format was accepted")
