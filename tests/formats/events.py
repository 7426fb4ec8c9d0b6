"""MISP events for the format tests, in MISP's JSON as get_event answers it."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "misp"
EVENT_UUID = "5f1e2d3c-4b5a-4c6d-8e7f-901234567890"

_ATTACK_CLUSTER = {
    "uuid": "1c34f7aa-9341-4a48-bfab-af22e51aca6c", "type": "mitre-attack-pattern", "value": "Masquerading - T1036",
    "tag_name": 'misp-galaxy:mitre-attack-pattern="Masquerading - T1036"',
    "meta": {"external_id": ["T1036"], "kill_chain": ["mitre-attack:defense-evasion"]},
    "description": "Masquerading", "galaxy_id": "1", "source": "MITRE", "authors": ["MITRE"], "version": "1",
}


_ORG = {"id": "1", "name": "ORGNAME", "uuid": "11111111-1111-4111-8111-111111111111", "local": True}
_SIGHTING = {"attribute_id": "1", "event_id": "7", "org_id": "1", "Organisation": _ORG}


def _attribute(n: int, kind: str, value: str, *, to_ids: bool = True, **extra: Any) -> dict[str, Any]:
    return {"id": str(n), "uuid": f"00000000-0000-4000-8000-{n:012d}", "event_id": "7", "object_id": "0",
            "type": kind, "category": "Network activity" if kind != "md5" else "Payload delivery", "value": value,
            "to_ids": to_ids, "timestamp": "1700000000", "distribution": "5", "sharing_group_id": "0",
            "comment": "", "deleted": False, "disable_correlation": False, "object_relation": None,
            "first_seen": None, "last_seen": None, "Tag": [], **extra}


def rich_event(published: bool = True) -> dict[str, Any]:
    """An event with tags (tlp:amber, confidence, an ATT&CK technique and tactic), a galaxy cluster, plain and
    composite attributes, an object, and sightings."""
    attributes = [
        _attribute(1, "ip-dst", "198.51.100.7", Sighting=[
            dict(_SIGHTING, id="1", type="0", date_sighting="1700000100", source="edr-7",
                 uuid="5f1e2d3c-0000-4000-8000-000000000001"),
            dict(_SIGHTING, id="2", type="1", date_sighting="1700000200", source="fp-feed",
                 uuid="5f1e2d3c-0000-4000-8000-000000000002")]),
        _attribute(2, "domain", "evil.example"),
        _attribute(3, "filename|sha256", "dropper.exe|" + "a" * 64),
        _attribute(4, "ip-dst|port", "203.0.113.9|443", first_seen="2023-01-30T10:00:00.000000+00:00"),
        _attribute(5, "url", "https://evil.example/payload", to_ids=False),
        _attribute(6, "text", "free text", to_ids=False),
        _attribute(7, "md5", "d41d8cd98f00b204e9800998ecf8427e"),
    ]
    obj = {"id": "3", "uuid": "00000000-0000-4000-9000-000000000003", "name": "domain-ip", "meta-category": "network",
           "description": "", "template_uuid": "43b3b146-77eb-4931-b4cc-b66c60f28734", "template_version": "9",
           "event_id": "7", "timestamp": "1700000000", "distribution": "5", "sharing_group_id": "0",
           "comment": "", "deleted": False, "first_seen": None, "last_seen": None, "ObjectReference": [],
           "Attribute": [dict(_attribute(8, "domain", "c2.example"), object_id="3", object_relation="domain"),
                         dict(_attribute(9, "ip-dst", "192.0.2.44"), object_id="3", object_relation="ip")]}
    tags = ["tlp:amber", 'misp:confidence-level="usually-confident"', _ATTACK_CLUSTER["tag_name"],
            'misp-galaxy:mitre-tactic="Execution - TA0002"', 'victim:name="Cyber Tech Dynamics"',
            'effect="Financial Loss"']
    event = {
        "id": "7", "uuid": EVENT_UUID, "info": "Dropper campaign against the finance team", "date": "2023-02-01",
        "threat_level_id": "1", "analysis": "1", "distribution": "1", "published": published,
        "timestamp": "1700000300", "publish_timestamp": "1700000400" if published else "0",
        "attribute_count": "9", "org_id": "1", "orgc_id": "1", "sharing_group_id": "0", "locked": False,
        "disable_correlation": False, "proposal_email_lock": False, "event_creator_email": "admin@example.org",
        "Org": dict(_ORG), "Orgc": dict(_ORG),
        "Attribute": attributes, "Object": [obj], "ShadowAttribute": [], "RelatedEvent": [], "EventReport": [],
        "Tag": [{"id": str(n), "name": name, "colour": "#ffffff", "exportable": True, "hide_tag": False,
                 "local": False, "user_id": "0"} for n, name in enumerate(tags, 1)],
        "Galaxy": [{"id": "1", "uuid": "c4e851fa-775f-11e7-8163-b774922098cd", "name": "Attack Pattern",
                    "type": "mitre-attack-pattern", "description": "ATT&CK", "version": "1", "namespace": "mitre-attack",
                    "GalaxyCluster": [copy.deepcopy(_ATTACK_CLUSTER)]}],
    }
    return {"Event": event}


def existing_event() -> dict[str, Any]:
    """The shared fixture: a real MISP event (CIRCL's Sednit OSINT) with galaxies and 49 objects."""
    return {"Event": json.loads((SHARED / "existing_event.json").read_text())}
