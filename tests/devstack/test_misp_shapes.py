"""Every kind of dev MISP answer checked three ways, through unmodified PyMISP over real HTTP.

1. against PyMISP's own ``data/schema-lax.json`` (jsonschema), read from the installed package;
2. by a round trip through MISPEvent, MISPAttribute, MISPSighting and MISPObject;
3. by comparing keys and value types with real MISP output in ``../shared/fixtures/misp/``.

The fixture comparison skips what MISP itself dropped since the fixtures were recorded (``org`` and ``orgc``
strings in events/index) and descends into lists only where the dev server has entries (it stores no
galaxies). A ``null`` on either side matches any type (MISP's nullable fields).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pymisp import MISPAttribute, MISPEvent, MISPObject, MISPSighting, PyMISP

from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import RunningServer, serve

ADMIN_KEY = "shapes-admin-key-" + "a" * 23
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "misp"
SCHEMA = json.loads(resources.files("pymisp").joinpath("data", "schema-lax.json").read_text(encoding="utf-8"))
OBSOLETE_INDEX_KEYS = {"org", "orgc"}  # plain strings MISP 2.4 dropped from events/index


#: A cluster's ``meta`` holds its galaxy library's data (country, refs, synonyms...): the dev server keeps no
#: library and fills only ``external_id`` (see dxlmisp_devstack.misp.galaxies).
CLUSTER_LIBRARY_KEYS = frozenset({"meta"})


def fixture(name: str) -> Any:
    """A real MISP answer from the shared fixtures."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


REAL_EVENT = fixture("existing_event.json")
REAL_SIGHTED = fixture("sighting_1.json")["Event"]
REAL_ATTRIBUTE = REAL_SIGHTED["Attribute"][0]
REAL_SIGHTING = REAL_ATTRIBUTE["Sighting"][0]
REAL_TAG = REAL_EVENT["Tag"][0]
REAL_OBJECT = REAL_EVENT["Object"][0]
REAL_INDEX = fixture("search_index_result.json")[0]


def check_schema(document: Any, definition: str | None = None) -> None:
    """Validate against schema-lax.json, or one of its ``defs`` (attribute, tag, org...)."""
    schema = SCHEMA if definition is None else {"$schema": SCHEMA["$schema"], "defs": SCHEMA["defs"],
                                                "$ref": f"#/defs/{definition}"}
    jsonschema.validate(document, schema, cls=jsonschema.Draft4Validator)


def same_shape(ours: Any, real: Any, path: str = "", skip: frozenset[str] = frozenset()) -> None:
    """Every key of the real answer is in ours, with the same value type, recursively."""
    if ours is None or real is None:
        return
    if isinstance(real, dict):
        assert isinstance(ours, dict), f"{path}: {type(ours).__name__} where MISP has an object"
        for key, value in real.items():
            if key in skip:
                continue
            assert key in ours, f"{path}.{key} missing (MISP has it)"
            same_shape(ours[key], value, f"{path}.{key}", skip)
    elif isinstance(real, list):
        assert isinstance(ours, list), f"{path}: {type(ours).__name__} where MISP has a list"
        if real:
            for item in ours:
                same_shape(item, real[0], f"{path}[]", skip)
    else:
        assert type(ours) is type(real), f"{path}: {type(ours).__name__} where MISP has {type(real).__name__}"


def flat(real: dict[str, Any]) -> dict[str, Any]:
    """A record's own fields, without its nested lists and objects."""
    return {k: v for k, v in real.items() if not isinstance(v, (list, dict))}


def check_event(document: dict[str, Any]) -> MISPEvent:
    """An ``{"Event": ...}`` answer: schema, round trip and the real event's shape; returns the MISPEvent."""
    check_schema(document)
    same_shape(document["Event"], REAL_EVENT, "Event", CLUSTER_LIBRARY_KEYS)
    same_shape(document["Event"], REAL_SIGHTED, "Event", CLUSTER_LIBRARY_KEYS)
    event = MISPEvent()
    event.load(copy.deepcopy(document))
    again = MISPEvent()
    again.load(event.to_json())
    assert again.uuid == document["Event"]["uuid"] and len(again.attributes) == len(document["Event"]["Attribute"])
    return event


