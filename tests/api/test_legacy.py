"""Unit tests for dxlmispservice.api.legacy: each 2.4 name maps its payload to the right modern PyMISP call
and shapes the answer as 0.1.5 did; bad payloads are refused before MISP is called."""
from __future__ import annotations

import inspect
import itertools
import secrets
import uuid as uuidlib
from typing import Any, Iterator

import pytest
from pymisp import MISPAttribute, MISPEvent, MISPSighting, PyMISP

from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import serve
from dxlmispservice.api import legacy
from dxlmispservice.errors import InvalidArguments, MispRefused
from dxlmispservice.misp import MispConnection
from dxlmispservice.api.passthrough import to_json
from dxlmispservice.settings import Settings


class FakePyMISP:
    """A tiny in-memory MISP behind PyMISP's method names: every call is bound to the real PyMISP
    signature (a wrong keyword fails the test), recorded, and answered the way MISP answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)

    def _record(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = inspect.signature(getattr(PyMISP, name)).bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        self.calls.append((name, arguments))
        return arguments

    def _event(self, ref: Any) -> dict[str, Any]:
        for event in self.events.values():
            if str(ref) in (event["id"], event["uuid"]):
                return event
        raise AssertionError(f"no event {ref!r}")

    def _attribute(self, uuid: str) -> dict[str, Any]:
        for event in self.events.values():
            for attribute in event["Attribute"]:
                if attribute["uuid"] == uuid:
                    return attribute
        raise AssertionError(f"no attribute {uuid!r}")

    def add_event(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        event = self._record("add_event", *args, **kwargs)["event"]
        assert isinstance(event, MISPEvent)
        stored = {**to_json(event), "id": str(next(self.ids)), "uuid": str(uuidlib.uuid4()), "Attribute": [],
                  "Org": {"id": "1", "name": "ORGNAME"}, "published": False}
        self.events[stored["id"]] = stored
        return {"Event": dict(stored)}

    def add_attribute(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("add_attribute", *args, **kwargs)
        event = self._event(arguments["event"])
        given = arguments["attribute"]
        stored = []
        for attribute in given if isinstance(given, list) else [given]:
            assert isinstance(attribute, MISPAttribute)
            stored.append({**to_json(attribute), "id": str(next(self.ids)), "event_id": event["id"],
                           "uuid": str(uuidlib.uuid4())})
        event["Attribute"].extend(stored)
        return {"Attribute": stored if isinstance(given, list) else stored[0]}

    def add_attribute_proposal(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("add_attribute_proposal", *args, **kwargs)
        return {"ShadowAttribute": {**to_json(arguments["attribute"]), "id": str(next(self.ids))}}

    def tag(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("tag", *args, **kwargs)
        self._attribute(arguments["misp_entity"]).setdefault("Tag", []).append(
            {"id": "1", "name": arguments["tag"], "colour": "#75705b", "exportable": True})
        message = f"Tag {arguments['tag']}(1) successfully attached to Attribute(5)."
        return {"saved": True, "success": True, "name": message, "message": message, "url": "/tags/attachTagToObject"}

    def untag(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("untag", *args, **kwargs)
        return {"saved": True, "success": f"Tag {arguments['tag']} removed."}

    def add_sighting(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("add_sighting", *args, **kwargs)
        sighting = arguments["sighting"]
        assert isinstance(sighting, MISPSighting)
        stored = {**to_json(sighting), "id": str(next(self.ids)), "uuid": str(uuidlib.uuid4())}
        if arguments["attribute"] is not None:
            self._attribute(arguments["attribute"]).setdefault("Sighting", []).append(stored)
        return {"Sighting": stored}

    def search(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("search", *args, **kwargs)
        wanted = arguments.get("eventid")
        events = [e for e in self.events.values() if wanted is None or str(wanted) == e["id"]]
        if arguments["controller"] == "attributes":
            return {"Attribute": [a for e in events for a in e["Attribute"]]}
        return [{"Event": e} for e in events]

    def get_event(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"Event": self._event(self._record("get_event", *args, **kwargs)["event"])}

    def update_event(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("update_event", *args, **kwargs)
        event = self._event(arguments["event_id"])
        changes = arguments["event"].get("Event", arguments["event"])
        event.update(changes)
        return {"Event": event}

    def delete_event(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        event = self._event(self._record("delete_event", *args, **kwargs)["event"])
        del self.events[event["id"]]
        return {"saved": True, "success": True, "name": "Event deleted.", "message": "Event deleted.",
                "url": f"/events/delete/{event['id']}"}

    def publish(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self._record("publish", *args, **kwargs)
        event = self._event(arguments["event"])
        return {"name": "Publish", "message": "Job queued", "url": f"/events/publish/{event['id']}",
                "id": event["id"]}


class FakeClient:
    """The MispConnection interface: ``call(fn)`` runs ``fn`` on the fake PyMISP."""

    def __init__(self, pymisp: FakePyMISP) -> None:
        self.pymisp = pymisp

    def call(self, fn: Any) -> Any:
        return fn(self.pymisp)


@pytest.fixture
def misp() -> FakePyMISP:
    return FakePyMISP()


@pytest.fixture
def client(misp: FakePyMISP) -> FakeClient:
    return FakeClient(misp)


def new_event(client: FakeClient, info: str = "OpenDXL MISP update event example") -> dict[str, Any]:
    return legacy.new_event(client, {"distribution": 3, "info": info, "analysis": 1, "threat_level_id": 3})


def add_comment(client: FakeClient, event_id: str) -> dict[str, Any]:
    return legacy.add_internal_comment(client, {"event": event_id, "reference": "Added by the example",
                                                "comment": "This is only a test"})[0]["Attribute"]


def test_legacy_table_holds_exactly_the_2_4_names() -> None:
    """LEGACY serves the eleven names of the 2.4 service, each with its adapter."""
    assert set(legacy.LEGACY) == {"new_event", "add_internal_comment", "add_named_attribute", "tag", "untag",
                                  "sighting", "search", "get_event", "update_event", "delete_event", "publish"}
    assert all(legacy.LEGACY[name] is getattr(legacy, name) for name in legacy.LEGACY)


# --- new_event -----------------------------------------------------------------------------------------------
def test_new_event_adds_a_misp_event_and_answers_event(client: FakeClient, misp: FakePyMISP) -> None:
    """new_event builds a MISPEvent from the 2.4 fields, calls add_event, and answers {"Event": ...}."""
    answer = new_event(client, "my info")
    name, arguments = misp.calls[-1]
    assert name == "add_event" and arguments["pythonify"] is False
    event = arguments["event"]
    assert (event.info, event.distribution, event.analysis, event.threat_level_id) == ("my info", 3, 1, 3)
    assert answer["Event"]["info"] == "my info" and answer["Event"]["id"] in misp.events


def test_new_event_published_true_publishes_the_new_event(client: FakeClient, misp: FakePyMISP) -> None:
    """new_event with published=true sends an event marked published, as 2.4 did."""
    legacy.new_event(client, {"info": "x", "published": True})
    assert misp.calls[-1][1]["event"].published is True


def test_new_event_without_info_lists_the_accepted_keys(client: FakeClient, misp: FakePyMISP) -> None:
    """A new_event without info is refused before MISP is called, listing the accepted keys."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.new_event(client, {"distribution": 3})
    assert "missing 'info'" in raised.value.message
    assert "threat_level_id" in raised.value.message and "info (required)" in raised.value.message
    assert misp.calls == []


