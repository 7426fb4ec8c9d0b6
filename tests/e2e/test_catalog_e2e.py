"""The bad-input catalog, over the real fabric: malformed payloads across the legacy, modern and service topics.

Each entry is sent to the stack's service as a requester would send it (bytes where the entry is bytes). Each
must answer invalid_payload, invalid_arguments or misp_refused, with the code the entry expects and a message
that holds the entry's words (which name what was wrong); none may answer internal_error, time out or
succeed. After the whole catalog, MISP holds the same events and attributes as before it.
"""
from __future__ import annotations

import json
from typing import Any

from dxlmisp_devstack.testing import Requester
from dxlmispservice.names import request_topic
from tests.e2e import helpers

NIL = "00000000-0000-0000-0000-000000000000"
DEEP = b'{"info": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

#: (api name, payload, expected error code, words the message must hold). In payloads, "{event}" is the
#: seeded event's id, "{attribute}" its attribute's UUID.
CATALOG: list[tuple[str, Any, int, str]] = [
    # --- not a JSON object: invalid_payload ---------------------------------------------------------------
    ("new_event", b"this is not JSON", 1, "not valid JSON"),
    ("new_event", b"[1, 2]", 1, "not an array"),
    ("search", b'"a string"', 1, "not a string"),
    ("sighting", b"123", 1, "not a number"),
    ("tag", b"\xff\xfe{}", 1, "not UTF-8"),
    ("new_event", b'{"info": "x"}\x00\x00', 1, "not valid JSON"),
    ("new_event", b'{"info": "a\x00b"}', 1, "not valid JSON"),
    ("add_event", b'{"event": ', 1, "not valid JSON"),
    ("search", b'{"limit": NaN}', 1, "NaN"),
    ("search", b'{"limit": Infinity}', 1, "Infinity"),
    ("fetch_events", b'{"since": -Infinity}', 1, "-Infinity"),
    ("get_event", DEEP, 1, "nested too deeply"),
    # --- legacy names: invalid_arguments --------------------------------------------------------------------
    ("new_event", {}, 2, "missing 'info'"),
    ("new_event", {"info": "x", "title": "y"}, 2, "unknown key(s) 'title'"),
    ("new_event", {"info": 5}, 2, "'info' must be a string"),
    ("new_event", {"info": {"nested": 1}}, 2, "'info' must be a string"),
    ("new_event", {"info": "x" * 70_000}, 2, "'info' must be a string of at most 65535 UTF-8 bytes"),
    ("new_event", {"info": "a\u0000b"}, 2, "with no NUL character"),
    ("new_event", {"info": "x", "distribution": 9}, 2, "'distribution' must be an integer from 0 to 4"),
    ("new_event", {"info": "x", "threat_level_id": "high"}, 2, "'threat_level_id' must be an integer from 1 to 4"),
    ("new_event", {"info": "x", "published": "perhaps"}, 2, "'published' must be true or false"),
    ("new_event", {"info": "x", "orgc_id": "9" * 5000}, 2, "'orgc_id' must be an id"),
    ("add_internal_comment", {"event": "../../events/delete/1", "reference": "x"}, 2, "'event' must be an id"),
    ("add_internal_comment", {"event": "{event}", "reference": []}, 2, "'reference' must be"),
    ("add_named_attribute", {"event": "{event}", "type_value": "no-such-type", "value": "x"}, 2, "no-such-type"),
    ("add_named_attribute", {"event": -4, "type_value": "domain", "value": "a.example"}, 2, "'event' must be an id"),
    ("add_named_attribute", {"event": "{event}", "type_value": "domain", "value": "a.example", "category": "Nope"},
     2, "'Nope' is not a MISP attribute category"),
    ("add_named_attribute", {"event": "{event}", "type_value": "domain", "value": "a.example", "distribution": 7},
     2, "'distribution' must be an integer from 0 to 5"),
    ("add_named_attribute", {"event": "{event}", "type_value": "domain", "value": {"x": 1}}, 2, "'value' must be"),
    ("add_named_attribute", {"event": "{event}", "type_value": "domain", "value": "a.example", "to_ids": "no way"},
     2, "'to_ids' must be true or false"),
    ("tag", {"uuid": "not-a-uuid", "tag": "t"}, 2, "'uuid' must be a UUID"),
    ("tag", {"uuid": "{attribute}", "tag": ""}, 2, "'tag' must be a tag name"),
    ("tag", {"uuid": "{attribute}", "tag": "t" * 300}, 2, "'tag' must be a tag name"),
    ("tag", {"uuid": "{attribute}", "tag": "t", "local": "sometimes"}, 2, "'local' must be true or false"),
    ("untag", {"uuid": "{attribute}"}, 2, "missing 'tag'"),
    ("sighting", {}, 2, "give 'uuid', 'id' or 'value'"),
    ("sighting", {"uuid": "{attribute}", "id": 1}, 2, "give 'uuid' or 'id', not both"),
    ("sighting", {"id": -1}, 2, "'id' must be an id"),
    ("sighting", {"uuid": "{attribute}", "type": 7}, 2, "'type' must be 0 (sighting), 1 (false positive) or 2"),
    ("sighting", {"uuid": "{attribute}", "timestamp": 1e300}, 2, "'timestamp' must be epoch seconds"),
    ("sighting", {"value": ["a", "b"]}, 2, "'value' must be a string or a number"),
    ("search", {"eventid": {"a": 1}}, 2, "'eventid' must be"),
    ("search", {"limit": -5}, 2, "'limit' must be a whole number, 0 or more"),
    ("search", {"page": "two"}, 2, "'page' must be a whole number, 0 or more"),
    ("search", {"controller": "users"}, 2, "'controller' must be one of events, attributes, objects"),
    ("search", {"returnFormat": "exe"}, 2, "'returnFormat' must be one of"),
    ("search", {"uuid": "123"}, 2, "'uuid' must be a UUID"),
    ("search", {"tags": [[1]]}, 2, "'tags' must be"),
    ("search", {"bogus": 1}, 2, "unknown key(s) 'bogus'"),
    ("search", {"timestamp": [1, 2, 3]}, 2, "'timestamp' must be a time"),
    ("search", {"date_from": "x" * 100_000}, 2, "'date_from' must be epoch seconds"),
    ("search", {"include_sightings": "maybe"}, 2, "'include_sightings' must be true or false"),
    ("get_event", {"event_id": "1 OR 1=1"}, 2, "'event_id' must be an id"),
    ("get_event", {"event_id": "../users/view/me"}, 2, "'event_id' must be an id"),
    ("get_event", {}, 2, "missing 'event_id' or 'event'"),
    ("get_event", {"event_id": 99999999999999999999999}, 2, "'event_id' must be an id"),
    ("update_event", {"event": "not an object"}, 2, "'event' must be a JSON object"),
    ("update_event", {"event": {"info": "no id"}}, 2, "give 'event_id', or an 'event' with an id or a UUID"),
    ("delete_event", {"event_id": "%2e%2e%2fusers"}, 2, "'event_id' must be an id"),
    ("publish", {"event": {"Event": {"id": "{event}", "published": True}}}, 2, "already published"),
    ("publish", {"event": "abc"}, 2, "'event' must be an id"),
    # --- modern (pass-through) names: invalid_arguments ------------------------------------------------------
    ("add_event", {"bogus": 1}, 2, "add_event:"),
    ("add_attribute", {"event": "{event}", "attribute": [1, 2]}, 2, "'attribute' takes"),
    ("update_attribute", {"attribute": [1, 2]}, 2, "'attribute' takes a JSON object or a single value, not a JSON list"),
    ("get_attribute", {"attribute": "../../events/delete/1"}, 2, "'attribute'"),
    ("get_attribute", {}, 2, "missing a required argument: 'attribute'"),
    ("delete_attribute", {"attribute": "1/../../x"}, 2, "'attribute'"),
    ("delete_attribute", {"attribute": "{attribute}", "hard": "yes"}, 2, "'hard' takes true or false"),
    ("search_index", {"limit": "5"}, 2, "'limit' takes a whole number"),
    ("search_index", {"limit": -5}, 2, "'limit' takes a whole number from 0"),
    ("search_index", {"timestamp": 1e300}, 2, "the number at 'timestamp' is out of range"),
    ("add_sighting", {"sighting": {"value": "seeded.example", "timestamp": 1e300}}, 2,
     "the number at 'sighting.timestamp' is out of range"),
    ("delete_event", {"event_id": "1\n"}, 2, "'event_id' must be an id"),
    ("search", {"eventid": -1}, 2, "'eventid' must be an id"),
    ("search", {"eventid": []}, 2, "'eventid' must be an id"),
    ("update_event", {"event_id": "{event}", "event": {"info": "x", "timestamp": 1e300}}, 2,
     "the event's 'timestamp' must be"),
    ("add_named_attribute", {"event": "{event}", "type_value": "domain", "value": "a.example",
                             "first_seen": "garbage"}, 2, "'first_seen' must be epoch seconds"),
    ("tags", {}, 3, "HTTP 404"),
    ("search_index", {"published": "yes"}, 2, "'published' takes true or false"),
    ("search_index", {"eventinfo": {"a": 1}}, 2, "'eventinfo' takes a string, not a JSON object"),
    ("add_sighting", {"sighting": [1]}, 2, "'sighting' takes"),
    ("unpublish", {"event": "x y"}, 2, "'event'"),
    ("tags", {"pythonify": True}, 2, "'pythonify' is set by the service"),
    ("get_attribute", {"attribute": "\u0000"}, 2, "'attribute'"),
    # --- service topics: invalid_arguments ------------------------------------------------------------------
    ("fetch_events", {"limit": 0}, 2, "limit must be an integer from 1 to"),
    ("fetch_events", {"limit": "10"}, 2, "limit must be an integer from 1 to"),
    ("fetch_events", {"since": "yesterday-ish"}, 2, "since:"),
    ("fetch_events", {"since": 1e300}, 2, "since:"),
    ("fetch_events", {"since": {"a": 1}}, 2, "since:"),
    ("fetch_events", {"cursor": "garbage"}, 2, "cursor is not a fetch_events cursor"),
    ("fetch_events", {"cursor": "x", "since": 0}, 2, "with a cursor, leave out since and filters"),
    ("fetch_events", {"bogus": 1}, 2, "unknown keys ['bogus']"),
    ("fetch_events", {"filters": {"nope": 1}}, 2, "nope"),
    ("fetch_events", {"filters": []}, 2, "filters"),
    # --- well-formed, but MISP has no such thing: misp_refused -----------------------------------------------
    ("get_event", {"event_id": 987654}, 3, "Invalid event"),
    ("delete_event", {"event_id": 987654}, 3, "MISP refused"),
    ("sighting", {"uuid": NIL}, 3, "MISP refused"),
    ("tag", {"uuid": NIL, "tag": "tlp:green"}, 3, "MISP refused"),
    ("add_named_attribute", {"event": "{event}", "type_value": "domain", "value": "seeded.example"}, 3,
     "MISP refused"),
]


