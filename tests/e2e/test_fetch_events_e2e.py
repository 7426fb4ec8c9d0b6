"""fetch_events over the real fabric: a puller pages through MISP's changes by cursor, losing and repeating none.

The session stack's service answers ``fetch_events`` from the session's dev MISP server, which each test
fills with events at explicit past timestamps, several per second, so that pages cut through runs of
equal timestamps.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from dxlmispservice.errors import InvalidArguments
from dxlmispservice.events.feed import SETTLE_SECONDS
from dxlmisp_devstack.testing import Requester, StackHandle

TOPIC = "/opendxl-misp/service/misp-api/fetch_events"
ORG_NAME = "ORGNAME"  # the dev MISP server's one organisation


def settle() -> None:
    """Wait out the seconds fetch_events holds the latest changes back for (SETTLE_SECONDS)."""
    time.sleep(SETTLE_SECONDS + 1)


def fetch(dxl_requester: Requester, payload: dict[str, Any]) -> dict[str, Any]:
    """One fetch_events answer (``{"events", "next", "more"}``), which must be a success."""
    reply = dxl_requester.request(TOPIC, payload)
    assert reply.ok, (reply.error_code, reply.error_message, reply.payload)
    return dict(reply.payload)


def fetch_all(dxl_requester: Requester, first: dict[str, Any], limit: int,
              between_pages: Any = None) -> tuple[list[dict[str, Any]], str, list[int]]:
    """Page until ``more`` is false: every event, the last ``next`` cursor and the size of each page.

    ``between_pages(n, events)``, when given, runs after page ``n`` with the events so far (to change MISP
    while a client pages).
    """
    events: list[dict[str, Any]] = []
    sizes: list[int] = []
    answer = fetch(dxl_requester, {**first, "limit": limit})
    while True:
        events += answer["events"]
        sizes.append(len(answer["events"]))
        if between_pages is not None:
            between_pages(len(sizes), events)
        if not answer["more"]:
            return events, answer["next"], sizes
        answer = fetch(dxl_requester, {"cursor": answer["next"], "limit": limit})


def key(payload: dict[str, Any]) -> tuple[str, int]:
    """``(uuid, timestamp)`` of a fetched event: one change of one MISP event."""
    return payload["Event"]["uuid"], int(payload["Event"]["timestamp"])


def add_event(misp: Any, info: str, timestamp: int, *, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    """Create an event on the dev MISP server with that timestamp; its inner Event."""
    body = {"info": info, "timestamp": timestamp, "Tag": [{"name": t} for t in tags]}
    return dict(misp.add_event(body, pythonify=False)["Event"])


def test_cursor_pages_return_every_event_once(devstack: StackHandle, dxl_requester: Requester) -> None:
    """limit 4 over 23 events (3 per timestamp): every change once, oldest first, no page over the limit."""
    misp, now = devstack.misp(), int(time.time())
    add_event(misp, "before since", now - 2000)
    made = {(e["uuid"], int(e["timestamp"])) for e in
            (add_event(misp, f"paged {i}", now - 1000 + i // 3) for i in range(23))}
    events, last, sizes = fetch_all(dxl_requester, {"since": now - 1000}, limit=4)
    assert Counter(map(key, events)) == Counter(made)
    assert [k[1] for k in map(key, events)] == sorted(k[1] for k in map(key, events))
    assert max(sizes) == 4 and len(sizes) >= 6
    assert all(set(e) == {"feed", "Event"} for e in events)
    assert all(b["feed"]["previous"] == a["feed"]["position"] for a, b in zip(events, events[1:]))
    assert fetch(dxl_requester, {"cursor": last, "limit": 4}) == {"events": [], "next": last, "more": False}


def test_cursor_returns_only_later_changes(devstack: StackHandle, dxl_requester: Requester) -> None:
    """After the last page, the cursor returns just the changes made since: an edit and a new event."""
    misp, now = devstack.misp(), int(time.time())
    made = [add_event(misp, f"first batch {i}", now - 500 + i // 2) for i in range(6)]
    events, last, _ = fetch_all(dxl_requester, {"since": now - 500}, limit=5)
    assert len(events) == 6
    misp.add_attribute(made[2]["id"], {"type": "ip-dst", "value": "203.0.113.10"}, pythonify=False)
    edited = misp.get_event(made[2]["id"], pythonify=False)["Event"]
    new = add_event(misp, "second batch", int(edited["timestamp"]) + 1)
    assert fetch(dxl_requester, {"cursor": last})["events"] == []  # held back while they settle
    settle()
    later, _, _ = fetch_all(dxl_requester, {"cursor": last}, limit=5)
    assert [key(e) for e in later] == [(edited["uuid"], int(edited["timestamp"])),
                                       (new["uuid"], int(new["timestamp"]))]


def test_paging_survives_edits_between_pages(devstack: StackHandle, dxl_requester: Requester) -> None:
    """An event edited while a client pages moves to the end: none is skipped, only the edits come twice."""
    misp, now = devstack.misp(), int(time.time())
    made = [add_event(misp, f"moving {i}", now - 800 + i // 4) for i in range(20)]
    edits: dict[str, dict[str, Any]] = {"unseen": made[15]}  # past the first page, which holds 3 of 4 at now-800

    def edit(page: int, events: list[dict[str, Any]]) -> None:
        if page == 1:
            edits["seen"] = events[0]["Event"]
            for event in edits.values():
                misp.add_attribute(event["id"], {"type": "domain", "value": f"{event['id']}.example"},
                                   pythonify=False)

    events, last, _ = fetch_all(dxl_requester, {"since": now - 800}, limit=3, between_pages=edit)
    settle()  # the edits are held back until they settle, then come after the rest
    events += fetch_all(dxl_requester, {"cursor": last}, limit=3)[0]
    counts = Counter(e["Event"]["uuid"] for e in events)
    assert set(counts) == {e["uuid"] for e in made}
    assert counts[edits["seen"]["uuid"]] == 2
    assert all(n == 1 for uuid, n in counts.items() if uuid != edits["seen"]["uuid"])
    assert len(set(map(key, events))) == len(events)
    unseen = [e for e in events if e["Event"]["uuid"] == edits["unseen"]["uuid"]]
    assert [a["value"] for a in unseen[0]["Event"]["Attribute"]] == [f"{edits['unseen']['id']}.example"]


def test_filters_travel_with_the_cursor(devstack: StackHandle, dxl_requester: Requester) -> None:
    """Filters given on the first page (tags, not_tags, orgs) hold on every page the cursor leads to."""
    misp, now = devstack.misp(), int(time.time())
    wanted = []
    for i in range(12):
        tags = ("pull:in",) if i % 3 else ("pull:in", "pull:out") if i % 2 else ()
        event = add_event(misp, f"filtered {i}", now - 400 + i, tags=tags)
        if tags == ("pull:in",):
            wanted.append(event["uuid"])
    filters = {"tags": ["pull:in"], "not_tags": ["pull:out"], "orgs": [ORG_NAME]}
    events, _, sizes = fetch_all(dxl_requester, {"since": now - 400, "filters": filters}, limit=2)
    assert [e["Event"]["uuid"] for e in events] == wanted
    assert len(sizes) > 1
    other_org, _, _ = fetch_all(dxl_requester, {"since": now - 400, "filters": {"orgs": ["Another org"]}}, limit=2)
    assert other_org == []


def test_a_cursor_that_is_not_one_is_refused(devstack: StackHandle, dxl_requester: Requester) -> None:
    """A cursor that fetch_events did not make answers an InvalidArguments error over the fabric."""
    reply = dxl_requester.request(TOPIC, {"cursor": "not-a-cursor", "limit": 2})
    assert not reply.ok
    assert reply.error_code == InvalidArguments.code
    assert "cursor" in reply.error_message


def test_published_only_cursor_follows_publications(devstack: StackHandle, dxl_requester: Requester) -> None:
    """With published_only, a draft published after the cursor passed its timestamp comes next, once."""
    misp, now = devstack.misp(), int(time.time())
    draft = add_event(misp, "draft", now - 300)
    early = add_event(misp, "published early", now - 200)
    misp.publish(early["id"])
    settle()
    events, last, _ = fetch_all(dxl_requester, {"since": now - 1000, "filters": {"published_only": True}}, limit=5)
    assert [e["Event"]["uuid"] for e in events] == [early["uuid"]]
    misp.publish(draft["id"])
    settle()
    later, last, _ = fetch_all(dxl_requester, {"cursor": last}, limit=5)
    assert [(e["Event"]["uuid"], int(e["Event"]["timestamp"])) for e in later] == [(draft["uuid"], now - 300)]
    assert int(later[0]["Event"]["publish_timestamp"]) >= int(events[0]["Event"]["publish_timestamp"])
    assert fetch(dxl_requester, {"cursor": last})["events"] == []