def test_new_event_unknown_key_and_bad_type_are_both_named(client: FakeClient, misp: FakePyMISP) -> None:
    """Unknown keys and wrongly typed values are all named in one error, and MISP is not called."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.new_event(client, {"info": "x", "colour": "red", "analysis": "high"})
    assert "'colour'" in raised.value.message and "'analysis' must be an integer" in raised.value.message
    assert misp.calls == []


def test_new_event_out_of_range_value_is_invalid_arguments(client: FakeClient, misp: FakePyMISP) -> None:
    """PyMISP's own check (distribution 0-4) becomes InvalidArguments before any call."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.new_event(client, {"info": "x", "distribution": 9})
    assert "distribution" in raised.value.message
    assert misp.calls == []


# --- attributes --------------------------------------------------------------------------------------------
def test_add_internal_comment_answers_a_list_of_one_attribute(client: FakeClient, misp: FakePyMISP) -> None:
    """add_internal_comment adds a comment attribute (Internal reference) and answers [{"Attribute": ...}]."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.add_internal_comment(client, {"event": event_id, "reference": "ref text", "comment": "c"})
    assert isinstance(answer, list) and len(answer) == 1 and set(answer[0]) == {"Attribute"}
    name, arguments = misp.calls[-1]
    attribute = arguments["attribute"]
    assert name == "add_attribute" and arguments["event"] == event_id
    assert (attribute.type, attribute.category, attribute.value, attribute.comment, attribute.to_ids) == \
        ("comment", "Internal reference", "ref text", "c", False)
    assert answer[0]["Attribute"]["uuid"] == misp.events[event_id]["Attribute"][0]["uuid"]


def test_add_internal_comment_with_several_references_posts_them_at_once(client: FakeClient,
                                                                         misp: FakePyMISP) -> None:
    """A list of references goes to MISP in one add_attribute call, answered as a list of one answer."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.add_internal_comment(client, {"event": int(event_id), "reference": ["a", "b"]})
    assert [a.value for a in misp.calls[-1][1]["attribute"]] == ["a", "b"]
    assert len(answer) == 1 and len(answer[0]["Attribute"]) == 2


def test_add_internal_comment_proposal_uses_one_proposal_per_value(client: FakeClient, misp: FakePyMISP) -> None:
    """proposal=true sends each value as an attribute proposal and answers one item per value."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.add_internal_comment(client, {"event": event_id, "reference": ["a", "b"], "proposal": True})
    assert [name for name, _ in misp.calls[-2:]] == ["add_attribute_proposal"] * 2
    assert [item["ShadowAttribute"]["value"] for item in answer] == ["a", "b"]


def test_add_named_attribute_takes_type_and_event_object(client: FakeClient, misp: FakePyMISP) -> None:
    """add_named_attribute accepts the event as {"Event": {"id": ...}} and sends the named type."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.add_named_attribute(client, {"event": {"Event": {"id": event_id}}, "type_value": "ip-dst",
                                                 "value": "10.0.0.1", "to_ids": True})
    attribute = misp.calls[-1][1]["attribute"]
    assert misp.calls[-1][1]["event"] == event_id
    assert (attribute.type, attribute.value, attribute.to_ids, attribute.category) == \
        ("ip-dst", "10.0.0.1", True, "Network activity")
    assert answer[0]["Attribute"]["type"] == "ip-dst"


