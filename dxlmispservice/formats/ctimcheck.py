"""CTIM's rules that a bundle of the ctim format must keep: the vocabularies and the required fields of
the incident, the sightings and the relationships (from the CTIM schema, threatgrid/ctim), and XDR's own:
every observable a sighting's relations name is among its observables."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dxlmispservice.formats.ctimtypes import CTIM_TYPES
from dxlmispservice.settings.formats import CTIM_TLPS

INCIDENT_STATUS = ("New", "Open", "Stalled", "Containment Achieved", "Restoration Achieved", "Incident Reported",
                   "Closed", "Rejected")
HIGH_MED_LOW = ("Info", "Low", "Medium", "High", "None", "Unknown")
SEVERITY = ("Info", "Low", "Medium", "High", "Critical", "None", "Unknown")
PROMOTION = ("Manual", "Automated")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_TACTIC = re.compile(r"^TA\d{4}$")
_REQUIRED = {"incident": ("type", "id", "schema_version", "confidence", "status", "incident_time"),
             "sighting": ("type", "id", "schema_version", "count", "observed_time", "confidence"),
             "relationship": ("type", "id", "schema_version", "relationship_type", "source_ref", "target_ref")}


def check(bundle: Mapping[str, Any]) -> list[str]:
    """What in ``bundle`` breaks CTIM's rules; empty when nothing does."""
    problems = [] if bundle.get("type") == "bundle" else ["the bundle's type is not 'bundle'"]
    for incident in bundle.get("incidents") or []:
        problems += _incident(incident)
    for sighting in bundle.get("sightings") or []:
        problems += _sighting(sighting)
    ids = {entity.get("id") for key in ("incidents", "sightings") for entity in bundle.get(key) or []}
    for relationship in bundle.get("relationships") or []:
        problems += _required("relationship", relationship)
        if relationship.get("source_ref") not in ids or relationship.get("target_ref") not in ids:
            problems.append(f"relationship {relationship.get('id')} refers to an entity not in the bundle")
    return problems


def _required(kind: str, entity: Mapping[str, Any]) -> list[str]:
    missing = [key for key in _REQUIRED[kind] if entity.get(key) in (None, "", [])]
    problems = [f"{kind} {entity.get('id')} lacks {', '.join(missing)}"] if missing else []
    if entity.get("type") not in (kind, None):
        problems.append(f"{kind} {entity.get('id')} has type {entity.get('type')!r}")
    if not str(entity.get("id", "")).startswith("transient:"):
        problems.append(f"{kind} id {entity.get('id')!r} is not a transient id")
    return problems


def _vocab(entity: Mapping[str, Any], key: str, values: tuple[str, ...]) -> list[str]:
    value = entity.get(key)
    return [] if value is None or value in values else [f"{key} {value!r} is not one of {', '.join(values)}"]


def _incident(incident: Mapping[str, Any]) -> list[str]:
    problems = _required("incident", incident)
    problems += _vocab(incident, "status", INCIDENT_STATUS) + _vocab(incident, "confidence", HIGH_MED_LOW)
    problems += _vocab(incident, "severity", SEVERITY) + _vocab(incident, "tlp", CTIM_TLPS)
    problems += _vocab(incident, "promotion_method", PROMOTION)
    times = incident.get("incident_time") or {}
    if not _TIME.match(str(times.get("opened", ""))):
        problems.append("incident_time.opened is not an ISO 8601 UTC time")
    problems += [f"incident_time.{k} is not an ISO 8601 UTC time" for k, v in times.items() if not _TIME.match(str(v))]
    if len(str(incident.get("description", ""))) > 5000:
        problems.append("the incident description is longer than 5,000 characters")
    problems += [f"technique {t!r} is not an ATT&CK technique id" for t in incident.get("techniques") or []
                 if not _TECHNIQUE.match(t)]
    problems += [f"tactic {t!r} is not an ATT&CK tactic id" for t in incident.get("tactics") or [] if not _TACTIC.match(t)]
    return problems


def _sighting(sighting: Mapping[str, Any]) -> list[str]:
    problems = _required("sighting", sighting) + _vocab(sighting, "confidence", HIGH_MED_LOW)
    problems += _vocab(sighting, "severity", SEVERITY) + _vocab(sighting, "tlp", CTIM_TLPS)
    if not _TIME.match(str((sighting.get("observed_time") or {}).get("start_time", ""))):
        problems.append(f"sighting {sighting.get('id')}: observed_time.start_time is not an ISO 8601 UTC time")
    if not isinstance(sighting.get("count"), int) or sighting["count"] < 0:
        problems.append(f"sighting {sighting.get('id')}: count is not a whole number")
    observables = sighting.get("observables") or []
    problems += [f"observable type {o.get('type')!r} is not a CTIM type" for o in observables
                 if o.get("type") not in CTIM_TYPES or not o.get("value")]
    for relation in sighting.get("relations") or []:
        for end in ("source", "related"):
            if relation.get(end) not in observables:
                problems.append(f"sighting {sighting.get('id')}: a relation's {end} is not among its observables")
    return problems
