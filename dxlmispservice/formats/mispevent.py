"""Reading one MISP event's JSON: its parts (attributes with those of its objects, tags, galaxy clusters,
sightings) and its times, as the format modules need them. Pure functions over the dict."""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from dxlmispservice.errors import ExportFailed

_TECHNIQUE = re.compile(r"\bT\d{4}(?:\.\d{3})?\b")
_TACTIC = re.compile(r"\bTA\d{4}\b")
QUOTED = re.compile(r'="(.*)"$')
#: Galaxy cluster types whose value names a victim.
VICTIM_CLUSTER_TYPES = ("target-information", "sector")


def body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event object inside ``{"Event": {...}}`` (or ``event`` itself); ExportFailed if it is none."""
    inner = event.get("Event", event)
    if not isinstance(inner, dict) or not inner.get("uuid") or "info" not in inner:
        raise ExportFailed("the input is not a MISP event (an object with 'uuid' and 'info')")
    return inner


def attributes(event: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every live attribute, the event's own first, then each object's; with its object (or None)."""
    for attribute in event.get("Attribute") or []:
        if not _deleted(attribute):
            yield attribute, None
    for obj in event.get("Object") or []:
        if _deleted(obj):
            continue
        for attribute in obj.get("Attribute") or []:
            if not _deleted(attribute):
                yield attribute, obj


def tag_names(owner: Mapping[str, Any]) -> list[str]:
    """The names of the tags on an event or attribute, in order."""
    return [str(tag["name"]) for tag in owner.get("Tag") or [] if isinstance(tag, dict) and tag.get("name")]


def all_tag_names(event: Mapping[str, Any]) -> list[str]:
    """The event's tags, then its attributes' tags, each once."""
    names = tag_names(event)
    for attribute, _ in attributes(event):
        names.extend(tag_names(attribute))
    return list(dict.fromkeys(names))


def clusters(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The galaxy clusters on the event and its attributes, each once (by uuid), with its galaxy type."""
    found: dict[str, dict[str, Any]] = {}
    owners = [event] + [attribute for attribute, _ in attributes(event)]
    for owner in owners:
        for galaxy in owner.get("Galaxy") or []:
            for cluster in galaxy.get("GalaxyCluster") or []:
                key = str(cluster.get("uuid") or cluster.get("tag_name") or cluster.get("value"))
                found.setdefault(key, dict(cluster, type=cluster.get("type") or galaxy.get("type", "")))
    return list(found.values())


def techniques(event: Mapping[str, Any]) -> list[str]:
    """ATT&CK technique ids (``T1036``, ``T1566.001``) named by the event's ATT&CK clusters and tags."""
    texts = [_cluster_text(c) for c in clusters(event) if "attack-pattern" in str(c.get("type", ""))]
    texts += [t for t in all_tag_names(event) if "attack-pattern" in t or "technique" in t]
    return _ids(_TECHNIQUE, texts)


def tactics(event: Mapping[str, Any]) -> list[str]:
    """ATT&CK tactic ids (``TA0002``) where the event's clusters or tags name one."""
    texts = [_cluster_text(c) for c in clusters(event)] + all_tag_names(event)
    return _ids(_TACTIC, texts)


def _cluster_text(cluster: Mapping[str, Any]) -> str:
    meta = cluster.get("meta") or {}
    external = meta.get("external_id") or [] if isinstance(meta, dict) else []
    return " ".join([str(cluster.get("value", "")), str(cluster.get("tag_name", ""))] + [str(e) for e in external])


def _ids(pattern: re.Pattern[str], texts: list[str]) -> list[str]:
    return list(dict.fromkeys(match for text in texts for match in pattern.findall(text)))


def sightings(event: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every sighting on a live attribute, with that attribute."""
    for attribute, _ in attributes(event):
        for sighting in attribute.get("Sighting") or []:
            if isinstance(sighting, dict):
                yield sighting, attribute


def epoch(value: Any) -> int | None:
    """Epoch seconds from MISP's string or number; None when absent or not a number."""
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def iso(seconds: int) -> str:
    """ISO 8601 in UTC, to the second, with ``Z``."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(event: Mapping[str, Any]) -> str:
    """The event's ``date`` at 00:00 UTC in ISO 8601; ExportFailed when it has none that reads as a date."""
    value = str(event.get("date") or "")[:10]
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime("%Y-%m-%dT00:00:00Z")
    except ValueError:
        raise ExportFailed(f"the event's date {event.get('date')!r} is not a YYYY-MM-DD date") from None


def published(event: Mapping[str, Any]) -> bool:
    """Whether the event is published (MISP sends a bool, or "0"/"1" in places)."""
    return str(event.get("published")).lower() in ("true", "1")


def _deleted(item: Mapping[str, Any]) -> bool:
    return str(item.get("deleted")).lower() in ("true", "1")


def victims(event: Mapping[str, Any]) -> list[str]:
    """Victim names from ``victim:``/``target:`` tags and target-information or sector clusters."""
    names = []
    for tag in tag_names(event):
        if tag.lower().startswith(("victim", "target")):
            quoted = QUOTED.search(tag)
            names.append(quoted.group(1) if quoted else tag.rsplit(":", 1)[-1])
    names += [str(c.get("value")) for c in clusters(event) if c.get("type") in VICTIM_CLUSTER_TYPES]
    return list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
