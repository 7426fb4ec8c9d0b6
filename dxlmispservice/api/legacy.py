"""The 2.4-era API names, running on current PyMISP: the old payload in, the old answer shape out.

dxlmispservice 0.1.5 called PyMISP 2.4 methods that were removed in 2.4.120. Each name here is a small
function that takes that era's payload, checks it completely before MISP is called (so nothing in MISP
changes by half), makes the modern PyMISP call, and shapes the answer as the old service did.

``new_event`` answers ``{"Event": {...}}``; ``add_internal_comment`` and ``add_named_attribute`` answer a
list holding MISP's ``{"Attribute": ...}``; ``tag``, ``untag`` and ``sighting`` answer ``{"name", "message",
"url"}``; ``search`` answers ``{"response": [{"Event": ...}]}`` (or ``{"response": {"Attribute": [...]}}`` on
the attributes controller); ``get_event`` and ``update_event`` answer ``{"Event": ...}``; ``delete_event``
and ``publish`` answer MISP's message. Each function's docstring and payload spec say the rest.

Where a legacy name is also a modern PyMISP name (tag, untag, search, get_event, update_event, delete_event,
publish) this adapter owns the topic and accepts the modern keyword names too. ``publish`` keeps the 2.4
default ``alert=true`` (MISP sends the alert e-mail); send ``"alert": false`` to publish quietly.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable

from pymisp import MISPAttribute, MISPEvent, MISPSighting

from dxlmispservice.api import rawpath
from dxlmispservice.api.handler import advises
from dxlmispservice.errors import InvalidArguments, MispRefused, MispServiceError
from dxlmispservice.api.legacyargs import KINDS, Arg, accepted_keys, as_bool, as_ref, check, unwrap
from dxlmispservice.api.legacysearch import BIG_EVENT_RECIPE, search
from dxlmispservice.api.passthrough import call_misp, to_json

if TYPE_CHECKING:
    from dxlmispservice.misp import MispConnection


def _invalid(api_name: str, exc: Exception) -> InvalidArguments:
    return InvalidArguments(f"{api_name}: {exc}")


# --- events ------------------------------------------------------------------------------------------------
NEW_EVENT = {
    "info": Arg("text", required=True), "distribution": Arg("int", between=(0, 4)),
    "threat_level_id": Arg("int", between=(1, 4)), "analysis": Arg("int", between=(0, 2)),
    "date": Arg("moment"), "published": Arg("bool"), "orgc_id": Arg("id"), "org_id": Arg("id"),
    "sharing_group_id": Arg("id"),
}


def new_event(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Create an event from the 2.4 fields; answers MISP's ``{"Event": {...}}``."""
    args = check("new_event", payload, NEW_EVENT)
    event = MISPEvent()
    try:
        event.from_dict(**args)
    except Exception as exc:  # PyMISP raises NewEventError, ValueError... on bad values
        raise _invalid("new_event", exc) from exc
    return to_json(call_misp(misp, "new_event", lambda p: p.add_event(event, pythonify=False)))


GET_EVENT = {"event_id": Arg("ref", required=True, aliases=("event",)), "deleted": Arg("flags"),
             "extended": Arg("bool"), "no_sightings": Arg("bool")}


#: What an answer too big for get_event advises: search reaches a big event in parts today.
GET_EVENT_PAGING = f"Ask for it in parts: {BIG_EVENT_RECIPE}"


