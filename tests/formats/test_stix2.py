"""formats.stix2: STIX 2.1 bundles through misp-stix, checked by stix2-validator."""
from __future__ import annotations

from dxlmispservice.formats import export
from dxlmispservice.formats.stix2 import skipped_of
from dxlmispservice.settings.formats import FormatSettings
from tests.formats.events import existing_event, rich_event
from tests.formats.validators import stix2_errors

SETTINGS = FormatSettings()


def test_a_published_event_is_a_valid_bundle_with_a_report() -> None:
    """A published event gives a bundle stix2-validator accepts, with a report naming the event."""
    document = export("stix2", rich_event(), SETTINGS).document
    assert document["type"] == "bundle" and stix2_errors(document) == []
    reports = [o for o in document["objects"] if o["type"] == "report"]
    assert [r["name"] for r in reports] == ["Dropper campaign against the finance team"]
    assert any(o["type"] == "attack-pattern" for o in document["objects"])


def test_an_unpublished_event_is_a_grouping() -> None:
    """misp-stix makes a grouping of an event not published."""
    document = export("stix2", rich_event(published=False), SETTINGS).document
    assert stix2_errors(document) == [] and any(o["type"] == "grouping" for o in document["objects"])


def test_the_real_fixture_event_is_valid_and_its_unmapped_attribute_counted() -> None:
    """CIRCL's event with galaxies and 49 objects: valid; its text attribute is counted as custom."""
    result = export("stix2", existing_event(), SETTINGS)
    assert stix2_errors(result.document) == [] and result.skipped == {"custom: text": 1}


def test_the_event_given_is_not_changed() -> None:
    """misp-stix changes the dict it parses: export hands it a copy."""
    event = rich_event()
    before = repr(event)
    export("stix2", event, SETTINGS)
    assert repr(event) == before


def test_warnings_and_errors_count_by_reason() -> None:
    """Not-mapped warnings count by MISP type; errors count as one reason."""
    warnings = {"a": ["MISP Attribute type text not mapped.", "MISP Object name foo not mapped."], "b": ["odd"]}
    assert skipped_of(warnings, {"a": ["x", "y"]}) == {"custom: foo": 1, "custom: text": 1, "error": 2, "warning": 1}
