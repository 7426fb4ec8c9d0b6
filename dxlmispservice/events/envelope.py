"""What the service's DXL events look like: the feed envelope, and the notices that stand in for a message too
big for the fabric. Pure: dicts in, dicts out.

**A feed message** is ``{"feed": {...}, "Event": {...}}`` (the MISP format; the formats of a later issue put
a ``document`` beside ``Event``). ``feed`` holds ``position`` (``{"field", "timestamp", "uuid"}`` of this
change), ``previous`` (the position of the change the feed published before it, so that a consumer sees a
gap: DXL events are QoS 0), ``message_id`` (the DXL message id, the same whenever this change is sent),
``complete`` (``true``) and ``size`` (the bytes of the event's JSON).

**A feed notice** stands in for an event whose message would be over the fabric's message limit: the same
``feed`` object with ``complete: false`` and ``size``, and an ``Event`` that holds only ``id``, ``uuid``,
``info``, ``timestamp``, ``publish_timestamp``, ``attribute_count`` and ``Orgc``. Ask ``get_event`` for the
rest, in pages.

**A forwarded-frame notice** stands in for a ZeroMQ frame too big to forward: ``{"notice": {"topic",
"size", "complete": false}, "event_uuids": [...], "attribute_uuids": [...]}``, with the uuids of the events
and attributes the frame names (at most 200 of each). A feed notice keeps at most 1,000 characters of the
event's ``info``: notices fit any fabric limit the settings take (65,536 bytes or more).
"""
from __future__ import annotations

import json
from typing import Any

#: The fields of an event that a feed notice keeps.
NOTICE_FIELDS = ("id", "uuid", "info", "timestamp", "publish_timestamp", "attribute_count")
#: The fields of the creator organisation that a feed notice keeps.
ORG_FIELDS = ("id", "uuid", "name")
#: The most uuids of each kind a forwarded-frame notice names (so that a notice stays under 20 KB).
MAX_NOTICE_UUIDS = 200
#: The most characters of an event's ``info`` a feed notice keeps (MISP allows 65,535 bytes there).
MAX_NOTICE_INFO = 1000


def json_size(value: Any) -> int:
    """The bytes of ``value`` as compact UTF-8 JSON (as the publisher encodes it)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def feed_message(event: dict[str, Any], position: dict[str, Any], previous: dict[str, Any] | None,
                 message_id: str) -> dict[str, Any]:
    """The feed message of one change: the envelope beside MISP's ``Event``."""
    return {"feed": {"position": position, "previous": previous, "message_id": message_id, "complete": True,
                     "size": json_size(event)},
            "Event": event}


def feed_notice(message: dict[str, Any]) -> dict[str, Any]:
    """The notice that stands in for the feed ``message`` (from :func:`feed_message`) when it is too big."""
    return {"feed": {**message["feed"], "complete": False}, "Event": event_summary(message["Event"])}


def event_summary(event: dict[str, Any]) -> dict[str, Any]:
    """The few fields of an event that say which it is and how big."""
    summary = {key: event[key] for key in NOTICE_FIELDS if key in event}
    if isinstance(summary.get("info"), str) and len(summary["info"]) > MAX_NOTICE_INFO:
        summary["info"] = summary["info"][:MAX_NOTICE_INFO] + "..."
    if "attribute_count" not in summary:
        objects = event.get("Object") or []
        summary["attribute_count"] = str(len(event.get("Attribute") or []) + sum(
            len(o.get("Attribute") or []) for o in objects if isinstance(o, dict)))
    org = event.get("Orgc")
    if isinstance(org, dict):
        summary["Orgc"] = {key: org[key] for key in ORG_FIELDS if key in org}
    return summary


def frame_notice(topic: str, size: int, frame: Any) -> dict[str, Any]:
    """The notice that stands in for a ZeroMQ ``frame`` (decoded JSON) of ``size`` bytes on ``topic``."""
    events: dict[str, None] = {}
    attributes: dict[str, None] = {}
    _collect(frame, events, attributes, under=None)
    return {"notice": {"topic": topic, "size": size, "complete": False},
            "event_uuids": list(events)[:MAX_NOTICE_UUIDS], "attribute_uuids": list(attributes)[:MAX_NOTICE_UUIDS]}


def _collect(value: Any, events: dict[str, None], attributes: dict[str, None], under: str | None) -> None:
    """The uuids of the Event and Attribute objects in ``value`` (a frame), in the order they come."""
    stack = [(value, under)]
    while stack:
        item, parent = stack.pop()
        if isinstance(item, dict):
            uuid = item.get("uuid")
            if isinstance(uuid, str):
                if parent == "Event":
                    events.setdefault(uuid, None)
                elif parent in ("Attribute", "ShadowAttribute"):
                    attributes.setdefault(uuid, None)
            stack.extend((child, key) for key, child in reversed(list(item.items()))
                         if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, parent) for child in reversed(item))
