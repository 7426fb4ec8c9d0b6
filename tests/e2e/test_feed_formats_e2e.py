"""The feed's formats over the real stack: with ``[Feed] formats = misp,ctim,xsoar`` each change arrives on
each format's topic (misp on ``.../event``), in order, in the same envelope and position on every topic;
the CTIM bundles pass our CTIM rules and JSON Schema; fetch_events in a format gives what the feed gave;
an event too big for the fabric in one format is a notice there while the other formats carry it whole."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema

from dxlmisp_devstack.testing import Requester, StackHandle
from dxlmispservice.events.feed import SETTLE_SECONDS
from dxlmispservice.formats.ctimcheck import check
from dxlmispservice.names import feed_topic, request_topic
from tests.e2e.test_feed_e2e import add_event, feed_config

CTIM_SCHEMA = json.loads((Path(__file__).parents[1] / "formats" / "ctim_bundle.schema.json").read_text())
FORMATS = ("misp", "ctim", "xsoar")
WAIT = 30.0


def by_topic(waiter: Any, unique_id: str) -> dict[str, list[dict[str, Any]]]:
    """The messages received so far, by format name."""
    topics = {feed_topic(unique_id, name): name for name in FORMATS}
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in FORMATS}
    for topic, message in zip(waiter.topics, waiter.events):
        found[topics[topic]].append(message)
    return found


def event_uuid(message: dict[str, Any]) -> str:
    """The MISP event a feed message of any format is about (its envelope's position names it)."""
    return str(message["feed"]["position"]["uuid"])


def arrived(waiter: Any, unique_id: str, uuid: str) -> dict[str, list[dict[str, Any]]]:
    """Wait until the change of ``uuid`` has arrived on every format's topic; the messages by format."""
    waiter.wait_until(lambda _: all(uuid in map(event_uuid, got) for got in by_topic(waiter, unique_id).values()),
                      WAIT)
    return by_topic(waiter, unique_id)


def test_each_change_arrives_in_each_format_on_its_topic(devstack: StackHandle, dxl_requester: Requester,
                                                         tmp_path: Path) -> None:
    """Five changes reach misp, ctim and xsoar's topics, each in order, with one position chain, valid
    CTIM bundles and XSOAR incidents named after the event; fetch_events in ctim gives the feed's documents."""
    misp, now, unique_id = devstack.misp(), int(time.time()), "feed-formats"
    made = []
    for n in range(5):
        event = add_event(misp, f"formats {n}", now - 100 + n, tags=("tlp:green",), threat_level=1 + n % 3,
                          publish=n % 2 == 0)
        misp.add_attribute(event["id"], {"type": "ip-dst", "value": f"198.51.100.{n + 1}", "to_ids": True},
                           pythonify=False)
        made.append(misp.get_event(event["id"], pythonify=False)["Event"])
    last = max(made, key=lambda e: (int(e["timestamp"]), e["uuid"]))
    config = feed_config(devstack, tmp_path, unique_id, api_names="get_event,fetch_events", formats=",".join(FORMATS))
    with dxl_requester.event_waiter(f"/opendxl-misp/event/feed/{unique_id}/#") as waiter, \
            devstack.run_service(config):
        found = arrived(waiter, unique_id, last["uuid"])
        time.sleep(SETTLE_SECONDS + 1)
        fetched = dxl_requester.request(request_topic("fetch_events", unique_id),
                                        {"since": now - 200, "format": "ctim", "limit": 50})
    uuids = [e["uuid"] for e in sorted(made, key=lambda e: (int(e["timestamp"]), e["uuid"]))]
    for name, messages in found.items():
        assert [event_uuid(m) for m in messages] == uuids, name
        assert all(m["feed"]["complete"] for m in messages), name
        assert all(b["feed"]["previous"] == a["feed"]["position"] for a, b in zip(messages, messages[1:])), name
    assert [m["feed"]["position"] for m in found["misp"]] == [m["feed"]["position"] for m in found["ctim"]] == [
        m["feed"]["position"] for m in found["xsoar"]]
    assert len({m["feed"]["message_id"] for ms in found.values() for m in ms}) == 3 * len(made)
    by_uuid = {e["uuid"]: e for e in made}
    for message in found["ctim"]:
        bundle = message["document"]
        assert message["format"] == "ctim" and check(bundle) == []
        jsonschema.validate(bundle, CTIM_SCHEMA)
        event = by_uuid[event_uuid(message)]
        assert bundle["incidents"][0]["title"] == event["info"]
        assert {o["value"] for s in bundle["sightings"] for o in s["observables"]} == {event["Attribute"][0]["value"]}
    for message in found["xsoar"]:
        assert message["format"] == "xsoar" and message["document"]["name"] == by_uuid[event_uuid(message)]["info"]
    assert [m["Event"]["uuid"] for m in found["misp"]] == uuids
    assert fetched.ok, fetched.error_message
    ours = [m for m in fetched.payload["events"] if event_uuid(m) in by_uuid]
    assert [m["document"] for m in ours] == [m["document"] for m in found["ctim"]]


def test_a_format_too_big_for_the_fabric_is_a_notice_while_the_others_go_whole(
        devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """A 4,000-attribute event of free text is over 1 MiB in MISP's format (a notice there) but a small CTIM
    bundle (text is no observable): ctim carries it whole, and the small event after it arrives on both."""
    misp, now, unique_id = devstack.misp(), int(time.time()), "feed-formats-big"
    body = {"info": "big in misp", "timestamp": now - 20, "threat_level_id": 4,
            "Attribute": [{"type": "text", "category": "Other", "value": f"{n:05d} " + "v" * 600}
                          for n in range(4000)]}
    big = misp.add_event(body, pythonify=False)["Event"]
    after = add_event(misp, "small after", now - 10)
    config = feed_config(devstack, tmp_path, unique_id, formats="misp,ctim")
    with dxl_requester.event_waiter(f"/opendxl-misp/event/feed/{unique_id}/#") as waiter, \
            devstack.run_service(config) as service:
        waiter.wait_until(lambda _: [after["uuid"]] * 2 == [
            event_uuid(m) for t, m in zip(waiter.topics, waiter.events) if event_uuid(m) == after["uuid"]], WAIT)
        log = service.log_text()
    got = {name: [m for t, m in zip(waiter.topics, waiter.events) if t == feed_topic(unique_id, name)]
           for name in ("misp", "ctim")}
    assert [event_uuid(m) for m in got["misp"]] == [event_uuid(m) for m in got["ctim"]] == [big["uuid"], after["uuid"]]
    assert got["misp"][0]["feed"]["complete"] is False and "Attribute" not in got["misp"][0]["Event"]
    assert got["ctim"][0]["feed"]["complete"] is True and check(got["ctim"][0]["document"]) == []
    assert got["ctim"][0]["document"]["incidents"][0]["title"] == "big in misp"
    assert all(m["feed"]["complete"] for m in (got["misp"][1], got["ctim"][1]))
    assert "Unexpected disconnect" not in log
