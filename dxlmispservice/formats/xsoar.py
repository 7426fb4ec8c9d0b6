"""``xsoar``: a MISP event as the incident Cortex XSOAR's fetch-incidents returns.

``name`` the event's ``info``; ``occurred`` its ``date`` at 00:00 UTC (ISO 8601); ``rawJSON`` the MISP event
as a compact JSON string, its keys in MISP's order (for XSOAR's mapping stage); ``severity`` from ``threat_level_id`` (1 → 3 high, 2 → 2
medium, 3 → 1 low, 4 → 0 unknown); ``labels`` one ``{"type": "tag", "value": name}`` per event tag;
``dbotMirrorId`` the event's uuid. Nothing is left out: the whole event is in ``rawJSON``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dxlmispservice.formats import Export
from dxlmispservice.formats import mispevent as me
from dxlmispservice.settings.formats import FormatSettings

CONTENT_TYPE = "application/json"
#: MISP threat_level_id -> XSOAR severity (0 unknown, 1 low, 2 medium, 3 high).
SEVERITY = {"1": 3, "2": 2, "3": 1, "4": 0}


def convert(event: Mapping[str, Any], settings: FormatSettings) -> Export:
    """The XSOAR incident of ``event``."""
    body = me.body(event)
    incident = {
        "name": str(body["info"]),
        "occurred": me.day(body),
        "rawJSON": json.dumps({"Event": body}, separators=(",", ":"), ensure_ascii=False),
        "severity": SEVERITY.get(str(body.get("threat_level_id")), 0),
        "labels": [{"type": "tag", "value": name} for name in me.tag_names(body)],
        "dbotMirrorId": str(body["uuid"]),
    }
    return Export("xsoar", incident, CONTENT_TYPE, {})
