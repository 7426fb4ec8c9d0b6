"""Galaxy clusters from galaxy tags, as MISP shows them: an event or attribute tagged
``misp-galaxy:<type>="<value>"`` lists the cluster in its ``Galaxy``, grouped by galaxy type.

The dev server keeps no galaxy library: a cluster is made from its tag alone, with stable ids (UUIDv5 of the
tag), the galaxy's name from its type, and ``meta.external_id`` from the ATT&CK id in the value
(``"Masquerading - T1036"`` -> ``["T1036"]``, ``"Execution - TA0002"`` -> ``["TA0002"]``).
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "misp-galaxy:"
_TAG = re.compile(r'^misp-galaxy:([^=]+)="(.+)"$')
_ATTACK_ID = re.compile(r"\b(TA\d{4}|T\d{4}(?:\.\d{3})?|[GSM]\d{4})\b")
_NAMESPACE = uuid.UUID("6b1f4a8e-6d1e-4c57-9d7a-2a4b1b0c0a11")


def galaxies(tags: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``Galaxy`` list of an event or attribute with ``tags`` (tag dicts with ``id`` and ``name``)."""
    by_type: dict[str, dict[str, Any]] = {}
    for tag in tags:
        found = _TAG.match(str(tag.get("name", "")))
        if not found:
            continue
        kind, value = found.groups()
        galaxy = by_type.get(kind)
        if galaxy is None:
            galaxy = by_type[kind] = _galaxy(kind)
        galaxy["GalaxyCluster"].append(_cluster(kind, value, tag, galaxy["id"]))
    return list(by_type.values())


def _galaxy(kind: str) -> dict[str, Any]:
    gid = str(uuid.uuid5(_NAMESPACE, "galaxy:" + kind))
    name = kind.removeprefix("mitre-").replace("-", " ").title()
    return {"id": str(int(gid[:6], 16)), "uuid": gid, "name": name, "type": kind, "description": f"{name} (dev)",
            "version": "1", "icon": "", "namespace": "mitre-attack" if kind.startswith("mitre-") else "misp",
            "enabled": True, "local_only": False, "GalaxyCluster": []}


def _cluster(kind: str, value: str, tag: Mapping[str, Any], galaxy_id: str) -> dict[str, Any]:
    cid = str(uuid.uuid5(_NAMESPACE, f"cluster:{kind}:{value}"))
    meta: dict[str, Any] = {}
    ids = _ATTACK_ID.findall(value) if kind.startswith("mitre-") else []
    if ids:
        meta["external_id"] = ids
    return {"id": str(int(cid[:6], 16)), "uuid": cid, "collection_uuid": "", "type": kind, "value": value,
            "tag_name": str(tag.get("name")), "description": "", "galaxy_id": galaxy_id, "source": "dev MISP",
            "authors": [], "version": "1", "distribution": "3", "sharing_group_id": None, "org_id": "0",
            "orgc_id": "0", "default": True, "locked": False, "extends_uuid": "", "extends_version": "0",
            "published": False, "deleted": False, "tag_id": str(tag.get("id", "")), "local": False, "meta": meta}
