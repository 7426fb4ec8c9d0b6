"""The ``export_event`` service topic: one MISP event in one of the formats of :mod:`dxlmispservice.formats`.

Payload: ``{"event": id or uuid, "format": "stix2" | "stix1" | "ctim" | "xsoar", "options": {...},
"page": n, "limit": m}``. Answer: ``{"format", "content_type", "document", "skipped"}`` (STIX 1.2 as XML
text in ``document``); with ``page`` and ``limit``, the document is of a slice of the event's attributes
(``limit`` of them in MISP's order, objects' attributes inside their objects) with all of the event's own
fields, and ``slice`` says ``{"page", "limit", "attributes"}`` (how many the event has in all); a slice
reads only its own parts from MISP. ``options`` overrides ``[Formats]`` keys for this request.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dxlmispservice.api import rawpath
from dxlmispservice.api.handler import advises
from dxlmispservice.api.legacyargs import Arg, check
from dxlmispservice.api.passthrough import call_misp, to_json
from dxlmispservice.errors import InvalidArguments
from dxlmispservice.formats import check_format, export
from dxlmispservice.settings.formats import FormatSettings

if TYPE_CHECKING:
    from dxlmispservice.misp import MispConnection

EXPORT_EVENT = {"event": Arg("ref", required=True, aliases=("event_id",)), "format": Arg("json", required=True),
                "options": Arg("object"), "page": Arg("id"), "limit": Arg("id")}
#: What an export too big for one answer advises.
EXPORT_PAGING = (
    'Ask for it in slices: add "limit" and "page", for example {"limit": 100, "page": 1}, then page 2, ... '
    'until page times limit reaches the answer\'s "slice"."attributes"; each slice is a whole document of the '
    'event\'s own fields and "limit" of its attributes (those in its objects counted too); a smaller "limit" if '
    'a slice is still too big.')


@advises(EXPORT_PAGING)
def export_event(misp: MispConnection, payload: dict[str, Any], *,
                 formats: FormatSettings | None = None) -> dict[str, Any]:
    """One event in one format; see the module's docstring for the payload and the answer."""
    args = check("export_event", payload, EXPORT_EVENT)
    name = check_format(args["format"])
    settings = (formats or FormatSettings()).with_options(args.get("options") or {})
    page, limit = args.get("page"), args.get("limit")
    if (page is None) != (limit is None):
        raise InvalidArguments("export_event: give both 'page' and 'limit', or neither")
    if page is None:
        return export(name, _event(misp, args["event"]), settings).answer()
    body, total = _slice(misp, args["event"], page, limit)
    answer = export(name, {"Event": body}, settings).answer()
    answer["slice"] = {"page": page, "limit": limit, "attributes": total}
    return answer


def _slice(misp: MispConnection, ref: Any, page: int, limit: int) -> tuple[dict[str, Any], int]:
    """The event's own fields (tags and galaxies with them) and the ``page``-th ``limit`` of its attributes in
    MISP's order, those of objects inside their objects; and how many attributes it has. Only these parts
    are read from MISP, so a slice of an event too big to read whole costs no more than the slice."""
    head = to_json(call_misp(misp, "export_event", lambda p: p.search(
        controller="events", eventid=ref, metadata=True, pythonify=False)))
    if not head:  # no such event: MISP's own answer to asking for it says so (a 404, misp_refused)
        _event(misp, ref)
        raise InvalidArguments(f"export_event: MISP's search finds no event {ref!r}")
    event = dict(head[0]["Event"], Attribute=[], Object=[])
    found = to_json(call_misp(misp, "export_event", lambda p: p.search(
        controller="attributes", eventid=event["id"], limit=limit, page=page, include_sightings=True,
        pythonify=False)))
    objects: dict[str, dict[str, Any]] = {}
    for attribute in found.get("Attribute", []) if isinstance(found, dict) else []:
        attribute = {k: v for k, v in attribute.items() if k not in ("Event", "Object")}
        object_id = str(attribute.get("object_id") or "0")
        if object_id == "0":
            event["Attribute"].append(attribute)
            continue
        if object_id not in objects:
            whole = to_json(call_misp(misp, "export_event", lambda p: p.get_object(object_id, pythonify=False)))
            objects[object_id] = dict(whole["Object"], Attribute=[])
            objects[object_id].pop("Event", None)
        objects[object_id]["Attribute"].append(attribute)
    event["Object"] = list(objects.values())
    return event, int(event.get("attribute_count") or 0)


def _event(misp: MispConnection, ref: Any) -> dict[str, Any]:
    """MISP's ``{"Event": {...}}`` for ``ref``, decoded."""
    if rawpath.supported(misp):
        found = rawpath.get_event(misp, ref)
    else:
        found = to_json(call_misp(misp, "export_event", lambda p: p.get_event(ref, pythonify=False)))
    value = found.to_dict() if hasattr(found, "to_dict") else found
    if not isinstance(value, dict) or not isinstance(value.get("Event"), dict):
        raise InvalidArguments(f"export_event: MISP has no event {ref!r}")
    return value