def test_add_named_attribute_unknown_type_is_refused_before_misp(client: FakeClient, misp: FakePyMISP) -> None:
    """An attribute type MISP does not know is InvalidArguments, and nothing is sent."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.add_named_attribute(client, {"event": 1, "type_value": "no-such-type", "value": "x"})
    assert "no-such-type" in raised.value.message
    assert misp.calls == []


def test_add_named_attribute_unknown_category_is_named(client: FakeClient, misp: FakePyMISP) -> None:
    """An unknown category is InvalidArguments that says so, and nothing is sent."""
    with pytest.raises(InvalidArguments, match="'Nope' is not a MISP attribute category"):
        legacy.add_named_attribute(client, {"event": 1, "type_value": "ip-dst", "value": "x", "category": "Nope"})
    assert misp.calls == []


@pytest.mark.parametrize("event", ["1/../../admin", "abc", "\u00b9", -1, True, {"info": "no id"}])
def test_event_reference_must_be_an_id_or_uuid(client: FakeClient, misp: FakePyMISP, event: Any) -> None:
    """An event reference that is not an id or a UUID (a path, a word, a bool) is refused."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.add_internal_comment(client, {"event": event, "reference": "x"})
    assert "'event' must be an id" in raised.value.message
    assert misp.calls == []


# --- tag, untag, sighting --------------------------------------------------------------------------------
def test_tag_answers_name_message_url(client: FakeClient, misp: FakePyMISP) -> None:
    """tag {uuid, tag} calls PyMISP's tag and answers exactly MISP's name, message and url."""
    attribute = add_comment(client, new_event(client)["Event"]["id"])
    answer = legacy.tag(client, {"uuid": attribute["uuid"], "tag": "Tagged by the example"})
    assert misp.calls[-1] == ("tag", {"misp_entity": attribute["uuid"], "tag": "Tagged by the example",
                                      "local": False, "relationship_type": None})
    assert set(answer) == {"name", "message", "url"}
    assert answer["url"] == "/tags/attachTagToObject" and "Tagged by the example" in answer["message"]


def test_tag_accepts_the_modern_names(client: FakeClient, misp: FakePyMISP) -> None:
    """tag also takes misp_entity (an attribute object) and a tag object, plus local."""
    attribute = add_comment(client, new_event(client)["Event"]["id"])
    legacy.tag(client, {"misp_entity": {"Attribute": attribute}, "tag": {"name": "t1"}, "local": True})
    assert misp.calls[-1][1]["misp_entity"] == attribute["uuid"]
    assert misp.calls[-1][1]["tag"] == "t1" and misp.calls[-1][1]["local"] is True


def test_tag_with_both_old_and_new_key_is_refused(client: FakeClient, misp: FakePyMISP) -> None:
    """uuid and misp_entity name the same argument: giving both is an error."""
    uuid = str(uuidlib.uuid4())
    with pytest.raises(InvalidArguments) as raised:
        legacy.tag(client, {"uuid": uuid, "misp_entity": uuid, "tag": "t"})
    assert "give only one of 'uuid' or 'misp_entity'" in raised.value.message
    assert misp.calls == []


def test_tag_invalid_uuid_is_refused(client: FakeClient, misp: FakePyMISP) -> None:
    """tag checks the UUID, as PyMISP 2.4 did, before calling MISP."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.tag(client, {"uuid": "not-a-uuid", "tag": "t"})
    assert "'uuid' must be a UUID" in raised.value.message
    assert misp.calls == []


def test_untag_builds_name_message_url_from_the_modern_answer(client: FakeClient, misp: FakePyMISP) -> None:
    """untag calls PyMISP's untag; a modern answer without name/url still gets the 2.4 shape."""
    uuid = str(uuidlib.uuid4())
    answer = legacy.untag(client, {"uuid": uuid, "tag": "old"})
    assert misp.calls[-1] == ("untag", {"misp_entity": uuid, "tag": "old"})
    assert answer == {"name": "Tag old removed.", "message": "Tag old removed.", "url": "/tags/removeTagFromObject"}


def test_sighting_answers_the_2_4_message(client: FakeClient, misp: FakePyMISP) -> None:
    """sighting {uuid, type, source} adds a sighting to that attribute and answers the 2.4 message."""
    attribute = add_comment(client, new_event(client)["Event"]["id"])
    answer = legacy.sighting(client, {"uuid": attribute["uuid"], "type": "0", "source": "Seen by the example"})
    name, arguments = misp.calls[-1]
    assert name == "add_sighting" and arguments["attribute"] == attribute["uuid"]
    assert (arguments["sighting"].source, arguments["sighting"].type) == ("Seen by the example", "0")
    assert answer == {"message": "Sighting added.", "name": "1 sighting successfully added.",
                      "url": f"/sightings/add/{attribute['uuid']}"}


def test_sighting_by_value_names_its_type(client: FakeClient, misp: FakePyMISP) -> None:
    """A sighting by value goes to /sightings/add with the value, and type 1 reads false-positive."""
    answer = legacy.sighting(client, {"value": "10.0.0.1", "type": 1})
    arguments = misp.calls[-1][1]
    assert arguments["attribute"] is None and arguments["sighting"].value == "10.0.0.1"
    assert answer["name"] == "1 false-positive successfully added." and answer["url"] == "/sightings/add"


