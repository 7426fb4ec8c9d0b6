"""api.export: the export_event topic on a real MispConnection to the dev MISP server (HTTP, in process)."""
from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import serve
from dxlmispservice.api import topics
from dxlmispservice.api.export import EXPORT_PAGING, export_event
from dxlmispservice.errors import InvalidArguments, MispRefused
from dxlmispservice.misp import MispConnection
from dxlmispservice.settings import Settings
from dxlmispservice.settings.formats import FormatSettings


@pytest.fixture(scope="module")
def misp() -> Iterator[MispConnection]:
    key = secrets.token_hex(20)
    with serve(MispModels(), admin_key=key) as server:
        yield MispConnection(Settings(misp_url=server.url, api_key=key))


@pytest.fixture(scope="module")
def event(misp: MispConnection) -> dict[str, Any]:
    body = {"info": "slices", "Attribute": [{"type": "domain", "value": f"a{n}.example", "to_ids": True}
                                            for n in range(3)],
            "Object": [{"name": "domain-ip", "Attribute": [
                {"type": "domain", "object_relation": "domain", "value": "o.example", "to_ids": True},
                {"type": "ip-dst", "object_relation": "ip", "value": "192.0.2.9", "to_ids": True}]}]}
    return misp.call(lambda p: p.add_event(body, pythonify=False))["Event"]  # type: ignore[no-any-return]


def test_a_whole_export_answers_the_four_keys(misp: MispConnection, event: dict[str, Any]) -> None:
    """format, content_type, document and skipped; no slice without page and limit."""
    answer = export_event(misp, {"event": event["uuid"], "format": "xsoar"})
    assert set(answer) == {"format", "content_type", "document", "skipped"} and answer["format"] == "xsoar"


def test_slices_cover_every_attribute_once_with_their_objects(misp: MispConnection, event: dict[str, Any]) -> None:
    """Slices of two: five attributes in three slices; an object attribute comes inside its object."""
    seen: list[str] = []
    for page in (1, 2, 3):
        answer = export_event(misp, {"event": event["id"], "format": "xsoar", "page": page, "limit": 2})
        assert answer["slice"] == {"page": page, "limit": 2, "attributes": 5}
        raw = json.loads(answer["document"]["rawJSON"])["Event"]
        seen += [a["value"] for a in raw["Attribute"]]
        seen += [f"{o['name']}:{a['value']}" for o in raw["Object"] for a in o["Attribute"]]
    assert sorted(seen) == sorted([f"a{n}.example" for n in range(3)] + ["domain-ip:o.example",
                                                                          "domain-ip:192.0.2.9"])


def test_options_apply_and_bad_ones_are_refused(misp: MispConnection, event: dict[str, Any]) -> None:
    """options override [Formats] for the request; an unknown format or option key is InvalidArguments."""
    answer = export_event(misp, {"event": event["uuid"], "format": "ctim", "options": {"ctimSource": "Lab"}},
                          formats=FormatSettings(event_url="https://m.example/e/{id}"))
    assert answer["document"]["source"] == "Lab" and answer["document"]["source_uri"] == f"https://m.example/e/{event['id']}"
    with pytest.raises(InvalidArguments, match="not a format"):
        export_event(misp, {"event": event["uuid"], "format": "csv"})
    with pytest.raises(InvalidArguments, match="unknown key 'x'"):
        export_event(misp, {"event": event["uuid"], "format": "ctim", "options": {"x": "y"}})


def test_an_unknown_event_is_misps_404_whole_or_sliced(misp: MispConnection) -> None:
    """MISP's 404 comes back as misp_refused, for a whole export and for a slice."""
    for extra in ({}, {"page": 1, "limit": 5}):
        with pytest.raises(MispRefused) as caught:
            export_event(misp, {"event": "424242", "format": "stix2", **extra})
        assert caught.value.status == 404


def test_the_table_binds_the_format_settings_and_the_advice() -> None:
    """The topic table serves export_event with [Formats] bound; error 5 advises slices."""
    formats = FormatSettings(ctim_source="Bound")
    handler = topics.build_table(["export_event"], formats=formats)["export_event"]
    assert handler.keywords == {"formats": formats}  # type: ignore[attr-defined]
    assert handler.paging_advice == EXPORT_PAGING  # type: ignore[attr-defined]
