"""The legacy ``search``: restSearch with the 2.4 keys and the modern ones, every value checked by its kind.

Each PyMISP ``search`` keyword takes the kind its annotation gives (:func:`_search_kind`), with the 2.4 names
beside them (``values``, ``returnFormat``, ``not_values``, ``not_tags``...). On the events and attributes
controllers in JSON the answer is MISP's own bytes (:mod:`~dxlmispservice.api.rawpath`).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pymisp import PyMISP

from dxlmispservice.api import rawpath
from dxlmispservice.api.handler import advises
from dxlmispservice.api.legacyargs import Arg, check
from dxlmispservice.api.passthrough import call_misp, to_json
from dxlmispservice.errors import InvalidArguments

if TYPE_CHECKING:
    from dxlmispservice.misp import MispConnection


CONTROLLERS = ("events", "attributes", "objects")
RETURN_FORMATS = ("json", "xml", "openioc", "suricata", "snort", "text", "rpz", "csv", "cache", "stix-xml",
                  "stix", "stix2", "yara", "yara-json", "attack", "attack-sightings", "context", "context-markdown")
#: Search keys whose kind is not the one their PyMISP annotation gives (see :func:`_search_kind`).
_SEARCH_KINDS = {"controller": "name", "return_format": "name", "uuid": "uuid", "eventid": "refs",
                 "requested_attributes": "terms", "searchall": "text"}
_SEARCH_ALIASES = {"value": ("values",), "return_format": ("returnFormat",)}
_SEARCH_OLD_ONLY = {"not_values": Arg("terms"), "not_tags": Arg("terms"),
                    "includeWarninglistHits": Arg("bool"), "includeProposals": Arg("bool")}
_PASSED_AS_IS = ("includeWarninglistHits", "includeProposals")
#: PyMISP's annotation of a search keyword (its text, without "None") -> the kind that checks it.
_ANNOTATION_KINDS = (
    ("tuple[", "time_range"), ("datetime", "time"), ("SearchParameterTypes", "terms"), ("SearchType", "terms"),
    ("ToIDSType", "flags"), ("list[int]", "flags"), ("bool", "bool"), ("int", "count"), ("str", "text"),
)


def _search_kind(name: str, annotation: Any) -> str:
    """The kind of search keyword ``name``, from :data:`_SEARCH_KINDS` or else from PyMISP's annotation
    (``bool | None`` -> bool, ``int | None`` -> count...). ``sharinggroup`` (``int | list[int]``) takes ids.
    An annotation this table does not know is a KeyError at import, so a new PyMISP is noticed."""
    if name in _SEARCH_KINDS:
        return _SEARCH_KINDS[name]
    text = annotation if isinstance(annotation, str) else str(annotation)
    if name == "sharinggroup":
        return "ids"
    for mark, kind in _ANNOTATION_KINDS:
        if mark in text:
            return kind
    raise KeyError(f"search: no kind for {name!r} annotated {text!r}")


def _search_spec() -> dict[str, Arg]:
    """Modern ``PyMISP.search`` keyword names (bar pythonify) plus the 2.4 names."""
    spec: dict[str, Arg] = {}
    for parameter in list(inspect.signature(PyMISP.search).parameters.values())[1:]:
        if parameter.kind is parameter.VAR_KEYWORD or parameter.name == "pythonify":
            continue
        spec[parameter.name] = Arg(_search_kind(parameter.name, parameter.annotation),
                                   aliases=_SEARCH_ALIASES.get(parameter.name, ()))
    spec.update(_SEARCH_OLD_ONLY)
    return spec


SEARCH = _search_spec()


def _with_not(key: str, not_key: str, positive: Any, negative: Any) -> dict[str, Any]:
    if isinstance(positive, dict) or isinstance(negative, dict):
        raise InvalidArguments(f"search: '{not_key}' cannot be mixed with an OR/AND/NOT query in '{key}'")
    query: dict[str, Any] = {}
    if positive is not None:
        query["OR"] = positive if isinstance(positive, list) else [positive]
    query["NOT"] = negative if isinstance(negative, list) else [negative]
    return query


#: How search reaches one event too big for an answer: its metadata, then its attributes by page.
BIG_EVENT_RECIPE = (
    'ask search for the event without its attributes and objects as {"eventid": "<id>", "metadata": true}, '
    'for its attributes (those in its objects too, each with its object_id) as {"controller": "attributes", '
    '"eventid": "<id>", "limit": 100, "page": 1}, and for its objects (each with its attributes) as '
    '{"controller": "objects", "eventid": "<id>", "limit": 100, "page": 1}; then page 2, ... until a page has '
    'fewer than "limit" (a smaller "limit" if a page is still too big).')
#: What an answer too big for search advises: limit and page count the controller's results.
SEARCH_PAGING = (
    'Ask for it in parts: "limit" and "page" count results (events, or attributes on the attributes '
    'controller), for example {"limit": 100, "page": 1}, then page 2, ... until a page has fewer than '
    f'"limit". For one big event, {BIG_EVENT_RECIPE}')


@advises(SEARCH_PAGING)
def search(misp: MispConnection, payload: dict[str, Any]) -> Any:
    """restSearch on the events (default), attributes or objects controller; answers ``{"response": ...}``."""
    args = check("search", payload, SEARCH)
    controller = args.pop("controller", "events")
    return_format = args.pop("return_format", "json")
    if controller not in CONTROLLERS:
        raise InvalidArguments(f"search: 'controller' must be one of {', '.join(CONTROLLERS)}")
    if return_format not in RETURN_FORMATS:
        raise InvalidArguments(f"search: 'returnFormat' must be one of {', '.join(RETURN_FORMATS)}")
    for key, not_key in (("value", "not_values"), ("tags", "not_tags")):
        negative = args.pop(not_key, None)
        if negative is not None:
            args[key] = _with_not(key, not_key, args.get(key), negative)
    passed = {key: args.pop(key) for key in _PASSED_AS_IS if key in args}
    if rawpath.supported(misp):  # MISP's answer forwarded undecoded where the payload allows (see rawpath)
        body = rawpath.search_body(controller, return_format, args, passed)
        if body is not None:
            return rawpath.search(misp, controller, body)
    result = call_misp(misp, "search", lambda p: p.search(
        controller=controller, return_format=return_format, pythonify=False, **args, **passed))
    return {"response": to_json(result)}
