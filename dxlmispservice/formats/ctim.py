"""``ctim``: a MISP event as a CTIM bundle for Cisco XDR: one incident, its sightings, and a ``member-of``
relationship from each sighting to the incident. The mapping is ours, written from the CTIM schema
(threatgrid/ctim) and the XDR incident guide; docs/formats.rst has the table.

Every entity has a ``transient:`` id and a deterministic external id ``<prefix>-<type>-<sha256 of the event
uuid and the entity's own key>``, so that importing the same event twice gives ``exists`` in XDR, not a
duplicate, and two exports of one event are identical. :func:`check` holds the bundle to CTIM's
vocabularies and required fields before it is answered.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from dxlmispservice.errors import ExportFailed
from dxlmispservice.formats import Export
from dxlmispservice.formats import ctimtypes
from dxlmispservice.formats import mispevent as me
from dxlmispservice.formats.ctimcheck import check
from dxlmispservice.settings.formats import FormatSettings

CONTENT_TYPE = "application/json"
DESCRIPTION_LIMIT = 5000
#: MISP analysis -> CTIM incident status.
STATUS = {"0": "New", "1": "Open", "2": "Closed"}
#: MISP threat_level_id -> CTIM severity.
SEVERITY = {"1": "High", "2": "Medium", "3": "Low", "4": "Unknown"}
#: ``misp:confidence-level`` tag values -> CTIM confidence (the highest one on the event wins).
CONFIDENCE = {"completely-confident": "High", "usually-confident": "High", "fairly-confident": "Medium",
              "rarely-confident": "Low", "unconfident": "None", "confidence-cannot-be-evaluated": "Unknown"}
_CONFIDENCE_ORDER = ("High", "Medium", "Low", "None", "Unknown")
#: ``tlp:`` tags -> CTIM tlp (the most restrictive one on the event wins).
TLP = {"tlp:red": "red", "tlp:amber+strict": "amber", "tlp:amber": "amber", "tlp:green": "green",
       "tlp:white": "white", "tlp:clear": "white"}
_TLP_ORDER = ("red", "amber", "green", "white")
KEY_OBSERVABLES = 20


def convert(event: Mapping[str, Any], settings: FormatSettings) -> Export:
    """The CTIM bundle of ``event``."""
    body = me.body(event)
    skipped: Counter[str] = Counter()
    ids = _Ids(str(body["uuid"]), settings.ctim_external_id_prefix)
    incident = _incident(body, settings, ids)
    sightings = _sightings(body, settings, ids, incident, skipped)
    relationships = [_member_of(sighting, incident, settings, ids) for sighting in sightings]
    bundle = {"type": "bundle", "source": settings.ctim_source, "source_uri": _event_url(body, settings),
              "incidents": [incident], "sightings": sightings, "relationships": relationships}
    problems = check(bundle)
    if problems:
        raise ExportFailed("the CTIM bundle would break CTIM's rules: " + "; ".join(problems[:5]))
    return Export("ctim", bundle, CONTENT_TYPE, dict(sorted(skipped.items())))


class _Ids:
    """Transient and external ids of the entities of one event's bundle."""

    def __init__(self, event_uuid: str, prefix: str) -> None:
        self._event_uuid = event_uuid
        self._prefix = prefix

    def external(self, kind: str, key: str) -> str:
        digest = hashlib.sha256(f"{self._event_uuid}\n{key}".encode("utf-8")).hexdigest()
        return f"{self._prefix}-{kind}-{digest}"

    def transient(self, kind: str, key: str) -> str:
        return "transient:" + self.external(kind, key)


def _incident(event: Mapping[str, Any], settings: FormatSettings, ids: _Ids) -> dict[str, Any]:
    opened = me.day(event)
    times = {"opened": opened, "discovered": opened}
    published_at = me.epoch(event.get("publish_timestamp"))
    if me.published(event) and published_at:
        times["reported"] = me.iso(published_at)
    incident = {
        "type": "incident", "id": ids.transient("incident", "incident"),
        "external_ids": [ids.external("incident", "incident")], "schema_version": settings.ctim_schema_version,
        "source": settings.ctim_source, "source_uri": _event_url(event, settings),
        "title": _short(str(event["info"])), "short_description": _short(str(event["info"])),
        "description": description(event),
        "incident_time": times, "status": STATUS.get(str(event.get("analysis")), "New"),
        "severity": SEVERITY.get(str(event.get("threat_level_id")), "Unknown"),
        "confidence": confidence(event), "tlp": tlp(event, settings.ctim_tlp),
        "techniques": me.techniques(event), "tactics": me.tactics(event), "promotion_method": "Automated",
    }
    changed = me.epoch(event.get("timestamp"))
    if changed:
        incident["timestamp"] = me.iso(changed)
    return incident


