"""export_event over the real stack: an event built through the service on the dev MISP server (tags, a
galaxy, an object, composite attributes, sightings) comes back in each format, and each document passes
its validator: stix2-validator, the STIX 1.2 XML schemas, our CTIM rules and JSON Schema; bad requests get
their documented codes; error 5's advice on a big export, followed, gives every attribute in valid slices."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dxlmisp_devstack.testing import Requester, StackHandle
from dxlmispservice.formats.ctimcheck import check
from dxlmispservice.names import request_topic
from tests.e2e.helpers import call, limited_service
from tests.formats.validators import stix1_errors, stix2_errors

CTIM_SCHEMA = json.loads((Path(__file__).parents[1] / "formats" / "ctim_bundle.schema.json").read_text())
LIMIT = 20_000
UNIQUE_ID = "e2e-export"


@pytest.fixture()
def built(dxl_requester: Requester) -> dict[str, Any]:
    """The event, made through the service's add_event and add_sighting (MISP is emptied for each test)."""
    event = {"info": "e2e export", "distribution": 0, "threat_level_id": 2, "analysis": 1, "date": "2024-03-01",
             "Tag": [{"name": "tlp:amber"}, {"name": 'misp-galaxy:mitre-attack-pattern="Masquerading - T1036"'},
                     {"name": 'misp:confidence-level="fairly-confident"'}],
             "Attribute": [{"type": "ip-dst|port", "value": "203.0.113.9|443", "to_ids": True},
                           {"type": "filename|sha256", "value": "drop.exe|" + "b" * 64, "to_ids": True},
                           {"type": "domain", "value": "e2e-export.example", "to_ids": True},
                           {"type": "comment", "value": "free text"}],
             "Object": [{"name": "domain-ip", "meta-category": "network", "Attribute": [
                 {"type": "domain", "object_relation": "domain", "value": "c2.e2e-export.example", "to_ids": True},
                 {"type": "ip-dst", "object_relation": "ip", "value": "192.0.2.55", "to_ids": True}]}]}
    made = call(dxl_requester, "add_event", {"event": {"Event": event}})["Event"]
    domain = next(a for a in made["Attribute"] if a["type"] == "domain")
    call(dxl_requester, "add_sighting", {"sighting": {"source": "e2e-edr", "type": "0"}, "attribute": domain["uuid"]})
    return made


def export(requester: Requester, payload: dict[str, Any], unique_id: str = "") -> Any:
    return requester.request(request_topic("export_event", unique_id), payload)


def test_stix2_export_is_a_valid_bundle(dxl_requester: Requester, built: dict[str, Any]) -> None:
    """stix2: a STIX 2.1 bundle stix2-validator accepts, with the ATT&CK technique from the galaxy."""
    reply = export(dxl_requester, {"event": built["uuid"], "format": "stix2"})
    assert reply.ok, reply.error_message
    answer = reply.payload
    assert answer["content_type"] == "application/stix+json;version=2.1" and stix2_errors(answer["document"]) == []
    assert any(o["type"] == "attack-pattern" for o in answer["document"]["objects"])


def test_stix1_export_is_a_valid_incident(dxl_requester: Requester, built: dict[str, Any]) -> None:
    """stix1: XML text that the STIX 1.2 schemas accept, whose Incident has the event's title."""
    answer = export(dxl_requester, {"event": built["id"], "format": "stix1"}).payload
    assert stix1_errors(answer["document"]) == []
    title = ET.fromstring(answer["document"]).find(".//{http://stix.mitre.org/Incident-1}Title")
    assert title is not None and title.text == "e2e export"


def test_ctim_export_keeps_ctims_rules(dxl_requester: Requester, built: dict[str, Any]) -> None:
    """ctim: the bundle passes our checks and JSON Schema; the sighting made through the service is there,
    the technique comes from the galaxy cluster, the confidence from the tag."""
    document = export(dxl_requester, {"event": built["uuid"], "format": "ctim",
                                      "options": {"ctimSource": "e2e"}}).payload["document"]
    jsonschema.validate(document, CTIM_SCHEMA)
    assert check(document) == []
    incident = document["incidents"][0]
    assert (incident["techniques"], incident["confidence"], incident["tlp"]) == (["T1036"], "Medium", "amber")
    assert [s["source"] for s in document["sightings"]][0] == "e2e-edr"
    values = {o["value"] for s in document["sightings"] for o in s["observables"]}
    assert {"203.0.113.9", "drop.exe", "c2.e2e-export.example", "192.0.2.55"} <= values


