"""The 2.4-era API names over the real dev devstack, with the seed's payloads: each answer has the old shape, and
MISP's own state (read back with PyMISP, not through the service) shows the change."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dxlmispservice.api.legacy import LEGACY
from dxlmisp_devstack.testing import Requester
from tests.e2e import helpers
from tests.e2e.helpers import call

SEED_INFO = "OpenDXL MISP update event example"
SEED_COMMENT = "Added by the OpenDXL MISP update event example"
SEED_TAG = "Tagged by the OpenDXL MISP update event example"
SEED_SOURCE = "Seen by the OpenDXL MISP update event example"

def make_event(misp: Any, info: str = "e2e legacy") -> dict[str, Any]:
    """An event made directly in MISP (not through the service)."""
    return helpers.make_event(misp, info)

def make_attribute(misp: Any, event_id: str, type_: str = "comment", value: str = SEED_COMMENT) -> dict[str, Any]:
    """An attribute made directly in MISP."""
    return misp.add_attribute(event_id, {"type": type_, "value": value})["Attribute"]

def attribute_in_misp(misp: Any, event_id: str, uuid: str) -> dict[str, Any]:
    """The attribute ``uuid`` as MISP's event view shows it (with its tags and sightings)."""
    event = misp.get_event(event_id)["Event"]
    return next(a for a in event["Attribute"] if a["uuid"] == uuid)

def test_new_event_stores_the_seed_event(dxl_requester: Requester, misp: Any) -> None:
    """new_event with the seed's payload answers {"Event": ...} and MISP holds that event with those fields."""
    answer = call(dxl_requester, "new_event", {"distribution": 3, "info": SEED_INFO, "analysis": 1, "threat_level_id": 3})
    assert list(answer) == ["Event"]
    stored = misp.get_event(answer["Event"]["id"])["Event"]
    assert stored["uuid"] == answer["Event"]["uuid"]
    assert (stored["info"], stored["distribution"], stored["analysis"], stored["threat_level_id"]) == \
        (SEED_INFO, "3", "1", "3")

def test_add_internal_comment_adds_a_comment_attribute(dxl_requester: Requester, misp: Any) -> None:
    """add_internal_comment answers a list of one {"Attribute"} and MISP's event gains that comment attribute."""
    event = make_event(misp)
    answer = call(dxl_requester, "add_internal_comment",
                  {"event": event["id"], "reference": SEED_COMMENT, "comment": "This is only a test"})
    assert len(answer) == 1 and list(answer[0]) == ["Attribute"]
    stored = attribute_in_misp(misp, event["id"], answer[0]["Attribute"]["uuid"])
    assert (stored["type"], stored["category"], stored["value"], stored["comment"]) == \
        ("comment", "Internal reference", SEED_COMMENT, "This is only a test")

def test_add_named_attribute_adds_one_attribute_per_value(dxl_requester: Requester, misp: Any) -> None:
    """add_named_attribute with a list of values adds each one, with the given type, category and to_ids."""
    event = make_event(misp)
    values = ["198.51.100.1", "198.51.100.2"]
    answer = call(dxl_requester, "add_named_attribute", {"event": event["id"], "type_value": "ip-dst", "value": values,
                                                     "category": "Network activity", "to_ids": True})
    assert isinstance(answer, list) and answer
    stored = misp.get_event(event["id"])["Event"]["Attribute"]
    assert sorted((a["type"], a["value"], a["category"], a["to_ids"]) for a in stored) == \
        [("ip-dst", v, "Network activity", True) for v in values]

def test_add_named_attribute_with_one_value(dxl_requester: Requester, misp: Any) -> None:
    """add_named_attribute with one value answers [{"Attribute": {...}}] for the attribute MISP now holds."""
    event = make_event(misp)
    answer = call(dxl_requester, "add_named_attribute",
                  {"event": event["id"], "type_value": "domain", "value": "example.org"})
    assert len(answer) == 1
    stored = attribute_in_misp(misp, event["id"], answer[0]["Attribute"]["uuid"])
    assert (stored["type"], stored["value"]) == ("domain", "example.org")

def test_tag_attaches_the_tag_to_the_attribute(dxl_requester: Requester, misp: Any) -> None:
    """tag with the seed's payload answers {"name", "message", "url"} and MISP's attribute carries the tag."""
    event = make_event(misp)
    attribute = make_attribute(misp, event["id"])
    answer = call(dxl_requester, "tag", {"uuid": attribute["uuid"], "tag": SEED_TAG})
    assert set(answer) == {"name", "message", "url"} and answer["url"] == "/tags/attachTagToObject"
    assert [t["name"] for t in attribute_in_misp(misp, event["id"], attribute["uuid"]).get("Tag", [])] == [SEED_TAG]

def test_untag_removes_the_tag(dxl_requester: Requester, misp: Any) -> None:
    """untag removes the named tag from the attribute in MISP, and answers {"name", "message", "url"}."""
    event = make_event(misp)
    attribute = make_attribute(misp, event["id"])
    misp.tag(attribute["uuid"], SEED_TAG)
    misp.tag(attribute["uuid"], "e2e:kept")
    answer = call(dxl_requester, "untag", {"uuid": attribute["uuid"], "tag": SEED_TAG})
    assert set(answer) == {"name", "message", "url"} and answer["url"] == "/tags/removeTagFromObject"
    assert [t["name"] for t in attribute_in_misp(misp, event["id"], attribute["uuid"]).get("Tag", [])] == ["e2e:kept"]