def check_attribute(attr: dict[str, Any], real: dict[str, Any] = REAL_ATTRIBUTE) -> MISPAttribute:
    """An attribute: the schema's attribute, a MISPAttribute round trip and the real attribute's shape."""
    check_schema(attr, "attribute")
    same_shape(attr, real, "Attribute")
    parsed = MISPAttribute()
    parsed.from_dict(**copy.deepcopy(attr))
    again = MISPAttribute()
    again.from_dict(**json.loads(parsed.to_json()))
    assert again.uuid == attr["uuid"] and again.value == attr["value"]
    return parsed


def check_sighting(sighting: dict[str, Any], real: dict[str, Any] = REAL_SIGHTING) -> MISPSighting:
    """A sighting: a MISPSighting round trip and the real sighting's shape (schema-lax has no sighting)."""
    same_shape(sighting, real, "Sighting")
    parsed = MISPSighting()
    parsed.from_dict(**copy.deepcopy(sighting))
    again = MISPSighting()
    again.from_dict(**json.loads(parsed.to_json()))
    assert again.uuid == sighting["uuid"] and again.attribute_id == sighting["attribute_id"]
    return parsed


def check_object(document: dict[str, Any]) -> MISPObject:
    """An ``{"Object": ...}`` answer: its attributes by the schema, a MISPObject round trip, the real shape."""
    for attr in document["Object"]["Attribute"]:
        check_schema(attr, "attribute")
    same_shape(document["Object"], REAL_OBJECT, "Object")
    parsed = MISPObject(document["Object"]["name"], standalone=False)
    parsed.from_dict(**copy.deepcopy(document))
    again = MISPObject(parsed.name, standalone=False)
    again.from_dict(**json.loads(parsed.to_json()))
    assert again.uuid == document["Object"]["uuid"] and len(again.attributes) == len(document["Object"]["Attribute"])
    return parsed


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One in-process dev MISP server for the module."""
    models = MispModels()
    with serve(models, admin_key=ADMIN_KEY) as running:
        yield running
    models.close()


@pytest.fixture(scope="module")
def misp(server: RunningServer) -> PyMISP:
    """Unmodified PyMISP on the admin key."""
    return PyMISP(server.url, ADMIN_KEY)


@pytest.fixture()
def event(misp: PyMISP, server: RunningServer) -> dict[str, Any]:
    """A fresh event with a tagged, sighted attribute and an object; the server is emptied first."""
    server.models.reset()
    created = misp.add_event({"info": "shapes", "Tag": [{"name": "tlp:white"}],
                              "Attribute": [{"type": "domain", "value": "shape.example"}],
                              "Object": [{"name": "file", "meta-category": "file", "Attribute": [
                                  {"type": "filename", "value": "a.exe", "object_relation": "filename"}]}]})
    attr = created["Event"]["Attribute"][0]
    misp.tag(attr["uuid"], "kind:test")
    misp.add_sighting({"source": "shapes"}, attr["id"])
    return misp.get_event(created["Event"]["id"])


def test_event_add_view_edit_answers(misp: PyMISP, event: dict[str, Any]) -> None:
    """events/add, events/view and events/edit answer full events of MISP's shape."""
    parsed = check_event(event)
    assert parsed.attributes[0].tags[0].name == "kind:test" and parsed.attributes[0].sightings[0].source == "shapes"
    assert parsed.objects[0].attributes[0].object_relation == "filename"
    check_event(misp.update_event({"info": "edited"}, event["Event"]["id"]))
    check_event(misp.add_event({"info": "plain"}))


def test_tags_and_orgs(event: dict[str, Any]) -> None:
    """Tags and organisations inside an event have the schema's and MISP's shape."""
    for tag in event["Event"]["Tag"] + event["Event"]["Attribute"][0]["Tag"]:
        check_schema(tag, "tag")
        same_shape(tag, REAL_TAG, "Tag")
    for org in (event["Event"]["Org"], event["Event"]["Orgc"]):
        check_schema(org, "org")
        same_shape(org, REAL_EVENT["Org"], "Org")