def _sightings(event: Mapping[str, Any], settings: FormatSettings, ids: _Ids, incident: Mapping[str, Any],
               skipped: Counter[str]) -> list[dict[str, Any]]:
    sightings = []
    for sighting, attribute in me.sightings(event):
        kind = str(sighting.get("type", "0"))
        if kind != "0":
            skipped[f"sighting of type {kind} ({'false positive' if kind == '1' else 'expiration'})"] += 1
            continue
        found, relations = ctimtypes.observables(str(attribute.get("type")), str(attribute.get("value")))
        seen = me.epoch(sighting.get("date_sighting"))
        if not found or not seen:
            skipped["sighting of an attribute with no CTIM observable" if not found else "sighting with no date"] += 1
            continue
        key = "sighting:" + str(sighting.get("uuid") or sighting.get("id"))
        source = str(sighting.get("source") or (sighting.get("Organisation") or {}).get("name") or settings.ctim_source)
        sightings.append(_sighting(ids, key, settings, incident, found, relations, me.iso(seen), source,
                                   f"Sighting of {attribute.get('type')} {_short(str(attribute.get('value')), 200)}"))
    observables: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    relations: list[tuple[dict[str, str], str, dict[str, str]]] = []
    for attribute, _ in me.attributes(event):
        if not attribute.get("to_ids"):
            continue
        found, pairs = ctimtypes.observables(str(attribute.get("type")), str(attribute.get("value")))
        if not found:
            skipped[f"attribute type {attribute.get('type')} (no CTIM observable)"] += 1
        for observable in found:
            if (observable["type"], observable["value"]) not in seen:
                seen.add((observable["type"], observable["value"]))
                observables.append(observable)
        relations.extend(pairs)
    if observables:
        sightings.append(_sighting(ids, "event", settings, incident, observables, relations, me.day(event),
                                   settings.ctim_source, f"Indicators of MISP event: {_short(str(event['info']), 900)}"))
    return sightings


def _sighting(ids: _Ids, key: str, settings: FormatSettings, incident: Mapping[str, Any],
              observables: list[dict[str, str]], relations: list[tuple[dict[str, str], str, dict[str, str]]],
              start: str, source: str, title: str) -> dict[str, Any]:
    sighting: dict[str, Any] = {
        "type": "sighting", "id": ids.transient("sighting", key), "external_ids": [ids.external("sighting", key)],
        "schema_version": settings.ctim_schema_version, "source": source, "title": title,
        "observed_time": {"start_time": start}, "count": 1, "confidence": incident["confidence"],
        "severity": incident["severity"], "tlp": incident["tlp"], "observables": observables,
    }
    if relations:
        sighting["relations"] = [{"origin": settings.ctim_source, "relation": relation, "source": first,
                                  "related": second} for first, relation, second in relations]
    return sighting


def _member_of(sighting: Mapping[str, Any], incident: Mapping[str, Any], settings: FormatSettings,
               ids: _Ids) -> dict[str, Any]:
    key = "member-of:" + sighting["external_ids"][0]
    return {"type": "relationship", "id": ids.transient("relationship", key),
            "external_ids": [ids.external("relationship", key)], "schema_version": settings.ctim_schema_version,
            "source": settings.ctim_source, "relationship_type": "member-of", "source_ref": sighting["id"],
            "target_ref": incident["id"]}


def confidence(event: Mapping[str, Any]) -> str:
    """From the event's ``misp:confidence-level`` tags (the highest wins); Unknown when there is none."""
    found = [CONFIDENCE.get(name.split("=", 1)[1].strip('"')) for name in me.tag_names(event)
             if name.startswith("misp:confidence-level=")]
    known = [level for level in found if level]
    return min(known, key=_CONFIDENCE_ORDER.index) if known else "Unknown"


def tlp(event: Mapping[str, Any], default: str) -> str:
    """From the event's ``tlp:`` tags (the most restrictive wins); ``default`` when there is none."""
    found = [TLP[name.lower()] for name in me.tag_names(event) if name.lower() in TLP]
    return min(found, key=_TLP_ORDER.index) if found else default


def description(event: Mapping[str, Any]) -> str:
    """The incident's Markdown summary, in the sections of CTIM's incident-summary guidelines (what, when,
    where and the key observables under them), at most 5,000 characters."""
    org = (event.get("Orgc") or {}).get("name") or "an unknown organisation"
    attributes = list(me.attributes(event))
    published_at = me.epoch(event.get("publish_timestamp"))
    when = f"Event date {str(event.get('date'))[:10]}" + (
        f"; published {me.iso(published_at)}." if me.published(event) and published_at else "; not published.")
    named = me.victims(event)
    lines = [f"# {_short(str(event['info']), 200)}", "", "## Incident Overview", "",
             f"MISP event `{event['uuid']}` from {org}: threat level "
             f"{SEVERITY.get(str(event.get('threat_level_id')), 'Unknown')}, analysis "
             f"{STATUS.get(str(event.get('analysis')), 'New')}, {len(attributes)} attributes"
             f" ({sum(1 for a, _ in attributes if a.get('to_ids'))} for detection). {when}", "",
             "## Investigation Details", ""]
    techniques = me.techniques(event)
    if techniques:
        lines += ["ATT&CK techniques: " + ", ".join(techniques) + ".", ""]
    tags = [t for t in me.tag_names(event) if not t.startswith("misp-galaxy:")]
    if tags:
        lines += ["Tags: " + ", ".join(f"`{t}`" for t in tags[:20]) + ".", ""]
    key = [f"- {a.get('type')}: `{_short(str(a.get('value')), 200)}`" for a, _ in attributes if a.get("to_ids")]
    lines += ["**Key observables**", ""] + (key[:KEY_OBSERVABLES] or ["None marked for detection."])
    if len(key) > KEY_OBSERVABLES:
        lines.append(f"- ... and {len(key) - KEY_OBSERVABLES} more")
    lines += ["", "## Initial Response and Mitigation", "", "Not recorded in MISP.", "",
              "## Impact Assessment", "", ("Targets: " + ", ".join(named) + ".") if named
              else "No target is named in the event.", "",
              "## Remediation and Root Cause Analysis", "", "Not recorded in MISP."]
    text = "\n".join(lines)
    return text if len(text) <= DESCRIPTION_LIMIT else text[:DESCRIPTION_LIMIT - 1] + "…"


def _event_url(event: Mapping[str, Any], settings: FormatSettings) -> str:
    return settings.event_url.replace("{uuid}", str(event["uuid"])).replace("{id}", str(event.get("id", "")))


def _short(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
