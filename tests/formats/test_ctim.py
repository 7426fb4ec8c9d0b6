"""formats.ctim and ctimcheck: the CTIM bundle of a MISP event, checked by our rules and a JSON Schema."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dxlmispservice.formats import export
from dxlmispservice.formats.ctim import confidence, description, tlp
from dxlmispservice.formats.ctimcheck import check
from dxlmispservice.settings.formats import FormatSettings
from tests.formats.events import EVENT_UUID, existing_event, rich_event

SETTINGS = FormatSettings(event_url="https://misp.example/events/view/{uuid}")
SCHEMA = json.loads((Path(__file__).parent / "ctim_bundle.schema.json").read_text())


def bundle(event: dict[str, Any] | None = None, **options: str) -> dict[str, Any]:
    settings = SETTINGS.with_options(options) if options else SETTINGS
    document = export("ctim", event or rich_event(), settings).document
    jsonschema.validate(document, SCHEMA)
    return document


def test_the_incident_maps_the_events_fields() -> None:
    """title, times, status, severity, confidence, tlp, techniques, tactics and the source URI."""
    incident = bundle()["incidents"][0]
    assert incident["title"] == incident["short_description"] == "Dropper campaign against the finance team"
    assert incident["incident_time"] == {"opened": "2023-02-01T00:00:00Z", "discovered": "2023-02-01T00:00:00Z",
                                         "reported": "2023-11-14T22:20:00Z"}
    assert (incident["status"], incident["severity"], incident["confidence"], incident["tlp"]) == (
        "Open", "High", "High", "amber")
    assert (incident["techniques"], incident["tactics"]) == (["T1036"], ["TA0002"])
    assert incident["source_uri"] == f"https://misp.example/events/view/{EVENT_UUID}"
    assert incident["promotion_method"] == "Automated" and incident["schema_version"] == "1.3.26"


def test_an_unpublished_event_has_no_reported_time() -> None:
    """reported only when the event is published."""
    assert "reported" not in bundle(rich_event(published=False))["incidents"][0]["incident_time"]


def test_sightings_of_type_0_and_the_events_indicators() -> None:
    """One sighting per MISP sighting of type 0 (the false positive is counted as left out), one for the
    event's to_ids observables, with composites split and the port dropped; each a member of the incident."""
    result = export("ctim", rich_event(), SETTINGS)
    sightings = result.document["sightings"]
    assert result.skipped == {"sighting of type 1 (false positive)": 1}
    assert sightings[0]["observables"] == [{"type": "ip", "value": "198.51.100.7"}]
    assert sightings[0]["source"] == "edr-7" and sightings[0]["observed_time"] == {"start_time": "2023-11-14T22:15:00Z"}
    values = {(o["type"], o["value"]) for o in sightings[1]["observables"]}
    assert ("file_name", "dropper.exe") in values and ("ip", "203.0.113.9") in values
    assert ("url", "https://evil.example/payload") not in values  # not to_ids
    assert sightings[1]["relations"][0]["relation"] == "File_Name_Of"
    relationships = result.document["relationships"]
    assert [(r["source_ref"], r["target_ref"]) for r in relationships] == [
        (s["id"], result.document["incidents"][0]["id"]) for s in sightings]


def test_two_exports_are_identical_and_ids_depend_on_the_event() -> None:
    """Deterministic external ids: the same event gives the same bundle; another event other ids."""
    assert bundle() == bundle()
    other = rich_event()
    other["Event"]["uuid"] = "6f1e2d3c-4b5a-4c6d-8e7f-901234567890"
    assert bundle(other)["incidents"][0]["external_ids"] != bundle()["incidents"][0]["external_ids"]


@pytest.mark.parametrize("tags,expected", [
    (["tlp:red", "tlp:green"], "red"), (["tlp:amber+strict"], "amber"), (["tlp:clear"], "white"),
    (["tlp:white"], "white"), (["tlp:green"], "green"), ([], "amber")])
def test_tlp_from_tags(tags: list[str], expected: str) -> None:
    """The most restrictive tlp: tag; none gives the configured default."""
    assert tlp({"Tag": [{"name": t} for t in tags]}, "amber") == expected


@pytest.mark.parametrize("value,expected", [
    ("completely-confident", "High"), ("fairly-confident", "Medium"), ("rarely-confident", "Low"),
    ("unconfident", "None"), ("confidence-cannot-be-evaluated", "Unknown"), (None, "Unknown")])
def test_confidence_from_the_confidence_level_tag(value: str | None, expected: str) -> None:
    """misp:confidence-level values map by the documented table; no tag is Unknown."""
    tags = [{"name": f'misp:confidence-level="{value}"'}] if value else []
    assert confidence({"Tag": tags}) == expected


def test_options_change_the_source_tlp_and_prefix() -> None:
    """ctimSource, ctimTlp (for an event without a tlp tag) and ctimExternalIdPrefix apply per request."""
    event = rich_event()
    event["Event"]["Tag"] = [t for t in event["Event"]["Tag"] if not t["name"].startswith("tlp:")]
    document = bundle(event, ctimSource="Lab MISP", ctimTlp="green", ctimExternalIdPrefix="lab")
    incident = document["incidents"][0]
    assert document["source"] == incident["source"] == "Lab MISP" and incident["tlp"] == "green"
    assert incident["external_ids"][0].startswith("lab-incident-")


def test_the_description_has_what_when_where_and_the_key_observables() -> None:
    """The Markdown summary follows the incident-summary headings and stays within 5,000 characters."""
    text = description(rich_event()["Event"])
    sections = ("## Incident Overview", "## Investigation Details", "## Initial Response and Mitigation",
                "## Impact Assessment", "## Remediation and Root Cause Analysis")
    assert text.startswith("# Dropper campaign") and all(h in text for h in sections)
    assert "**Key observables**" in text and "- domain: `evil.example`" in text
    assert "Cyber Tech Dynamics" in text
    event = rich_event()["Event"]
    event["Attribute"] = [dict(event["Attribute"][1], value=f"d{n}.example" + "x" * 150) for n in range(100)]
    event["info"] = "i" * 6000
    assert len(description(event)) <= 5000


def test_the_real_fixture_event_gives_a_valid_bundle() -> None:
    """CIRCL's event with galaxies and 49 objects."""
    assert bundle(existing_event())["incidents"][0]["tlp"] == "white"


def test_the_checker_names_what_breaks_the_rules() -> None:
    """A wrong status, a relation to an observable not listed, a dangling relationship: each is named."""
    document = bundle()
    document["incidents"][0]["status"] = "Pending"
    document["sightings"][1]["observables"].pop(2)
    document["relationships"][0]["target_ref"] = "transient:nowhere"
    problems = check(document)
    assert any("status 'Pending'" in p for p in problems)
    assert any("relation's source is not among its observables" in p for p in problems)
    assert any("refers to an entity not in the bundle" in p for p in problems)