@pytest.mark.parametrize("payload", [{"source": "s"}, {"uuid": str(uuidlib.uuid4()), "type": 7},
                                     {"uuid": str(uuidlib.uuid4()), "id": 3}])
def test_sighting_needs_one_target_and_a_known_type(client: FakeClient, misp: FakePyMISP,
                                                    payload: dict[str, Any]) -> None:
    """A sighting without uuid/id/value, with both uuid and id, or with a type other than 0-2, is refused."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.sighting(client, payload)
    assert "Accepted keys: uuid, id, value, source, type, timestamp" in raised.value.message
    assert misp.calls == []


def test_check_reports_problems_in_spec_order_and_fills_defaults() -> None:
    """check names unknown keys first, then each spec entry's problem in spec order; values keep spec order."""
    spec = {"a": legacy.Arg("int", required=True), "b": legacy.Arg("text", aliases=("bee",)),
            "c": legacy.Arg("bool", default=True), "d": legacy.Arg("int")}
    with pytest.raises(InvalidArguments) as raised:
        legacy.check("x", {"d": "no", "zz": 1, "bee": "1", "b": "2", "yy": 2}, spec)
    assert raised.value.message == ("x: unknown key(s) 'yy', 'zz'; missing 'a'; give only one of 'b' or 'bee'; "
                                    "'d' must be an integer. Accepted keys: a (required), b|bee, c, d")
    values = legacy.check("x", {"d": "4", "bee": "t", "a": 1, "b": None}, spec)
    assert list(values.items()) == [("a", 1), ("b", "t"), ("c", True), ("d", 4)]


# --- search ------------------------------------------------------------------------------------------------
def test_search_by_eventid_answers_response_list_of_events(client: FakeClient, misp: FakePyMISP) -> None:
    """search {eventid} runs an events restSearch and answers {"response": [{"Event": ...}]}."""
    event_id = new_event(client)["Event"]["id"]
    new_event(client, "another")
    answer = legacy.search(client, {"eventid": event_id})
    arguments = misp.calls[-1][1]
    assert (arguments["controller"], arguments["return_format"], arguments["eventid"], arguments["pythonify"]) == \
        ("events", "json", event_id, False)
    assert [item["Event"]["id"] for item in answer["response"]] == [event_id]


def test_search_on_attributes_keeps_the_attribute_wrapper(client: FakeClient, misp: FakePyMISP) -> None:
    """search on the attributes controller answers {"response": {"Attribute": [...]}}."""
    event_id = new_event(client)["Event"]["id"]
    comment = add_comment(client, event_id)
    answer = legacy.search(client, {"controller": "attributes", "eventid": event_id})
    assert [a["uuid"] for a in answer["response"]["Attribute"]] == [comment["uuid"]]


def test_search_maps_the_2_4_keys(client: FakeClient, misp: FakePyMISP) -> None:
    """2.4 keys become modern ones: values/not_values and tags/not_tags become OR/NOT queries,
    returnFormat becomes return_format, and 2.4-only MISP filters pass as they are."""
    legacy.search(client, {"values": ["a", "b"], "not_values": "c", "tags": "t1", "not_tags": ["t2"],
                           "returnFormat": "json", "withAttachments": True, "includeWarninglistHits": True})
    arguments = misp.calls[-1][1]
    assert arguments["value"] == {"OR": ["a", "b"], "NOT": ["c"]}
    assert arguments["tags"] == {"OR": ["t1"], "NOT": ["t2"]}
    assert arguments["withAttachments"] is True
    assert arguments["kwargs"] == {"includeWarninglistHits": True}


def test_search_accepts_modern_names_and_paging(client: FakeClient, misp: FakePyMISP) -> None:
    """search takes modern keyword names such as value, limit, page and include_sightings."""
    legacy.search(client, {"value": "x", "limit": 10, "page": 2, "include_sightings": True})
    arguments = misp.calls[-1][1]
    assert (arguments["value"], arguments["limit"], arguments["page"], arguments["include_sightings"]) == \
        ("x", 10, 2, True)


@pytest.mark.parametrize("payload, expected", [
    ({"controller": "sightings"}, "'controller' must be one of events, attributes, objects"),
    ({"returnFormat": "pdf"}, "'returnFormat' must be one of"),
    ({"value": "a", "values": "b"}, "give only one of 'value' or 'values'"),
    ({"evntid": 1}, "unknown key(s) 'evntid'"),
    ({"pythonify": True}, "unknown key(s) 'pythonify'"),
])
def test_search_refuses_bad_payloads(client: FakeClient, misp: FakePyMISP, payload: dict[str, Any],
                                     expected: str) -> None:
    """A bad controller or format, a doubled key or an unknown key is refused before MISP is called."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.search(client, payload)
    assert expected in raised.value.message
    assert misp.calls == []


def test_search_error_lists_old_and_modern_keys(client: FakeClient) -> None:
    """The search error lists both the 2.4 and the modern key names."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.search(client, {"nope": 1})
    for key in ("eventid", "value|values", "not_values", "return_format|returnFormat", "limit", "page"):
        assert key in raised.value.message