def test_sighting_adds_a_sighting_to_the_attribute(dxl_requester: Requester, misp: Any) -> None:
    """sighting with the seed's payload answers the 2.4 message and MISP's attribute has that sighting."""
    event = make_event(misp)
    attribute = make_attribute(misp, event["id"])
    answer = call(dxl_requester, "sighting", {"uuid": attribute["uuid"], "type": "0", "source": SEED_SOURCE})
    assert answer == {"message": "Sighting added.", "name": "1 sighting successfully added.",
                      "url": f"/sightings/add/{attribute['uuid']}"}
    sightings = attribute_in_misp(misp, event["id"], attribute["uuid"]).get("Sighting", [])
    assert [(s["source"], s["type"]) for s in sightings] == [(SEED_SOURCE, "0")]

def test_search_on_events_answers_the_seed_shape_from_misp(dxl_requester: Requester, misp: Any) -> None:
    """search {"eventid"} answers {"response": [{"Event": {"Attribute": [{"Sighting", "Tag"}]}}]} as MISP holds it."""
    event = make_event(misp, SEED_INFO)
    make_event(misp, "another event")
    attribute = make_attribute(misp, event["id"])
    misp.tag(attribute["uuid"], SEED_TAG)
    misp.add_sighting({"source": SEED_SOURCE, "type": "0"}, attribute["uuid"])
    answer = call(dxl_requester, "search", {"eventid": event["id"]})
    assert list(answer) == ["response"]
    assert [e["Event"]["uuid"] for e in answer["response"]] == [event["uuid"]]
    found = answer["response"][0]["Event"]["Attribute"]
    assert [a["uuid"] for a in found] == [attribute["uuid"]]
    assert [t["name"] for t in found[0]["Tag"]] == [SEED_TAG]
    assert [s["source"] for s in found[0]["Sighting"]] == [SEED_SOURCE]
    direct = misp.search(eventid=event["id"])
    assert [e["Event"]["uuid"] for e in direct] == [event["uuid"]]

def test_search_on_attributes_controller_answers_the_matching_attributes(dxl_requester: Requester, misp: Any) -> None:
    """search on the attributes controller with 2.4's "values" answers {"response": {"Attribute": [...]}}."""
    event = make_event(misp)
    wanted = make_attribute(misp, event["id"], "ip-dst", "203.0.113.9")
    make_attribute(misp, event["id"], "ip-dst", "203.0.113.10")
    answer = call(dxl_requester, "search", {"controller": "attributes", "values": ["203.0.113.9"]})
    assert [a["uuid"] for a in answer["response"]["Attribute"]] == [wanted["uuid"]]
    direct = misp.search(controller="attributes", value="203.0.113.9")
    assert [a["uuid"] for a in direct["Attribute"]] == [wanted["uuid"]]

def test_get_event_answers_the_event_misp_holds(dxl_requester: Requester, misp: Any) -> None:
    """get_event {"event_id"} answers {"Event": ...} equal in uuid, info and attributes to MISP's own view."""
    event = make_event(misp)
    make_attribute(misp, event["id"])
    answer = call(dxl_requester, "get_event", {"event_id": event["id"]})
    direct = misp.get_event(event["id"])["Event"]
    assert list(answer) == ["Event"]
    assert (answer["Event"]["uuid"], answer["Event"]["info"]) == (direct["uuid"], direct["info"])
    assert [a["uuid"] for a in answer["Event"]["Attribute"]] == [a["uuid"] for a in direct["Attribute"]]

def test_update_event_changes_the_event_in_misp(dxl_requester: Requester, misp: Any) -> None:
    """update_event with the event JSON (2.4's whole-event post) changes the event's fields in MISP."""
    event = make_event(misp)
    changed = {key: value for key, value in event.items() if key != "timestamp"}  # MISP refuses an old timestamp
    changed.update(info="e2e legacy, updated", threat_level_id="1")
    answer = call(dxl_requester, "update_event", {"event": {"Event": changed}})
    assert answer["Event"]["uuid"] == event["uuid"]
    stored = misp.get_event(event["id"])["Event"]
    assert (stored["info"], stored["threat_level_id"]) == ("e2e legacy, updated", "1")

def test_delete_event_removes_the_event_from_misp(dxl_requester: Requester, misp: Any) -> None:
    """delete_event {"event_id"} deletes the event: MISP answers 404 for it afterwards, others stay."""
    event = make_event(misp)
    kept = make_event(misp, "kept")
    call(dxl_requester, "delete_event", {"event_id": event["id"]})
    assert misp.get_event(event["id"])["errors"][0] == 404
    assert misp.get_event(kept["id"])["Event"]["uuid"] == kept["uuid"]

def test_publish_publishes_the_event_in_misp(dxl_requester: Requester, misp: Any) -> None:
    """publish {"event"} with 2.4's default (alert on) marks the event published in MISP."""
    event = make_event(misp)
    call(dxl_requester, "publish", {"event": event["id"]})
    assert misp.get_event(event["id"])["Event"]["published"] is True

def test_every_legacy_name_is_called_over_the_wire_here() -> None:
    """Each name in the legacy table is sent over the fabric by some test of this module."""
    called = set(re.findall(r'call\(dxl_requester, "(\w+)"', Path(__file__).read_text()))
    assert set(LEGACY) <= called
