"""formats.stix1: the STIX 1.2 Incident, checked against the STIX 1.2 XML schemas."""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

from dxlmispservice.formats import export
from dxlmispservice.formats.mispevent import victims
from dxlmispservice.formats.stix1 import NAMESPACE, effects
from dxlmispservice.settings.formats import FormatSettings
from tests.formats.events import existing_event, rich_event
from tests.formats.validators import stix1_errors

SETTINGS = FormatSettings()
NS = {"stix": "http://stix.mitre.org/stix-1", "incident": "http://stix.mitre.org/Incident-1",
      "stixCommon": "http://stix.mitre.org/common-1"}


def incident(xml: str) -> ET.Element:
    found = ET.fromstring(xml).find("stix:Incidents/stix:Incident", NS)
    assert found is not None
    return found


def test_the_incident_is_valid_and_has_who_what_and_when() -> None:
    """Title, the four times where known, Reporter, Victim, Impact_Assessment, Status, Confidence; valid XML."""
    result = export("stix1", rich_event(), SETTINGS)
    assert result.content_type == "application/xml" and stix1_errors(result.document) == []
    found = incident(result.document)
    assert found.findtext("incident:Title", namespaces=NS) == "Dropper campaign against the finance team"
    assert found.findtext("incident:Time/incident:Initial_Compromise", namespaces=NS).startswith("2023-01-30T10:00:00")
    assert found.findtext("incident:Time/incident:Incident_Discovery", namespaces=NS).startswith("2023-02-01")
    assert found.find("incident:Time/incident:Incident_Reported", NS) is not None
    assert found.findtext("incident:Reporter/stixCommon:Identity/stixCommon:Name", namespaces=NS) == "ORGNAME"
    assert found.findtext("incident:Victim/stixCommon:Name", namespaces=NS) == "Cyber Tech Dynamics"
    assert found.findtext("incident:Impact_Assessment/incident:Effects/incident:Effect", namespaces=NS) == \
        "Financial Loss"
    assert found.find("incident:Status", NS) is not None
    assert f'xmlns:MISP="{NAMESPACE}"' in result.document


def test_an_unpublished_event_has_no_reported_time() -> None:
    """Incident_Reported only when the event is published."""
    found = incident(export("stix1", rich_event(published=False), SETTINGS).document)
    assert found.find("incident:Time/incident:Incident_Reported", NS) is None


def test_the_org_name_makes_the_id_prefix_and_stays_valid() -> None:
    """stix1OrgName 'Sample Lab, Inc.' gives ids Sample_Lab_Inc:..., declared, so still valid."""
    xml = export("stix1", rich_event(), SETTINGS.with_options({"stix1OrgName": "Sample Lab, Inc."})).document
    assert 'id="Sample_Lab_Inc:Incident-' in xml and stix1_errors(xml) == []


def test_the_real_fixture_event_is_valid() -> None:
    """CIRCL's event with galaxies and 49 objects validates."""
    assert stix1_errors(export("stix1", existing_event(), SETTINGS).document) == []


def test_concurrent_exports_keep_their_own_prefix() -> None:
    """Eight threads, two org names: each document carries only its own prefix and validates."""
    results: dict[int, str] = {}

    def run(n: int) -> None:
        name = "LabA" if n % 2 else "LabB"
        results[n] = export("stix1", rich_event(), SETTINGS.with_options({"stix1OrgName": name})).document

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, xml in results.items():
        own, other = ("LabA", "LabB") if n % 2 else ("LabB", "LabA")
        assert f'id="{own}:' in xml and f'id="{other}:' not in xml and stix1_errors(xml) == []


def test_victims_and_effects_from_tags_and_clusters() -> None:
    """victim:/target: tags and target-information clusters name victims; effect tags outside the vocab count."""
    event = {"Tag": [{"name": 'target:org="Acme"'}, {"name": "victim:Globex"}, {"name": 'effect="user data loss"'},
                     {"name": 'impact="Sad"'}],
             "Galaxy": [{"type": "target-information", "GalaxyCluster": [{"uuid": "u", "value": "Initech"}]}]}
    assert victims(event) == ["Acme", "Globex", "Initech"]
    assert effects(event) == (["User Data Loss"], 1)


def test_one_event_always_gives_one_document() -> None:
    """What python-stix stamps with the conversion time (galaxy TTPs) takes the event's timestamp instead."""
    first = export("stix1", rich_event(), SETTINGS).document
    assert export("stix1", rich_event(), SETTINGS).document == first
    assert 'timestamp="2023-11-14T22:18:20+00:00"' in first