def test_events_rest_search(misp: PyMISP, event: dict[str, Any]) -> None:
    """events/restSearch answers a list of full events (PyMISP unwraps ``response``)."""
    found = misp.search(controller="events", value="shape.example")
    assert [e["Event"]["uuid"] for e in found] == [event["Event"]["uuid"]]
    for document in found + misp.search(controller="events", metadata=True):
        check_schema(document)
        same_shape(document["Event"], REAL_EVENT, "Event", skip=frozenset({"Attribute", "Object"}))
        MISPEvent().load(copy.deepcopy(document))


def test_attribute_answers(misp: PyMISP, event: dict[str, Any]) -> None:
    """attributes/add, view, edit and restSearch answer attributes of MISP's shape."""
    added = misp.add_attribute(event["Event"]["id"], {"type": "comment", "value": "added"})
    check_attribute(added["Attribute"], flat(REAL_ATTRIBUTE))
    viewed = misp.get_attribute(event["Event"]["Attribute"][0]["uuid"])
    assert check_attribute(viewed["Attribute"]).tags[0].name == "kind:test"
    edited = misp.update_attribute({"comment": "edited"}, added["Attribute"]["id"])
    assert check_attribute(edited["Attribute"], flat(REAL_ATTRIBUTE)).comment == "edited"
    found = misp.search(controller="attributes", value="shape.example", include_sightings=True)
    for attr in found["Attribute"]:
        check_attribute(attr, {k: v for k, v in REAL_ATTRIBUTE.items() if k not in ("Galaxy", "ShadowAttribute")})
        assert attr["Event"]["uuid"] == event["Event"]["uuid"]


def test_sighting_answers(misp: PyMISP, event: dict[str, Any]) -> None:
    """sightings/add answers the Sighting row; sightings/restSearch answers full sightings."""
    added = misp.add_sighting({"value": "shape.example", "source": "by value"})
    row = {k: v for k, v in flat(REAL_SIGHTING).items() if k != "attribute_uuid"}  # a column MISP's row lacks
    check_sighting(added["Sighting"], row)
    found = misp.search_sightings(context="event", context_id=event["Event"]["id"])
    assert {s["Sighting"]["source"] for s in found} == {"shapes", "by value"}
    for entry in found:
        check_sighting(entry["Sighting"])
    check_sighting(event["Event"]["Attribute"][0]["Sighting"][0])


def test_object_answers(misp: PyMISP, event: dict[str, Any]) -> None:
    """objects/add and objects/view answer objects of MISP's shape."""
    obj = MISPObject("domain-ip")
    obj.add_attribute("domain", value="obj.example")
    obj.add_attribute("ip", value="10.1.2.3")
    check_object(misp.add_object(event["Event"]["id"], obj))
    parsed = check_object(misp.get_object(event["Event"]["Object"][0]["uuid"]))
    assert parsed.attributes[0].value == "a.exe"


def test_index_answer(misp: PyMISP, event: dict[str, Any]) -> None:
    """events/index answers event metadata with EventTag and SharingGroup, like MISP's index."""
    index = misp.search_index(eventinfo="shapes")
    assert [e["uuid"] for e in index] == [event["Event"]["uuid"]]
    same_shape(index[0], REAL_INDEX, "index", skip=frozenset(OBSOLETE_INDEX_KEYS))
    check_schema({"Event": {k: v for k, v in index[0].items() if k not in ("EventTag", "SharingGroup")}})
    MISPEvent().from_dict(**copy.deepcopy(index[0]))


def test_real_events_go_in_and_come_out(misp: PyMISP, server: RunningServer) -> None:
    """The fixtures' real MISP events can be added, and come back with their attributes, objects and tags."""
    server.models.reset()
    for name in ("existing_event.json", "sighting_1.json", "57c4445b-c548-4654-af0b-4be3950d210f.json"):
        real = fixture(name)
        real = real.get("Event", real)
        added = misp.add_event({"Event": real})
        assert "errors" not in added, added.get("errors")
        view = check_event(misp.get_event(added["Event"]["uuid"]))
        count = len(real["Attribute"]) + sum(len(o["Attribute"]) for o in real.get("Object", []))
        assert int(view.attribute_count) == count
        assert {t.name for t in view.tags} == {t["name"] for t in real.get("Tag", [])}
