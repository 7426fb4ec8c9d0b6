"""The raw path of the hottest read calls: MISP's JSON answer forwarded as MISP sent it, never decoded.

``get_event`` and ``search`` (events and attributes controllers, JSON) are most of a service's traffic and
their answers can be large. On the PyMISP path their answer is decoded by PyMISP, copied by ``to_json`` and
encoded again by the handler, only to come out as the JSON MISP sent. Here the request is built from MISP's
REST API (``GET``/``POST events/view/{id}``, ``POST {controller}/restSearch``) and sent on PyMISP's own
session (:meth:`~dxlmispservice.misp.MispConnection.fetch`), and the answer's bytes become a
:class:`~dxlmispservice.api.rawjson.RawJson`,
which the handler sends as they are.

It gives what the PyMISP path gives, or it is not used:

- a payload it cannot express exactly (another controller or format, a value PyMISP would convert in a way
  not mirrored here, a search name it does not know) -> :func:`search_body` answers None and the caller
  takes the PyMISP path, which also raises PyMISP's own argument errors;
- an answer whose shape is not the documented one (``{"Event": {...}}``; ``{"response": [...]}`` or
  ``{"response": {...}}``, or a bare list) is decoded and read the way PyMISP reads it
  (:meth:`~dxlmispservice.misp.MispConnection.read_json`).

The restSearch names are MISP's (``/work/shared/reference/misp-openapi.yaml``); the PyMISP keyword each
comes from, and how PyMISP converts its value, are facts read from ``PyMISP.search``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dxlmispservice.misp import MispConnection
from dxlmispservice.api.rawjson import RawJson

#: A JSON object whose first key is "Event", holding an object: MISP's events/view answer.
_EVENT = re.compile(rb'\s*\{\s*"Event"\s*:\s*\{')
#: MISP's restSearch answer: {"response": [...]} or {"response": {...}}.
_RESPONSE = re.compile(rb'\s*\{\s*"response"\s*:\s*[\[{]')
#: A bare JSON array (what PyMISP's reading leaves as it is).
_ARRAY = re.compile(rb"\s*\[")
_CLOSE_OBJECT = re.compile(rb"\}\s*\Z")

#: The search controllers and the format the raw path serves.
RAW_CONTROLLERS = ("events", "attributes")
RAW_FORMAT = "json"


def supported(misp: Any) -> bool:
    """Whether ``misp`` can send raw requests (the real MispConnection; test stand-ins cannot)."""
    return isinstance(misp, MispConnection)


def _object(content: bytes, shape: re.Pattern[bytes]) -> bool:
    return shape.match(content) is not None and _CLOSE_OBJECT.search(content, max(0, len(content) - 64)) is not None


# --- get_event ---------------------------------------------------------------------------------------------
def get_event(misp: MispConnection, ref: int | str, *, deleted: Any = None, extended: bool = False,
              no_sightings: bool = False) -> Any:
    """MISP's ``{"Event": {...}}`` for event ``ref`` (an id or a UUID, as checked by the caller), as
    ``PyMISP.get_event(ref, deleted=..., extended=..., no_sightings=...)`` would ask for it."""
    data: dict[str, Any] = {}
    if deleted:
        data["deleted"] = deleted
    if extended:
        data["extended"] = extended
    path = f"events/view/{ref}" + ("/noSightings:1" if no_sightings else "")
    if data:
        content = misp.fetch("POST", path, json.dumps(data).encode("utf-8"))
    else:
        content = misp.fetch("GET", path)
    if _object(content, _EVENT):
        return RawJson(content)
    return misp.read_json(content)


# --- search ------------------------------------------------------------------------------------------------
class _Inexact(Exception):
    """A value the raw path does not convert exactly as PyMISP would: take the PyMISP path."""


def _as_is(value: Any) -> Any:
    return value


def _flag(value: Any) -> int:
    """PyMISP's 0/1 for MISP (None -> 0)."""
    if value is None:
        return 0
    try:
        return 1 if int(value) else 0
    except Exception as exc:  # PyMISP raises here: let it say so
        raise _Inexact from exc


def _time(value: Any) -> Any:
    """A timestamp, a date text or a duration ("7d") as PyMISP passes JSON values on: falsy -> None."""
    return value if value else None


def _time_range(value: Any) -> Any:
    """One time, or a [from, to] pair (PyMISP uses the first two items)."""
    if isinstance(value, (list, tuple)):
        if len(value) < 2:
            raise _Inexact
        return [_time(value[0]), _time(value[1])]
    return _time(value)


def _to_ids(value: Any) -> Any:
    if value is not None and value not in (0, 1, "0", "1"):
        raise _Inexact
    return value


