"""formats.xsoar: the XSOAR incident of a MISP event."""
from __future__ import annotations

import json

import pytest

from dxlmispservice.errors import ExportFailed
from dxlmispservice.formats import export
from dxlmispservice.settings.formats import FormatSettings
from tests.formats.events import EVENT_UUID, rich_event

SETTINGS = FormatSettings(event_url="https://misp.example/events/view/{uuid}")


def test_the_incident_has_the_fields_fetch_incidents_returns() -> None:
    """name, occurred (the date at 00:00 UTC), rawJSON (the event), severity, labels and dbotMirrorId."""
    event = rich_event()
    incident = export("xsoar", event, SETTINGS).document
    assert incident["name"] == "Dropper campaign against the finance team"
    assert incident["occurred"] == "2023-02-01T00:00:00Z"
    assert json.loads(incident["rawJSON"]) == event and incident["dbotMirrorId"] == EVENT_UUID
    assert incident["severity"] == 3
    assert {"type": "tag", "value": "tlp:amber"} in incident["labels"] and len(incident["labels"]) == 6


@pytest.mark.parametrize("level,severity", [("1", 3), ("2", 2), ("3", 1), ("4", 0), ("9", 0)])
def test_threat_level_maps_to_severity(level: str, severity: int) -> None:
    """threat_level_id 1-4 map to XSOAR's 3-0; anything else is unknown (0)."""
    event = rich_event()
    event["Event"]["threat_level_id"] = level
    assert export("xsoar", event, SETTINGS).document["severity"] == severity


def test_an_event_without_a_date_cannot_be_exported() -> None:
    """occurred is required: an event whose date is not YYYY-MM-DD fails with a message naming it."""
    event = rich_event()
    event["Event"]["date"] = "yesterday"
    with pytest.raises(ExportFailed, match="date 'yesterday'"):
        export("xsoar", event, SETTINGS)


def test_the_input_must_be_an_event() -> None:
    """Something with no uuid and info is not an event: ExportFailed says so."""
    with pytest.raises(ExportFailed, match="not a MISP event"):
        export("xsoar", {"Event": {"id": "1"}}, SETTINGS)