# --- events ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["event_id", "event"])
def test_get_event_takes_event_id_or_event(client: FakeClient, misp: FakePyMISP, key: str) -> None:
    """get_event takes the 2.4 event_id or the modern event, and answers {"Event": ...}."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.get_event(client, {key: event_id})
    assert misp.calls[-1][0] == "get_event" and misp.calls[-1][1]["event"] == event_id
    assert misp.calls[-1][1]["pythonify"] is False
    assert answer["Event"]["id"] == event_id


def test_update_event_posts_the_event_json(client: FakeClient, misp: FakePyMISP) -> None:
    """update_event {event_id, event} posts the event JSON as given to that event."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.update_event(client, {"event_id": event_id, "event": {"Event": {"info": "changed"}}})
    arguments = misp.calls[-1][1]
    assert arguments["event"] == {"Event": {"info": "changed"}} and arguments["event_id"] == event_id
    assert answer["Event"]["info"] == "changed"


def test_update_event_takes_the_id_from_the_event(client: FakeClient, misp: FakePyMISP) -> None:
    """Without event_id, update_event uses the event's own id; with neither, it is refused."""
    event_id = new_event(client)["Event"]["id"]
    legacy.update_event(client, {"event": {"id": event_id, "info": "again"}})
    assert misp.calls[-1][1]["event_id"] == event_id
    calls = len(misp.calls)
    with pytest.raises(InvalidArguments):
        legacy.update_event(client, {"event": {"info": "no id"}})
    assert len(misp.calls) == calls


def test_event_object_is_referred_to_by_uuid_first_as_pymisp_does(client: FakeClient, misp: FakePyMISP) -> None:
    """An event object with both an id and a uuid stands for its uuid (PyMISP's rule), in update and publish."""
    made = new_event(client)["Event"]
    legacy.update_event(client, {"event": {"Event": {"id": made["id"], "uuid": made["uuid"], "info": "again"}}})
    assert misp.calls[-1][1]["event_id"] == made["uuid"]
    legacy.publish(client, {"event": {"id": made["id"], "uuid": made["uuid"]}})
    assert misp.calls[-1] == ("publish", {"event": made["uuid"], "alert": True})


def test_reference_rule_is_one_for_legacy_and_pass_through() -> None:
    """legacyargs.as_ref and the pass-through share entity_reference: uuid first, id first for shadow attributes."""
    from dxlmispservice.api.legacyargs import as_ref
    from dxlmispservice.api.references import entity_reference

    uuid = "5f3c1a2b-1111-4222-8333-444455556666"
    assert as_ref({"id": "7", "uuid": uuid}) == (True, uuid) == (True, entity_reference({"id": "7", "uuid": uuid}))
    assert as_ref({"ShadowAttribute": {"id": "7", "uuid": uuid}}) == (True, "7")
    assert as_ref({"id": "", "uuid": uuid}) == (True, uuid) and as_ref({"id": "7"}) == (True, "7")
    assert as_ref({"uuid": "not-a-uuid", "id": "7"})[0] is False


def test_delete_event_answers_misps_message(client: FakeClient, misp: FakePyMISP) -> None:
    """delete_event {event_id} deletes that event and answers MISP's message."""
    event_id = new_event(client)["Event"]["id"]
    answer = legacy.delete_event(client, {"event_id": event_id})
    assert misp.calls[-1] == ("delete_event", {"event": event_id})
    assert event_id not in misp.events and answer["message"] == "Event deleted."


def test_publish_keeps_the_2_4_alert_default(client: FakeClient, misp: FakePyMISP) -> None:
    """publish {event} publishes with alert=true as 2.4 did; alert=false publishes quietly."""
    event_id = new_event(client)["Event"]["id"]
    legacy.publish(client, {"event": event_id})
    assert misp.calls[-1] == ("publish", {"event": event_id, "alert": True})
    legacy.publish(client, {"event_id": int(event_id), "alert": False})
    assert misp.calls[-1] == ("publish", {"event": int(event_id), "alert": False})


def test_publish_an_already_published_event_object_is_refused(client: FakeClient, misp: FakePyMISP) -> None:
    """publish given an event object that is already published is refused without calling MISP."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.publish(client, {"event": {"Event": {"id": "3", "published": True}}})
    assert "already published" in raised.value.message
    assert misp.calls == []


# --- the seed's basic update-event flow --------------------------------------------------------------------
def test_basic_update_event_flow_has_the_seed_shapes(client: FakeClient) -> None:
    """The seed's five steps, topic by topic, answer with the structures printed in the seed."""
    event = legacy.new_event(client, {"distribution": 3, "info": "OpenDXL MISP update event example",
                                      "analysis": 1, "threat_level_id": 3})
    event_id = event["Event"]["id"]
    comment = legacy.add_internal_comment(client, {"event": event_id,
                                                   "reference": "Added by the OpenDXL MISP update event example",
                                                   "comment": "This is only a test"})
    uuid = comment[0]["Attribute"]["uuid"]
    tagged = legacy.tag(client, {"uuid": uuid, "tag": "Tagged by the OpenDXL MISP update event example"})
    sighted = legacy.sighting(client, {"uuid": uuid, "type": "0",
                                       "source": "Seen by the OpenDXL MISP update event example"})
    found = legacy.search(client, {"eventid": event_id})

    assert set(event) == {"Event"}
    assert isinstance(comment, list) and len(comment) == 1 and set(comment[0]) == {"Attribute"}
    assert set(tagged) == {"name", "message", "url"}
    assert sighted == {"message": "Sighting added.", "name": "1 sighting successfully added.",
                       "url": f"/sightings/add/{uuid}"}
    assert set(found) == {"response"} and len(found["response"]) == 1
    attribute = found["response"][0]["Event"]["Attribute"][0]
    assert attribute["uuid"] == uuid
    assert attribute["Tag"][0]["name"] == "Tagged by the OpenDXL MISP update event example"
    assert attribute["Sighting"][0]["source"] == "Seen by the OpenDXL MISP update event example"