#: PyMISP's deprecated camelCase synonyms: synonym -> the keyword it overrides when not None.
_SYNONYMS = {
    "quickFilter": "quick_filter", "withAttachments": "with_attachments", "last": "publish_timestamp",
    "enforceWarninglist": "enforce_warninglist", "includeEventUuid": "include_event_uuid",
    "includeEventTags": "include_event_tags", "includeContext": "include_context",
    "includeDecayScore": "include_decay_score", "includeCorrelations": "include_correlations",
    "includeSightings": "include_sightings",
}
#: PyMISP keyword -> (restSearch name, conversion), in PyMISP's order. Keys marked "only if set" in PyMISP
#: (the time ranges and to_ids) are left out when None, as are all None values in the end.
_FIELDS: dict[str, tuple[str, Any]] = {
    "page": ("page", _as_is), "limit": ("limit", _as_is), "value": ("value", _as_is),
    "type_attribute": ("type", _as_is), "category": ("category", _as_is), "org": ("org", _as_is),
    "tags": ("tags", _as_is), "event_tags": ("event_tags", _as_is), "quick_filter": ("quickFilter", _as_is),
    "date_from": ("from", _time), "date_to": ("to", _time), "eventid": ("eventid", _as_is),
    "with_attachments": ("withAttachments", _flag), "metadata": ("metadata", _flag), "uuid": ("uuid", _as_is),
    "publish_timestamp": ("publish_timestamp", _time_range), "timestamp": ("timestamp", _time_range),
    "published": ("published", _as_is), "enforce_warninglist": ("enforceWarninglist", _flag),
    "to_ids": ("to_ids", _to_ids), "deleted": ("deleted", _as_is),
    "include_event_uuid": ("includeEventUuid", _flag), "include_event_tags": ("includeEventTags", _flag),
    "event_timestamp": ("event_timestamp", _time_range), "sg_reference_only": ("sgReferenceOnly", _flag),
    "eventinfo": ("eventinfo", _as_is), "searchall": ("searchall", _as_is),
    "requested_attributes": ("requested_attributes", _as_is), "include_context": ("includeContext", _flag),
    "headerless": ("headerless", _flag), "include_sightings": ("includeSightings", _flag),
    "include_decay_score": ("includeDecayScore", _flag), "include_correlations": ("includeCorrelations", _flag),
    "object_name": ("object_name", _as_is), "exclude_decayed": ("excludeDecayed", _flag),
    "sharinggroup": ("sharinggroup", _as_is),
}
#: The PyMISP keywords the raw path knows (a search payload with any other goes the PyMISP way).
KNOWN = frozenset(_FIELDS) | frozenset(_SYNONYMS)
#: What PyMISP sends for the 0/1 flags nobody gave (None -> 0); every other unset name is left out.
_UNSET_FLAGS = {name: 0 for name, convert in _FIELDS.values() if convert is _flag}


def search_body(controller: str, return_format: str, args: Mapping[str, Any],
                passed: Mapping[str, Any]) -> bytes | None:
    """The restSearch JSON body ``PyMISP.search(controller=..., return_format=..., **args, **passed)`` would
    send, or None when the raw path cannot give exactly what the PyMISP path gives.

    ``args`` holds PyMISP keyword arguments, ``passed`` the extra names PyMISP passes on as they are. The
    body holds the same names and values as PyMISP's (their order in the JSON object may differ)."""
    if controller not in RAW_CONTROLLERS or return_format != RAW_FORMAT or not KNOWN.issuperset(args):
        return None
    given = {keyword: value for keyword, value in args.items() if value is not None}
    for synonym in _SYNONYMS.keys() & given.keys():
        given[_SYNONYMS[synonym]] = given.pop(synonym)
    query: dict[str, Any] = {key: value for key, value in passed.items() if value is not None}
    query.update(_UNSET_FLAGS)
    query["returnFormat"] = return_format
    try:
        for keyword, value in given.items():
            name, convert = _FIELDS[keyword]
            converted = convert(value)
            if converted is None:
                query.pop(name, None)
            else:
                query[name] = converted
    except _Inexact:
        return None
    return json.dumps(query).encode("utf-8")


def search(misp: MispConnection, controller: str, body: bytes) -> Any:
    """The legacy search answer ``{"response": ...}`` for a restSearch ``body`` from :func:`search_body`."""
    content = misp.fetch("POST", f"{controller}/restSearch", body)
    if _object(content, _RESPONSE):
        return RawJson(content)
    if _ARRAY.match(content):
        return RawJson(b'{"response":' + content + b"}")
    return {"response": misp.read_json(content)}
