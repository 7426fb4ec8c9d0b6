"""The dev MISP server's route table: MISP's action routes, the REST resource routes old clients use, and the
dev-only reset.

A path is matched segment by segment, case-insensitively for literals (CakePHP's actions are PHP methods).
Before matching, a trailing ``.json`` is dropped (``servers/getVersion.json``), empty segments are dropped
(``sightings/add/``), and CakePHP named parameters (``/metadata:1``, ``/limit:10``) are taken out into a dict
(except under ``tags/``, where a tag name such as ``tlp:white`` may stand in the path).
``{ref}`` matches a numeric id or a uuid; ``{arg}`` matches any one segment.

An unknown path fails loudly: :class:`~devstack.misp.exceptions.UnknownRoute` (404, naming the route). A known
path with a method it does not serve is a 405. ``writes`` routes are refused to the read-only user.

The REST resource routes (``POST /events``, ``GET|POST|PUT|DELETE /events/{id}``, the same for
``/attributes``) are the ones PyMISP up to 2.4.119 and the original dxlmispservice 0.1.5 call, together with
``attributes/add/{id}``, ``tags/attachTagToObject``, ``events/restSearch/download`` and ``sightings/add/``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from dxlmisp_devstack.misp.exceptions import MethodNotAllowed, UnknownRoute

_REF = re.compile(r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
_NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(.*)$")


@dataclass(frozen=True)
class Route:
    """One route: its methods, its path pattern, the handler's name, and whether it writes."""

    methods: frozenset[str]
    pattern: tuple[str, ...]
    handler: str
    writes: bool = False

    def match(self, segments: list[str]) -> list[str] | None:
        """The captured segments when the path fits the pattern, else None."""
        if len(segments) != len(self.pattern):
            return None
        args = []
        for part, segment in zip(self.pattern, segments):
            if part == "{ref}":
                if not _REF.match(segment):
                    return None
                args.append(segment)
            elif part == "{arg}":
                args.append(segment)
            elif part.lower() != segment.lower():
                return None
        return args


def _r(methods: str, path: str, handler: str, writes: bool = False) -> Route:
    return Route(frozenset(methods.split()), tuple(path.split("/")), handler, writes)


ROUTES: tuple[Route, ...] = (
    _r("GET", "servers/getVersion", "server_version"),
    _r("GET", "servers/getPyMISPVersion", "pymisp_version"),
    _r("GET", "users/view/me", "user_me"),
    _r("GET", "attributes/describeTypes", "describe_types"),
    # events
    _r("POST", "events/add", "event_add", True),
    _r("POST", "events", "event_add", True),
    _r("GET HEAD POST", "events/view/{ref}", "event_view"),
    _r("GET HEAD", "events/{ref}", "event_view"),
    _r("POST PUT", "events/edit/{ref}", "event_edit", True),
    _r("POST PUT", "events/{ref}", "event_edit", True),
    _r("POST DELETE", "events/delete/{ref}", "event_delete", True),
    _r("DELETE", "events/{ref}", "event_delete", True),
    _r("POST", "events/publish/{ref}", "event_publish", True),
    _r("POST", "events/alert/{ref}", "event_alert", True),
    _r("POST", "events/unpublish/{ref}", "event_unpublish", True),
    _r("GET POST", "events/index", "event_index"),
    _r("GET", "events", "event_index"),
    _r("GET POST", "events/restSearch", "event_search"),
    _r("GET POST", "events/restSearch/{arg}", "event_search"),
    # attributes
    _r("POST", "attributes/add/{ref}", "attribute_add", True),
    _r("POST", "attributes", "attribute_add", True),
    _r("GET HEAD", "attributes/view/{ref}", "attribute_view"),
    _r("GET HEAD", "attributes/{ref}", "attribute_view"),
    _r("POST PUT", "attributes/edit/{ref}", "attribute_edit", True),
    _r("POST PUT", "attributes/{ref}", "attribute_edit", True),
    _r("POST DELETE", "attributes/delete/{ref}", "attribute_delete", True),
    _r("POST DELETE", "attributes/delete/{ref}/{arg}", "attribute_delete", True),
    _r("DELETE", "attributes/{ref}", "attribute_delete", True),
    _r("GET POST", "attributes/restSearch", "attribute_search"),
    _r("GET POST", "attributes/restSearch/{arg}", "attribute_search"),
    # tags
    _r("POST", "tags/attachTagToObject", "tag_attach", True),
    _r("POST", "tags/attachTagToObject/{arg}/{arg}", "tag_attach", True),
    _r("POST", "tags/removeTagFromObject", "tag_remove", True),
    _r("POST", "tags/removeTagFromObject/{arg}/{arg}", "tag_remove", True),
    # sightings
    _r("POST", "sightings/add", "sighting_add", True),
    _r("POST", "sightings/add/{ref}", "sighting_add", True),
    _r("POST", "sightings/restSearch", "sighting_search"),
    _r("POST", "sightings/restSearch/{arg}", "sighting_search"),
    # proposals (shadow attributes)
    _r("POST", "shadowAttributes/add/{ref}", "proposal_add", True),
    _r("GET", "shadowAttributes/index", "proposal_index"),
    # objects
    _r("POST", "objects/add/{ref}", "object_add", True),
    _r("POST", "objects/add/{ref}/{arg}", "object_add", True),
    _r("GET HEAD", "objects/view/{ref}", "object_view"),
    _r("GET POST", "objects/restSearch", "object_search"),
    _r("GET POST", "objects/restSearch/{arg}", "object_search"),
    # dev only (admin key): empty the database and the fault hooks; read the request log; delay a route; can a route's answer
    _r("POST", "devstack/reset", "devstack_reset", True),
    _r("GET", "devstack/requests", "devstack_requests", True),
    _r("POST", "devstack/delay", "devstack_delay", True),
    _r("POST", "devstack/answer", "devstack_answer", True),
)


@dataclass(frozen=True)
class Match:
    """A resolved request: the route, its captured segments and the named parameters."""

    route: Route
    args: list[str]
    named: dict[str, str]


def split_path(path: str) -> tuple[list[str], dict[str, str]]:
    """Path segments and CakePHP named parameters (``key:value`` segments), without a trailing ``.json``."""
    if path.endswith(".json"):
        path = path[: -len(".json")]
    segments, named = [], {}
    for segment in path.split("/"):
        if not segment:
            continue
        found = _NAMED.match(segment) if segments[:1] != ["tags"] else None
        if found and len(segments) >= 2:
            named[found.group(1)] = found.group(2)
        else:
            segments.append(segment)
    return segments, named


def resolve(method: str, path: str) -> Match:
    """The route for ``method path``: :class:`UnknownRoute` (404) or :class:`MethodNotAllowed` (405) if none."""
    segments, named = split_path(path)
    candidates = [(route, args) for route in ROUTES if (args := route.match(segments)) is not None]
    if not candidates:
        raise UnknownRoute(method, path)
    for route, args in candidates:
        if method in route.methods:
            return Match(route, args, named)
    allowed = sorted({m for route, _ in candidates for m in route.methods})
    raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})
