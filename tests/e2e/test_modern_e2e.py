"""Modern PyMISP names over the real dev stack: the payload's keys are the method's keyword arguments, MISP
entities go in as JSON objects and MISP's JSON comes back; MISP's state is read back with PyMISP directly."""
from __future__ import annotations

from typing import Any

from dxlmisp_devstack.testing import Requester
from tests.e2e import helpers
from tests.e2e.helpers import call

def make_event(misp: Any, info: str = "e2e modern") -> dict[str, Any]:
    """An event made directly in MISP (not through the service)."""
    return helpers.make_event(misp, info)

def make_attribute(misp: Any, event_id: str, type_: str = "domain", value: str = "example.org") -> dict[str, Any]:
    """An attribute made directly in MISP."""
    return misp.add_attribute(event_id, {"type": type_, "value": value})["Attribute"]

def tags_of(misp: Any, event_id: str, uuid: str | None = None) -> list[str]:
    """The tag names MISP holds on the event, or on its attribute ``uuid``."""
    event = misp.get_event(event_id)["Event"]
    owner = event if uuid is None else next(a for a in event["Attribute"] if a["uuid"] == uuid)
    return sorted(t["name"] for t in owner.get("Tag", []))

def test_add_event_takes_an_event_object_and_stores_it(dxl_requester: Requester, misp: Any) -> None:
    """add_event {"event": {"Event": {...}}} answers MISP's {"Event"} and MISP holds the event with its attribute."""
    event = {"info": "e2e add_event", "distribution": 0, "threat_level_id": 2, "analysis": 1,
             "Attribute": [{"type": "url", "value": "https://example.org/e2e"}]}
    answer = call(dxl_requester, "add_event", {"event": {"Event": event}})
    stored = misp.get_event(answer["Event"]["id"])["Event"]
    assert stored["uuid"] == answer["Event"]["uuid"]
    assert (stored["info"], stored["threat_level_id"], stored["analysis"]) == ("e2e add_event", "2", "1")
    assert [(a["type"], a["value"]) for a in stored["Attribute"]] == [("url", "https://example.org/e2e")]

def test_add_attribute_takes_a_bare_attribute_object(dxl_requester: Requester, misp: Any) -> None:
    """add_attribute {"event": id, "attribute": {...}} answers {"Attribute"} and MISP's event gains it."""
    event = make_event(misp)
    answer = call(dxl_requester, "add_attribute",
                  {"event": event["id"], "attribute": {"type": "ip-src", "value": "192.0.2.44", "to_ids": False}})
    stored = misp.get_event(event["id"])["Event"]["Attribute"]
    assert [(a["uuid"], a["type"], a["value"], a["to_ids"]) for a in stored] == \
        [(answer["Attribute"]["uuid"], "ip-src", "192.0.2.44", False)]

def test_add_sighting_adds_it_to_the_attribute(dxl_requester: Requester, misp: Any) -> None:
    """add_sighting {"sighting": {...}, "attribute": uuid} adds a sighting that MISP shows on the attribute."""
    event = make_event(misp)
    attribute = make_attribute(misp, event["id"])
    call(dxl_requester, "add_sighting", {"sighting": {"source": "e2e modern", "type": "1"}, "attribute": attribute["uuid"]})
    stored = next(a for a in misp.get_event(event["id"])["Event"]["Attribute"] if a["uuid"] == attribute["uuid"])
    assert [(s["source"], s["type"]) for s in stored.get("Sighting", [])] == [("e2e modern", "1")]

def test_search_on_attributes_with_modern_names(dxl_requester: Requester, misp: Any) -> None:
    """search with PyMISP's names (controller, value, type_attribute, return_format) answers MISP's matches."""
    event = make_event(misp)
    wanted = make_attribute(misp, event["id"], "domain", "wanted.example")
    make_attribute(misp, event["id"], "hostname", "wanted.example.net")
    make_attribute(misp, event["id"], "domain", "other.example")
    payload = {"controller": "attributes", "value": "wanted.%", "type_attribute": "domain", "return_format": "json"}
    answer = call(dxl_requester, "search", payload)
    direct = misp.search(controller="attributes", value="wanted.%", type_attribute="domain")
    assert [a["uuid"] for a in answer["response"]["Attribute"]] == [a["uuid"] for a in direct["Attribute"]] == \
        [wanted["uuid"]]

def test_get_event_by_uuid_with_the_modern_argument_name(dxl_requester: Requester, misp: Any) -> None:
    """get_event {"event": uuid} answers the event MISP holds under that UUID."""
    event = make_event(misp, "e2e get by uuid")
    make_event(misp, "another")
    answer = call(dxl_requester, "get_event", {"event": event["uuid"]})
    assert (answer["Event"]["id"], answer["Event"]["info"]) == (event["id"], "e2e get by uuid")

def test_publish_without_alert_publishes_in_misp(dxl_requester: Requester, misp: Any) -> None:
    """publish {"event": id, "alert": false} marks the event published in MISP (and only that event)."""
    event = make_event(misp)
    other = make_event(misp, "stays unpublished")
    call(dxl_requester, "publish", {"event": event["id"], "alert": False})
    assert misp.get_event(event["id"])["Event"]["published"] is True
    assert misp.get_event(other["id"])["Event"]["published"] is False

def test_tag_takes_misp_entity_and_tag_objects(dxl_requester: Requester, misp: Any) -> None:
    """tag {"misp_entity": {"Event": {...}}, "tag": {"name": ...}} attaches the tag to that event in MISP."""
    event = make_event(misp)
    call(dxl_requester, "tag", {"misp_entity": {"Event": event}, "tag": {"name": "tlp:green"}})
    assert tags_of(misp, event["id"]) == ["tlp:green"]

def test_untag_takes_misp_entity_by_uuid(dxl_requester: Requester, misp: Any) -> None:
    """untag {"misp_entity": uuid, "tag": name} removes only that tag from the attribute in MISP."""
    event = make_event(misp)
    attribute = make_attribute(misp, event["id"])
    misp.tag(attribute["uuid"], "tlp:amber")
    misp.tag(attribute["uuid"], "e2e:kept")
    call(dxl_requester, "untag", {"misp_entity": attribute["uuid"], "tag": "tlp:amber"})
    assert tags_of(misp, event["id"], attribute["uuid"]) == ["e2e:kept"]
