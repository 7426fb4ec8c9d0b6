"""Error 5's advice works, over the real stack: each topic that can answer big (get_event, search,
search_index, fetch_events) answers response_too_large with advice that, followed, gets the whole data back
in pages that fit.

A service variant with maxResponseSize 20000 runs beside the stack's own, under its own serviceUniqueId.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from dxlmisp_devstack.testing import Reply, Requester, StackHandle
from dxlmispservice.events.feed import SETTLE_SECONDS
from dxlmispservice.names import request_topic
from tests.e2e import helpers

LIMIT = 20_000
UNIQUE_ID = "e2e-paging"


@pytest.fixture(scope="module")
def paged(devstack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The variant with maxResponseSize 20000 (feed and ZeroMQ forwarding off); yields its serviceUniqueId."""
    with helpers.limited_service(devstack, tmp_path_factory.mktemp("paging"), UNIQUE_ID, LIMIT) as unique_id:
        yield unique_id


def ask(requester: Requester, api_name: str, payload: dict[str, Any]) -> Reply:
    """One request to the variant; an answer that comes is always within its limit."""
    reply = requester.request(request_topic(api_name, UNIQUE_ID), payload)
    assert len(reply.raw) <= LIMIT + 1024
    return reply


def big_event(misp: Any, attributes: int = 300, objects: int = 0) -> dict[str, Any]:
    """An event whose JSON is well over LIMIT (with ``objects`` domain-ip objects of two attributes)."""
    body = {"info": "paging", "distribution": 0, "threat_level_id": 3, "analysis": 0,
            "Attribute": [{"type": "text", "category": "Other", "value": f"{n:04d} " + "p" * 100}
                          for n in range(attributes)],
            "Object": [{"name": "domain-ip", "meta-category": "network", "comment": f"object {n}",
                        "Attribute": [{"type": "domain", "object_relation": "domain", "value": f"d{n}.example"},
                                      {"type": "ip-dst", "object_relation": "ip", "value": f"192.0.2.{n}"}]}
                       for n in range(objects)]}
    return misp.add_event(body, pythonify=False)["Event"]


def pages(requester: Requester, api_name: str, payload: dict[str, Any], key: Any, limit: int) -> list[Any]:
    """Every result of ``payload`` asked page by page until a page has fewer than ``limit``."""
    found: list[Any] = []
    for page in range(1, 1000):
        reply = ask(requester, api_name, {**payload, "limit": limit, "page": page})
        assert reply.ok, reply.error_message
        batch = key(reply.payload)
        found.extend(batch)
        if len(batch) < limit:
            return found
    raise AssertionError("paging did not end")


def test_get_event_advice_gets_the_whole_event(dxl_requester: Requester, misp: Any, paged: str) -> None:
    """get_event on a big event with objects: error 5 whose advice (search with metadata, then the
    attributes and the objects controllers by page), followed, rebuilds the event MISP holds: its
    metadata, its own attributes and its objects with theirs."""
    event = big_event(misp, objects=40)
    reply = ask(dxl_requester, "get_event", {"event_id": event["id"]})
    assert not reply.ok and reply.error_code == 5
    for part in ('"metadata": true', '"controller": "attributes"', '"controller": "objects"'):
        assert part in reply.error_message
    head = ask(dxl_requester, "search", {"eventid": event["id"], "metadata": True})
    assert head.ok and head.payload["response"][0]["Event"]["uuid"] == event["uuid"]
    assert not head.payload["response"][0]["Event"].get("Attribute")
    attributes = pages(dxl_requester, "search", {"controller": "attributes", "eventid": event["id"]},
                       lambda answer: answer["response"]["Attribute"], 20)
    objects = pages(dxl_requester, "search", {"controller": "objects", "eventid": event["id"]},
                    lambda answer: [o["Object"] for o in answer["response"]], 15)
    whole = misp.get_event(event["id"], pythonify=False)["Event"]
    own = [a["uuid"] for a in attributes if a["object_id"] == "0"]
    assert sorted(own) == sorted(a["uuid"] for a in whole["Attribute"]) and len(own) == 300
    assert [(o["uuid"], o["comment"], sorted(a["value"] for a in o["Attribute"])) for o in objects] == [
        (o["uuid"], o["comment"], sorted(a["value"] for a in o["Attribute"])) for o in whole["Object"]]
    assert len(attributes) == 300 + 2 * 40


def test_search_advice_gets_the_whole_event(dxl_requester: Requester, misp: Any, paged: str) -> None:
    """search on a big event: error 5 whose advice names both ways; "limit" and "page" count events, so the
    big event's attributes come by page on the attributes controller."""
    event = big_event(misp)
    reply = ask(dxl_requester, "search", {"eventid": event["id"]})
    assert not reply.ok and reply.error_code == 5
    assert '"limit" and "page" count results' in reply.error_message and '"metadata": true' in reply.error_message
    values = pages(dxl_requester, "search", {"controller": "attributes", "eventid": event["id"]},
                   lambda answer: [a["value"] for a in answer["response"]["Attribute"]], 25)
    assert len(values) == 300


def test_search_index_advice_gets_every_event(dxl_requester: Requester, misp: Any, paged: str) -> None:
    """search_index over many events: error 5 with limit/page advice; followed, every event comes once."""
    made = {helpers.make_event(misp, f"index {n} " + "i" * 200)["uuid"] for n in range(80)}
    reply = ask(dxl_requester, "search_index", {"eventinfo": "index %"})
    assert not reply.ok and reply.error_code == 5 and '"limit" and "page"' in reply.error_message
    found = pages(dxl_requester, "search_index", {"eventinfo": "index %"},
                  lambda answer: [e["uuid"] for e in answer], 20)
    assert sorted(found) == sorted(made)


def test_fetch_events_pages_under_the_limit_and_sends_a_notice_for_a_big_event(
        dxl_requester: Requester, misp: Any, paged: str) -> None:
    """fetch_events never answers error 5: its pages stay under the limit and a big event comes as a
    notice in its place; paging on gives every change once."""
    now = int(time.time())
    small = [misp.add_event({"info": f"fetch {n}", "timestamp": now - 100 + n}, pythonify=False)["Event"]
             for n in range(30)]
    big = big_event(misp)
    time.sleep(SETTLE_SECONDS + 1)  # fetch_events holds the latest changes back until they settle
    items, answer = [], ask(dxl_requester, "fetch_events", {"since": now - 100, "limit": 1000})
    while True:
        assert answer.ok, answer.error_message
        items.extend(answer.payload["events"])
        if not answer.payload["more"]:
            break
        answer = ask(dxl_requester, "fetch_events", {"cursor": answer.payload["next"], "limit": 1000})
    assert [i["Event"]["uuid"] for i in items] == [e["uuid"] for e in small] + [big["uuid"]]
    assert items[-1]["feed"]["complete"] is False and items[-1]["Event"]["attribute_count"] == "300"