@advises(GET_EVENT_PAGING)
def get_event(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """One event by id or UUID; answers MISP's ``{"Event": {...}}``."""
    args = check("get_event", payload, GET_EVENT)
    ref = args.pop("event_id")
    if rawpath.supported(misp):  # MISP's answer forwarded undecoded (see rawpath)
        return rawpath.get_event(misp, ref, **args)
    return to_json(call_misp(misp, "get_event", lambda p: p.get_event(ref, pythonify=False, **args)))


UPDATE_EVENT = {"event": Arg("object", required=True), "event_id": Arg("ref"), "metadata": Arg("bool")}


def update_event(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Post the event JSON to MISP's edit route, as 2.4 did; answers MISP's ``{"Event": {...}}``."""
    args = check("update_event", payload, UPDATE_EVENT)
    event = args["event"]
    ref = args.get("event_id")
    if ref is None:
        ok, ref = as_ref(event)
        if not ok:
            raise InvalidArguments("update_event: give 'event_id', or an 'event' with an id or a UUID. "
                                   f"Accepted keys: {accepted_keys(UPDATE_EVENT)}")
    _check_event_body("update_event", event)
    metadata = args.get("metadata", False)
    return to_json(call_misp(misp, "update_event", lambda p: p.update_event(
        event, event_id=ref, metadata=metadata, pythonify=False)))


def _check_event_body(api_name: str, event: dict[str, Any]) -> None:
    """InvalidArguments unless PyMISP can read ``event`` as a MISP event (on a copy: the event JSON itself
    is what is sent); its timestamps must be epoch seconds up to the year 9999."""
    body = unwrap(event)
    for key in ("timestamp", "publish_timestamp"):
        if key in body and not KINDS["moment"][0](body[key])[0]:
            raise InvalidArguments(f"{api_name}: the event's '{key}' must be {KINDS['moment'][1]}")
    try:
        MISPEvent().from_dict(**copy.deepcopy(body))
    except Exception as exc:  # PyMISP raises many kinds on a bad event
        raise InvalidArguments(f"{api_name}: 'event' is not a MISP event PyMISP can read: "
                               f"{type(exc).__name__}: {exc}") from exc


DELETE_EVENT = {"event_id": Arg("ref", required=True, aliases=("event",))}


def delete_event(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Delete one event; answers MISP's message."""
    ref = check("delete_event", payload, DELETE_EVENT)["event_id"]
    return to_json(call_misp(misp, "delete_event", lambda p: p.delete_event(ref)))


PUBLISH = {"event": Arg("json", required=True, aliases=("event_id",)), "alert": Arg("bool", default=True)}


def publish(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Publish one event (with the alert e-mail unless ``alert`` is false); answers MISP's message."""
    args = check("publish", payload, PUBLISH)
    event = args["event"]
    if isinstance(event, dict):
        ok, published = as_bool(unwrap(event).get("published", False))
        if not ok:
            raise InvalidArguments("publish: the event's 'published' must be true or false")
        if published:
            raise InvalidArguments("publish: the event is already published")
    ok, ref = as_ref(event)
    if not ok:
        raise InvalidArguments(f"publish: 'event' must be {KINDS['ref'][1]}. Accepted keys: {accepted_keys(PUBLISH)}")
    alert = args["alert"]
    return to_json(call_misp(misp, "publish", lambda p: p.publish(ref, alert=alert)))


# --- attributes --------------------------------------------------------------------------------------------
_ATTRIBUTE_COMMON = {
    "category": Arg("name"), "to_ids": Arg("bool", default=False), "comment": Arg("text"),
    "distribution": Arg("int", between=(0, 5)), "proposal": Arg("bool", default=False),
    "uuid": Arg("uuid"), "sharing_group_id": Arg("id"), "disable_correlation": Arg("bool"),
    "first_seen": Arg("moment"), "last_seen": Arg("moment"),
}
ADD_INTERNAL_COMMENT = {"event": Arg("ref", required=True), "reference": Arg("value", required=True),
                        **_ATTRIBUTE_COMMON, "category": Arg("name", default="Internal reference")}
ADD_NAMED_ATTRIBUTE = {"event": Arg("ref", required=True), "type_value": Arg("name", required=True),
                       "value": Arg("value", required=True), **_ATTRIBUTE_COMMON}


def _add_attributes(api_name: str, misp: MispConnection, event: Any, type_value: str, values: Any,
                    fields: dict[str, Any], proposal: bool) -> list[Any]:
    """Build every attribute first (bad input stops here), then add them; answers a list of MISP's answers."""
    if fields.get("uuid") is not None and isinstance(values, list) and len(values) > 1:
        raise InvalidArguments(f"{api_name}: 'uuid' names one attribute: send one value with it, not {len(values)}")
    attributes = []
    for value in values if isinstance(values, list) else [values]:
        attribute = MISPAttribute()
        try:
            attribute.from_dict(type=type_value, value=value, **fields)
        except KeyError as exc:  # PyMISP looks the category up in its type table
            raise InvalidArguments(f"{api_name}: {exc.args[0]!r} is not a MISP attribute category") from exc
        except Exception as exc:  # NewAttributeError, ValueError... on bad values
            raise _invalid(api_name, exc) from exc
        attributes.append(attribute)
    if proposal:  # MISP takes proposals one by one
        return _add_proposals(api_name, misp, event, attributes)
    data: Any = attributes[0] if len(attributes) == 1 else attributes
    try:
        return [to_json(call_misp(misp, api_name, lambda p: p.add_attribute(event, data, pythonify=False)))]
    except MispRefused as exc:
        raise _partly_stored(api_name, exc, len(attributes)) from exc


def _partly_stored(api_name: str, exc: MispRefused, sent: int) -> MispRefused:
    """MISP's refusal of a multi-attribute add; when MISP stored some (its answer lists them beside its
    ``errors``), the message names them: they are kept."""
    body = exc.payload if isinstance(exc.payload, dict) else {}
    stored = body.get("Attribute")
    stored = [stored] if isinstance(stored, dict) else stored if isinstance(stored, list) else []
    if not stored:
        return exc
    kept = ", ".join(f"{a.get('value')!r} (attribute {a.get('id')})" for a in stored if isinstance(a, dict))
    message = (f"{api_name}: MISP stored {len(stored)} of {sent} attributes and refused the rest: "
               f"{exc.message.rstrip('.')}. Stored, and kept: {kept}.")
    return MispRefused(message, status=exc.status, payload=exc.payload)


def _add_proposals(api_name: str, misp: MispConnection, event: Any, attributes: list[MISPAttribute]) -> list[Any]:
    """Send the (already checked) proposals one by one. MISP stores each as it comes, so a refusal or an
    outage in the middle cannot be rolled back: the error then names the ones stored, the one that failed
    and the ones not sent, and keeps MISP's own JSON as its payload."""
    stored: list[Any] = []
    for position, attribute in enumerate(attributes):
        try:
            stored.append(to_json(call_misp(misp, api_name, lambda p, a=attribute: p.add_attribute_proposal(
                event, a, pythonify=False))))
        except MispServiceError as exc:
            if not stored:
                raise
            kept = ", ".join(f"{a.value!r} (proposal {_proposal_id(s)})" for a, s in zip(attributes, stored))
            rest = ", ".join(repr(a.value) for a in attributes[position + 1:]) or "none"
            message = (f"{api_name}: proposal {position + 1} of {len(attributes)} ({attribute.value!r}) failed: "
                       f"{exc.message.rstrip('.')}. Stored before it, and kept: {kept}. Not sent: {rest}.")
            if isinstance(exc, MispRefused):
                raise MispRefused(message, status=exc.status, payload=exc.payload) from exc
            raise type(exc)(message, payload=exc.payload) from exc
    return stored


def _proposal_id(answer: Any) -> str:
    inner = answer.get("ShadowAttribute") if isinstance(answer, dict) else None
    return str(inner.get("id")) if isinstance(inner, dict) else "?"


def add_internal_comment(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Add a ``comment`` attribute (category Internal reference) to an event; answers ``[{"Attribute": ...}]``."""
    args = check("add_internal_comment", payload, ADD_INTERNAL_COMMENT)
    event, reference, proposal = args.pop("event"), args.pop("reference"), args.pop("proposal")
    return _add_attributes("add_internal_comment", misp, event, "comment", reference, args, proposal)


def add_named_attribute(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Add attributes of any type to an event; answers ``[{"Attribute": ...}]``."""
    args = check("add_named_attribute", payload, ADD_NAMED_ATTRIBUTE)
    event, type_value, value = args.pop("event"), args.pop("type_value"), args.pop("value")
    proposal = args.pop("proposal")
    return _add_attributes("add_named_attribute", misp, event, type_value, value, args, proposal)


# --- tags and sightings ------------------------------------------------------------------------------------
TAG = {"uuid": Arg("uuid", required=True, aliases=("misp_entity",)), "tag": Arg("tag", required=True),
       "local": Arg("bool"), "relationship_type": Arg("name")}
UNTAG = {"uuid": Arg("uuid", required=True, aliases=("misp_entity",)), "tag": Arg("tag", required=True)}


def _unconfirmed(api_name: str, result: Any) -> MispRefused:
    """MISP answered without saying it did it: a refusal carrying MISP's JSON (never a made-up success)."""
    return MispRefused(f"{api_name}: MISP did not confirm it (its answer says neither what was done nor that it "
                       "succeeded; MISP's answer is the payload)", status=200, payload=result)


def _message(api_name: str, result: Any, url: str) -> dict[str, Any]:
    """MISP's ``{"name", "message", "url"}`` answer; MISP's own words or nothing: an answer that says neither
    what was done nor that it succeeded is MispRefused with MISP's JSON, never a made-up "OK"."""
    body = result if isinstance(result, dict) else {}
    said = [body.get(key) for key in ("message", "success", "name")]
    message = next((value for value in said if isinstance(value, str) and value), None)
    if message is None:
        raise _unconfirmed(api_name, result)
    name = body.get("name") if isinstance(body.get("name"), str) and body.get("name") else message
    return {"name": name, "message": message, "url": body.get("url") or url}


def tag(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Attach a tag to the event or attribute with that UUID; answers ``{"name", "message", "url"}``."""
    args = check("tag", payload, TAG)
    uuid, name, local, relationship = args["uuid"], args["tag"], args.get("local", False), args.get("relationship_type")
    result = call_misp(misp, "tag", lambda p: p.tag(uuid, name, local=local, relationship_type=relationship))
    return _message("tag", to_json(result), "/tags/attachTagToObject")


def untag(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Remove a tag from the event or attribute with that UUID; answers ``{"name", "message", "url"}``."""
    args = check("untag", payload, UNTAG)
    uuid, name = args["uuid"], args["tag"]
    result = call_misp(misp, "untag", lambda p: p.untag(uuid, name))
    return _message("untag", to_json(result), "/tags/removeTagFromObject")


SIGHTING = {"uuid": Arg("uuid"), "id": Arg("id"), "value": Arg("scalar"), "source": Arg("name"),
            "type": Arg("sighting_type"), "timestamp": Arg("timestamp")}
_SIGHTING_WORDS = {"0": "sighting", "1": "false-positive", "2": "expiration"}


def _sighting_count(result: Any) -> int:
    """How many sightings MISP's answer shows it stored: a list of them, or ``{"Sighting": ...}``; 0 for
    anything else (which confirms nothing)."""
    if isinstance(result, list):
        return sum(1 for item in result if isinstance(item, dict) and ("Sighting" in item or "id" in item))
    inner = result.get("Sighting") if isinstance(result, dict) else None
    if isinstance(inner, list):
        return len(inner)
    return 1 if isinstance(inner, dict) else 0


def sighting(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """Add one sighting to an attribute (by uuid or id) or to every attribute with a value; answers the 2.4
    ``{"message": "Sighting added.", "name": "1 sighting successfully added.", "url": "/sightings/add/<uuid>"}``."""
    args = check("sighting", payload, SIGHTING)
    uuid, attribute_id = args.pop("uuid", None), args.pop("id", None)
    if uuid is not None and attribute_id is not None:
        raise InvalidArguments(f"sighting: give 'uuid' or 'id', not both. Accepted keys: {accepted_keys(SIGHTING)}")
    target = uuid if uuid is not None else attribute_id
    if target is None and "value" not in args:
        raise InvalidArguments(f"sighting: give 'uuid', 'id' or 'value'. Accepted keys: {accepted_keys(SIGHTING)}")
    body = MISPSighting()
    try:
        body.from_dict(**args)
    except Exception as exc:  # PyMISP's checks of a sighting's fields
        raise _invalid("sighting", exc) from exc
    result = to_json(call_misp(misp, "sighting", lambda p: p.add_sighting(body, attribute=target, pythonify=False)))
    url = f"/sightings/add/{target}" if target is not None else "/sightings/add"
    if isinstance(result, dict) and isinstance(result.get("message"), str) and isinstance(result.get("name"), str):
        return {"message": result["message"], "name": result["name"], "url": result.get("url") or url}
    count = _sighting_count(result)
    if count == 0:
        raise _unconfirmed("sighting", result)
    word = _SIGHTING_WORDS.get(args.get("type", "0"), "sighting")
    return {"message": "Sighting added.", "name": f"{count} {word}{'' if count == 1 else 's'} successfully added.",
            "url": url}


#: The legacy table: name -> handler, in the order the docs list them.
LEGACY: dict[str, Callable[[MispConnection, dict[str, Any]], Any]] = {
    "new_event": new_event,
    "add_internal_comment": add_internal_comment,
    "add_named_attribute": add_named_attribute,
    "tag": tag,
    "untag": untag,
    "sighting": sighting,
    "search": search,
    "get_event": get_event,
    "update_event": update_event,
    "delete_event": delete_event,
    "publish": publish,
}