def _fill(payload: Any, seeds: dict[str, str]) -> Any:
    """``payload`` with the seeds' ids put in (bytes are sent as they are)."""
    if isinstance(payload, bytes):
        return payload
    text = json.dumps(payload)
    for name, value in seeds.items():
        text = text.replace("{" + name + "}", value)
    return json.loads(text)


def _counts(misp: Any) -> tuple[int, int]:
    events = misp.search_index()
    attributes = misp.search(controller="attributes", pythonify=False)
    return len(events), len(attributes.get("Attribute", []))


def test_every_catalog_entry_is_refused_with_its_code_naming_the_problem(dxl_requester: Requester, misp: Any) -> None:
    """Each malformed payload answers its expected code (1, 2 or 3) with a message naming what was wrong;
    none answers internal_error, times out or succeeds; MISP's events and attributes are unchanged."""
    assert len(CATALOG) >= 60
    event = helpers.make_event(misp, "catalog seed")
    attribute = misp.add_attribute(event["id"], {"type": "domain", "value": "seeded.example"})["Attribute"]
    seeds = {"event": str(event["id"]), "attribute": attribute["uuid"]}
    before = _counts(misp)
    wrong = []
    for api_name, payload, code, words in CATALOG:
        reply = dxl_requester.request(request_topic(api_name), _fill(payload, seeds), timeout=20)
        if reply.ok or reply.error_code != code or words not in reply.error_message:
            shown = payload[:60] if isinstance(payload, bytes) else json.dumps(payload)[:100]
            wrong.append(f"{api_name} {shown}: expected {code} with {words!r}, got "
                         f"{'ok' if reply.ok else reply.error_code} {reply.error_message[:300]!r}")
    assert not wrong, f"{len(wrong)} of {len(CATALOG)} entries:\n" + "\n".join(wrong)
    assert _counts(misp) == before


def test_the_catalog_covers_every_kind_of_topic_and_code() -> None:
    """The catalog has at least 60 entries, reaches legacy, modern and service topics, and expects each
    of invalid_payload, invalid_arguments and misp_refused."""
    names = {api_name for api_name, *_ in CATALOG}
    assert len(CATALOG) >= 60
    assert {"new_event", "search", "sighting"} <= names and {"add_event", "get_attribute"} <= names
    assert "fetch_events" in names
    assert {code for *_, code, _ in CATALOG} == {1, 2, 3}