# --- against real PyMISP and the dev MISP server -------------------------------------------------------------
@pytest.fixture(scope="module")
def real() -> Iterator[MispConnection]:
    """The real MispConnection (real PyMISP) on the dev MISP server, served in-process on a free port."""
    key = secrets.token_hex(20)
    with serve(MispModels(), admin_key=key) as server:
        yield MispConnection(Settings(misp_url=server.url, api_key=key))


class TestOnRealPyMISP:
    """Each legacy name through the real MispConnection and PyMISP, over HTTP to the in-process dev MISP server."""

    @staticmethod
    def event(real: Any, info: str = "OpenDXL MISP update event example") -> str:
        answer = legacy.new_event(real, {"distribution": 3, "info": info, "analysis": 1, "threat_level_id": 3})
        return str(answer["Event"]["id"])

    @staticmethod
    def comment(real: Any, event_id: str) -> str:
        answer = legacy.add_internal_comment(real, {"event": event_id, "reference": "Added by the example",
                                                    "comment": "This is only a test"})
        return str(answer[0]["Attribute"]["uuid"])

    @staticmethod
    def stored_attribute(real: Any, event_id: str) -> dict[str, Any]:
        return legacy.get_event(real, {"event_id": event_id})["Event"]["Attribute"][0]

    def test_new_event(self, real: Any) -> None:
        """new_event stores the event and answers {"Event": ...} with its id and fields."""
        answer = legacy.new_event(real, {"distribution": 3, "info": "real new", "analysis": 1, "threat_level_id": 3})
        assert set(answer) == {"Event"}
        assert (answer["Event"]["info"], str(answer["Event"]["threat_level_id"])) == ("real new", "3")
        assert legacy.get_event(real, {"event_id": answer["Event"]["id"]})["Event"]["info"] == "real new"

    def test_add_internal_comment(self, real: Any) -> None:
        """add_internal_comment answers a list of one {"Attribute": ...}, a stored comment attribute."""
        event_id = self.event(real)
        answer = legacy.add_internal_comment(real, {"event": event_id, "reference": "ref", "comment": "c"})
        assert len(answer) == 1 and set(answer[0]) == {"Attribute"}
        stored = self.stored_attribute(real, event_id)
        assert (stored["type"], stored["category"], stored["value"], stored["comment"]) == \
            ("comment", "Internal reference", "ref", "c")
        assert stored["uuid"] == answer[0]["Attribute"]["uuid"]

    def test_add_named_attribute(self, real: Any) -> None:
        """add_named_attribute with two values stores both and answers one MISP answer in a list."""
        event_id = self.event(real)
        answer = legacy.add_named_attribute(real, {"event": event_id, "type_value": "ip-dst",
                                                   "value": ["10.1.1.1", "10.1.1.2"]})
        assert len(answer) == 1 and sorted(a["value"] for a in answer[0]["Attribute"]) == ["10.1.1.1", "10.1.1.2"]
        stored = legacy.get_event(real, {"event_id": event_id})["Event"]["Attribute"]
        assert sorted(a["value"] for a in stored) == ["10.1.1.1", "10.1.1.2"]

    def test_tag(self, real: Any) -> None:
        """tag answers exactly {"name", "message", "url"} and the attribute carries the tag."""
        event_id = self.event(real)
        uuid = self.comment(real, event_id)
        answer = legacy.tag(real, {"uuid": uuid, "tag": "Tagged by the example"})
        assert set(answer) == {"name", "message", "url"} and answer["url"] == "/tags/attachTagToObject"
        assert [t["name"] for t in self.stored_attribute(real, event_id)["Tag"]] == ["Tagged by the example"]

    def test_untag(self, real: Any) -> None:
        """untag answers {"name", "message", "url"} and the tag is gone."""
        event_id = self.event(real)
        uuid = self.comment(real, event_id)
        legacy.tag(real, {"uuid": uuid, "tag": "to remove"})
        answer = legacy.untag(real, {"uuid": uuid, "tag": "to remove"})
        assert set(answer) == {"name", "message", "url"} and answer["url"] == "/tags/removeTagFromObject"
        assert self.stored_attribute(real, event_id).get("Tag", []) == []

    def test_sighting(self, real: Any) -> None:
        """sighting answers the 2.4 message and the attribute carries the sighting."""
        event_id = self.event(real)
        uuid = self.comment(real, event_id)
        answer = legacy.sighting(real, {"uuid": uuid, "type": "0", "source": "Seen by the example"})
        assert answer == {"message": "Sighting added.", "name": "1 sighting successfully added.",
                          "url": f"/sightings/add/{uuid}"}
        assert [s["source"] for s in self.stored_attribute(real, event_id)["Sighting"]] == ["Seen by the example"]

    def test_search(self, real: Any) -> None:
        """The seed's flow: search {eventid} answers {"response": [{"Event": {"Attribute": [{Sighting, Tag}]}}]},
        and the attributes controller answers {"response": {"Attribute": [...]}}."""
        event_id = self.event(real)
        uuid = self.comment(real, event_id)
        legacy.tag(real, {"uuid": uuid, "tag": "Tagged by the OpenDXL MISP update event example"})
        legacy.sighting(real, {"uuid": uuid, "type": "0", "source": "Seen by the OpenDXL MISP update event example"})
        answer = legacy.search(real, {"eventid": event_id})
        assert set(answer) == {"response"} and [e["Event"]["id"] for e in answer["response"]] == [event_id]
        attribute = answer["response"][0]["Event"]["Attribute"][0]
        assert attribute["uuid"] == uuid
        assert [t["name"] for t in attribute["Tag"]] == ["Tagged by the OpenDXL MISP update event example"]
        assert [s["source"] for s in attribute["Sighting"]] == ["Seen by the OpenDXL MISP update event example"]
        attributes = legacy.search(real, {"controller": "attributes", "eventid": event_id})
        assert [a["uuid"] for a in attributes["response"]["Attribute"]] == [uuid]

    def test_get_event(self, real: Any) -> None:
        """get_event answers {"Event": ...} for the id; an unknown id is MISP's refusal."""
        event_id = self.event(real, "to get")
        assert legacy.get_event(real, {"event_id": event_id})["Event"]["info"] == "to get"
        with pytest.raises(MispRefused):
            legacy.get_event(real, {"event_id": 987654})

    def test_update_event(self, real: Any) -> None:
        """update_event posts the new fields and answers the updated {"Event": ...}."""
        event_id = self.event(real, "before")
        answer = legacy.update_event(real, {"event_id": event_id, "event": {"Event": {"info": "after"}}})
        assert answer["Event"]["info"] == "after"
        assert legacy.get_event(real, {"event_id": event_id})["Event"]["info"] == "after"

    def test_delete_event(self, real: Any) -> None:
        """delete_event answers MISP's message and the event is gone."""
        event_id = self.event(real, "to delete")
        answer = legacy.delete_event(real, {"event_id": event_id})
        assert answer["message"] == "Event deleted."
        with pytest.raises(MispRefused):
            legacy.get_event(real, {"event_id": event_id})

    def test_publish(self, real: Any) -> None:
        """publish answers MISP's message and the event is published."""
        event_id = self.event(real, "to publish")
        answer = legacy.publish(real, {"event": event_id})
        assert isinstance(answer, dict) and "message" in answer
        assert legacy.get_event(real, {"event_id": event_id})["Event"]["published"] is True


