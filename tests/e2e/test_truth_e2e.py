"""Every answer true, over the wire: each legacy adapter aimed at a target that does not exist answers
misp_refused with MISP's own JSON (never a made-up success), and MISP is unchanged; proposals report what
was stored when MISP refuses one in the middle."""
from __future__ import annotations

from typing import Any

import pytest

from dxlmisp_devstack.testing import Requester
from dxlmispservice.names import request_topic
from tests.e2e.helpers import call, make_event

NONE_UUID = "00000000-0000-0000-0000-000000000000"
MISSING = 999999

#: (api name, payload aimed at nothing, a word of MISP's answer)
NO_TARGET = [
    ("add_internal_comment", {"event": MISSING, "reference": "nothing"}, "Invalid event"),
    ("add_named_attribute", {"event": MISSING, "type_value": "ip-dst", "value": "203.0.113.9"}, "Invalid event"),
    ("tag", {"uuid": NONE_UUID, "tag": "tlp:amber"}, "Invalid Target"),
    ("untag", {"uuid": NONE_UUID, "tag": "tlp:amber"}, "Invalid"),
    ("sighting", {"uuid": NONE_UUID}, "No valid attributes found"),
    ("sighting", {"id": MISSING}, "No valid attributes found"),
    ("sighting", {"value": "203.0.113.250"}, "No valid attributes found"),
    ("get_event", {"event_id": MISSING}, "Invalid event"),
    ("update_event", {"event_id": MISSING, "event": {"info": "nothing"}}, "Invalid event"),
    ("delete_event", {"event_id": MISSING}, "Could not delete Event"),
    ("publish", {"event": MISSING}, "Invalid event"),
    ("add_sighting", {"sighting": {"value": "203.0.113.250"}}, "No valid attributes found"),
]


def _counts(misp: Any) -> tuple[int, int, int]:
    events = misp.search_index(pythonify=False)
    attributes = misp.search(controller="attributes", pythonify=False)["Attribute"]
    return len(events), len(attributes), len(misp.attribute_proposals(pythonify=False))


@pytest.mark.parametrize(("api_name", "payload", "word"), NO_TARGET, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(NO_TARGET)])
def test_a_target_that_does_not_exist_is_misp_refused(dxl_requester: Requester, misp: Any, api_name: str,
                                                      payload: dict[str, Any], word: str) -> None:
    """MISP's refusal reaches the requester as misp_refused with MISP's JSON; nothing in MISP changes."""
    make_event(misp, "bystander")
    before = _counts(misp)
    reply = dxl_requester.request(request_topic(api_name), payload)
    assert (reply.ok, reply.error_code) == (False, 3), reply.payload
    assert word in (reply.payload.get("message", "") + reply.payload.get("name", "")), reply.payload
    assert "success" not in reply.error_message.lower()
    assert _counts(misp) == before


def test_search_for_nothing_is_an_empty_result_not_an_error(dxl_requester: Requester) -> None:
    """search has no target to miss: an event id that does not exist is an empty response, truthfully."""
    assert call(dxl_requester, "search", {"eventid": MISSING}) == {"response": []}


def test_proposal_refused_in_the_middle_names_what_was_stored(dxl_requester: Requester, misp: Any) -> None:
    """Three proposals, the second refused by MISP: the error names the stored first and the unsent third."""
    event = make_event(misp, "proposals")
    reply = dxl_requester.request(request_topic("add_named_attribute"), {
        "event": event["id"], "type_value": "ip-dst", "proposal": True,
        "value": ["203.0.113.1", "not-an-ip", "203.0.113.3"]})
    assert (reply.ok, reply.error_code) == (False, 3)
    assert "proposal 2 of 3 ('not-an-ip')" in reply.error_message
    assert "kept: '203.0.113.1'" in reply.error_message and "Not sent: '203.0.113.3'" in reply.error_message
    assert reply.payload["errors"]["value"] == ["IP address has an invalid format."]
    stored = [p["ShadowAttribute"]["value"] for p in misp.attribute_proposals(pythonify=False)]
    assert stored == ["203.0.113.1"]


def test_proposals_are_checked_before_the_first_is_sent(dxl_requester: Requester, misp: Any) -> None:
    """A bad category among proposals is refused before MISP is called: no proposal is stored."""
    event = make_event(misp, "proposals checked")
    reply = dxl_requester.request(request_topic("add_internal_comment"), {
        "event": event["id"], "reference": ["one", "two"], "proposal": True, "category": "No such category"})
    assert (reply.ok, reply.error_code) == (False, 2)
    assert "No such category" in reply.error_message
    assert misp.attribute_proposals(pythonify=False) == []


def test_proposals_all_stored_answer_each_proposal(dxl_requester: Requester, misp: Any) -> None:
    """Proposals MISP takes are answered one ShadowAttribute each, in order."""
    event = make_event(misp, "proposals ok")
    answer = call(dxl_requester, "add_internal_comment", {"event": event["id"], "reference": ["a", "b"],
                                                          "proposal": True})
    assert [a["ShadowAttribute"]["value"] for a in answer] == ["a", "b"]


def test_partly_stored_attributes_are_named(dxl_requester: Requester, misp: Any) -> None:
    """Two values in one add, one refused: misp_refused names the one MISP stored (it stays)."""
    event = make_event(misp, "partial")
    reply = dxl_requester.request(request_topic("add_named_attribute"), {
        "event": event["id"], "type_value": "ip-dst", "value": ["203.0.113.6", "not-an-ip"]})
    assert (reply.ok, reply.error_code) == (False, 3)
    assert "stored 1 of 2" in reply.error_message and "'203.0.113.6'" in reply.error_message
    values = [a["value"] for a in misp.search(controller="attributes", pythonify=False)["Attribute"]]
    assert values == ["203.0.113.6"]