def test_xsoar_export_carries_the_event(dxl_requester: Requester, built: dict[str, Any]) -> None:
    """xsoar: name, occurred and rawJSON, the event MISP holds."""
    incident = export(dxl_requester, {"event": built["uuid"], "format": "xsoar"}).payload["document"]
    assert (incident["name"], incident["occurred"]) == ("e2e export", "2024-03-01T00:00:00Z")
    assert json.loads(incident["rawJSON"])["Event"]["uuid"] == built["uuid"]


@pytest.mark.parametrize("payload,code,words", [
    ({"event": "1", "format": "pdf"}, 2, ["'pdf' is not a format", "stix2, stix1, ctim, xsoar"]),
    ({"event": "1", "format": "ctim", "options": {"ctimTlp": "purple"}}, 2, ["ctimTlp 'purple'"]),
    ({"event": "1", "format": "ctim", "options": {"colour": "x"}}, 2, ["unknown key 'colour'"]),
    ({"event": "1", "format": "ctim", "page": 1}, 2, ["both 'page' and 'limit'"]),
    ({"format": "ctim"}, 2, ["event"]),
    ({"event": "99999999", "format": "ctim"}, 3, ["MISP refused"]),
])
def test_bad_requests_get_their_codes(dxl_requester: Requester, built: dict[str, Any], payload: dict[str, Any],
                                      code: int, words: list[str]) -> None:
    """Bad format, bad options, half a slice, no event, an unknown event: the documented code and a message."""
    reply = export(dxl_requester, payload)
    assert not reply.ok and reply.error_code == code
    assert all(word in reply.error_message for word in words), reply.error_message


@pytest.fixture(scope="module")
def small(devstack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service variant with maxResponseSize 20000 (feed and forwarding off); yields its serviceUniqueId."""
    with limited_service(devstack, tmp_path_factory.mktemp("export"), UNIQUE_ID, LIMIT) as unique_id:
        yield unique_id


def test_a_big_export_follows_the_advice_in_valid_slices(dxl_requester: Requester, misp: Any, small: str) -> None:
    """A 150-attribute event in STIX 2.1 is over the limit: error 5 advises limit and page; the slices
    followed are each a valid bundle under the limit, and together hold every attribute."""
    event = misp.add_event({"info": "big export", "distribution": 0, "Attribute": [
        {"type": "domain", "value": f"n{n:03d}.big-export.example", "to_ids": True} for n in range(150)]},
        pythonify=False)["Event"]
    reply = export(dxl_requester, {"event": event["uuid"], "format": "stix2"}, small)
    assert not reply.ok and reply.error_code == 5 and '"limit" and "page"' in reply.error_message
    limit = 40
    while True:  # "a smaller limit if a slice is still too big"
        first = export(dxl_requester, {"event": event["uuid"], "format": "stix2", "limit": limit, "page": 1}, small)
        if first.ok or first.error_code != 5 or limit == 1:
            break
        limit //= 2
    assert first.ok, first.error_message
    found: set[str] = set()
    page, total = 1, first.payload["slice"]["attributes"]
    while (page - 1) * limit < total:
        reply = export(dxl_requester, {"event": event["uuid"], "format": "stix2", "limit": limit, "page": page},
                       small)
        assert reply.ok, reply.error_message
        assert len(reply.raw) <= LIMIT + 1024 and stix2_errors(reply.payload["document"]) == []
        found |= {o["value"] for o in reply.payload["document"]["objects"] if o["type"] == "domain-name"}
        page += 1
    assert total == 150 and page > 3 and found == {a["value"] for a in event["Attribute"]}