@pytest.mark.parametrize("payload, key", [({"eventid": {"a": 1}}, "eventid"), ({"limit": -5}, "limit"),
                                          ({"page": "-1"}, "page"), ({"eventid": [[1]]}, "eventid")])
def test_search_values_are_checked_by_type_and_range(client: FakeClient, misp: FakePyMISP,
                                                     payload: dict[str, Any], key: str) -> None:
    """An object where an id belongs, or a negative limit or page, is invalid_arguments naming the key."""
    with pytest.raises(InvalidArguments, match=f"'{key}' must be"):
        legacy.search(client, payload)
    assert misp.calls == []


# --- types and ranges of every legacy key ----------------------------------------------------------------------
BAD_LEGACY_VALUES = [
    ("new_event", {"info": "x", "distribution": 9}, "'distribution' must be an integer from 0 to 4"),
    ("new_event", {"info": "x", "threat_level_id": 0}, "'threat_level_id' must be an integer from 1 to 4"),
    ("new_event", {"info": "x", "analysis": -1}, "'analysis' must be an integer from 0 to 2"),
    ("new_event", {"info": "x", "orgc_id": -3}, "'orgc_id' must be an id"),
    ("new_event", {"info": "x", "sharing_group_id": {"id": 1}}, "'sharing_group_id' must be an id"),
    ("new_event", {"info": "a\u0000b"}, "'info' must be a string of at most 65535 UTF-8 bytes, with no NUL"),
    ("new_event", {"info": "é" * 40_000}, "'info' must be a string of at most 65535 UTF-8 bytes"),
    ("new_event", {"info": "x", "date": {"y": 2020}}, "'date' must be epoch seconds"),
    ("new_event", {"info": "x", "orgc_id": "9" * 5000}, "'orgc_id' must be an id"),
    ("get_event", {"event_id": -1}, "'event_id' must be an id"),
    ("get_event", {"event_id": "9" * 400}, "'event_id' must be an id"),
    ("get_event", {"event_id": 1, "deleted": {"a": 1}}, "'deleted' must be true/false"),
    ("add_named_attribute", {"event": 1, "type_value": "x" * 300, "value": "v"}, "'type_value' must be a non-blank"),
    ("add_named_attribute", {"event": 1, "type_value": "domain", "value": [{"a": 1}]}, "'value' must be"),
    ("add_named_attribute", {"event": 1, "type_value": "domain", "value": "a.b", "distribution": 6},
     "'distribution' must be an integer from 0 to 5"),
    ("add_named_attribute", {"event": 1, "type_value": "domain", "value": "a.b", "first_seen": [1]},
     "'first_seen' must be epoch seconds"),
    ("add_internal_comment", {"event": 1, "reference": "x", "category": ""}, "'category' must be a non-blank"),
    ("tag", {"uuid": str(uuidlib.uuid4()), "tag": "t" * 256}, "'tag' must be a tag name"),
    ("tag", {"uuid": str(uuidlib.uuid4()), "tag": "t", "relationship_type": ["x"]}, "'relationship_type' must be"),
    ("sighting", {"value": "x", "timestamp": -1}, "'timestamp' must be epoch seconds"),
    ("sighting", {"value": "x", "timestamp": 10**13}, "'timestamp' must be epoch seconds"),
    ("sighting", {"id": 0}, "'id' must be an id"),
    ("sighting", {"value": "x", "source": {"s": 1}}, "'source' must be a non-blank"),
    ("search", {"eventinfo": {"a": 1}}, "'eventinfo' must be a string"),
    ("search", {"to_ids": {"x": 1}}, "'to_ids' must be true/false"),
    ("search", {"sharinggroup": [0]}, "'sharinggroup' must be an id"),
    ("search", {"timestamp": [1, 2, 3]}, "'timestamp' must be a time"),
    ("search", {"date_from": 1e300}, "'date_from' must be epoch seconds"),
    ("search", {"tags": {"OR": [{"a": 1}]}}, "'tags' must be a string"),
    ("search", {"tags": {}}, "'tags' must be a string"),
    ("search", {"include_sightings": "maybe"}, "'include_sightings' must be true or false"),
    ("search", {"limit": 10**20}, "'limit' must be a whole number"),
    ("publish", {"event": 0}, "'event' must be an id"),
    ("add_named_attribute", {"event": 1, "type_value": "domain", "value": "a.b", "first_seen": "garbage"},
     "'first_seen' must be epoch seconds (0 to 253402300799) or an ISO date"),
    ("search", {"publish_timestamp": "1000000000000d"}, "'publish_timestamp' must be a time"),
    ("search", {"date_from": "yesterday"}, "'date_from' must be epoch seconds"),
    ("search", {"eventid": -1}, "'eventid' must be an id (1 or more) or a UUID"),
    ("search", {"eventid": 0}, "'eventid' must be an id"),
    ("search", {"eventid": "abc"}, "'eventid' must be an id"),
    ("search", {"eventid": "../x"}, "'eventid' must be an id"),
    ("search", {"eventid": []}, "'eventid' must be an id"),
    ("search", {"eventid": {"OR": []}}, "'eventid' must be an id"),
    ("delete_event", {"event_id": "1\n"}, "'event_id' must be an id"),
    ("get_event", {"event_id": "1\n"}, "'event_id' must be an id"),
    ("tag", {"uuid": str(uuidlib.uuid4()) + "\n", "tag": "t"}, "'uuid' must be a UUID"),
    ("update_event", {"event_id": 1, "event": {"info": "x", "timestamp": 1e300}}, "the event's 'timestamp' must be"),
    ("update_event", {"event_id": 1, "event": {"info": "x", "Attribute": "zz"}}, "'event' is not a MISP event"),
    ("publish", {"event": {"Event": {"id": 1, "published": {"a": 1}}}}, "the event's 'published' must be true"),
    ("add_named_attribute", {"event": 1, "type_value": "ip-dst", "value": ["1.2.3.4", "1.2.3.5"],
                             "uuid": str(uuidlib.uuid4())}, "'uuid' names one attribute: send one value"),
]


@pytest.mark.parametrize("api_name, payload, words", BAD_LEGACY_VALUES)
def test_legacy_values_are_checked_by_type_and_range(client: FakeClient, misp: FakePyMISP, api_name: str,
                                                     payload: dict[str, Any], words: str) -> None:
    """A value of the wrong type, length or range is invalid_arguments naming the key and what it takes,
    and MISP is not called."""
    with pytest.raises(InvalidArguments) as raised:
        legacy.LEGACY[api_name](client, payload)
    assert words in raised.value.message and raised.value.message.startswith(f"{api_name}:")
    assert misp.calls == []


def test_legacy_values_in_range_still_pass(client: FakeClient, misp: FakePyMISP) -> None:
    """The edges of each range, ids as digit strings and time strings are taken."""
    legacy.new_event(client, {"info": "é" * 30_000, "distribution": 4, "threat_level_id": 1, "analysis": 2,
                              "date": "2024-05-01"})
    legacy.search(client, {"timestamp": ["14d", 1_700_000_000], "sharinggroup": ["1", 2], "to_ids": "exclude",
                           "tags": {"OR": ["a", "b"], "NOT": "c"}, "limit": 0, "eventid": ["5", "!6"],
                           "date_from": "2024-01-01T00:00:00Z", "last": "30m"})
    assert [name for name, _ in misp.calls] == ["add_event", "search"]


@pytest.mark.parametrize("answer", [{}, None, "done", {"message": "Invalid attribute"}, [], {"Sighting": []},
                                    {"saved": True}])
def test_a_sighting_answer_that_shows_no_sighting_is_misp_refused(client: FakeClient, misp: FakePyMISP,
                                                                  monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    """An answer from MISP that neither names what it did nor shows a stored sighting is misp_refused with
    MISP's JSON, never a made-up "1 sighting successfully added."."""
    monkeypatch.setattr(misp, "add_sighting", lambda *args, **kwargs: answer)
    with pytest.raises(MispRefused) as refused:
        legacy.sighting(client, {"value": "203.0.113.9"})
    assert "did not confirm it" in refused.value.message and refused.value.payload == answer
