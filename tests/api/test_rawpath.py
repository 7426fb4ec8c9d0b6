"""The raw path (rawpath, MispConnection.fetch, RawJson) gives what the PyMISP path gives: the same requests to
MISP, the same answers and the same errors (dev MISP server in-process, and a scripted HTTP stub)."""
from __future__ import annotations

import inspect
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymisp import PyMISP

from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import serve
from dxlmispservice.api import legacy
from dxlmispservice.api import rawpath
from dxlmispservice.errors import InvalidArguments, MispRefused, MispServiceError, MispUnavailable, ResponseTooLarge
from dxlmispservice.misp import MispConnection
from dxlmispservice.api.rawjson import RawJson
from dxlmispservice.settings import Settings
from tests.mispstub import MispStub, settings_for


class ViaPyMISP:
    """The same MispConnection seen through ``call`` only: legacy then takes the PyMISP path."""

    def __init__(self, client: MispConnection) -> None:
        self.client = client

    def call(self, fn: Callable[[PyMISP], Any]) -> Any:
        return self.client.call(fn)


class Recorder:
    """Records every request the client's PyMISP session sends: method, URL, JSON body, headers, settings
    (bar ``stream``: the raw path streams the answer so as to stop reading at maxResponseSize)."""

    def __init__(self, client: MispConnection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[dict[str, Any]] = []
        session = client.call(lambda pymisp: pymisp.session)
        send = session.send

        def recording(prepared: Any, **kwargs: Any) -> Any:
            body = prepared.body
            self.sent.append({"method": prepared.method, "url": prepared.url, "headers": dict(prepared.headers),
                              "body": None if body is None else json.loads(body),
                              "settings": {k: v for k, v in kwargs.items() if k != "stream"}})
            return send(prepared, **kwargs)

        monkeypatch.setattr(session, "send", recording)

    def take(self) -> list[dict[str, Any]]:
        sent, self.sent = self.sent, []
        return sent


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """An answer as plain JSON, or an error as its class, code, status, message and payload (any other
    exception as its class and text)."""
    try:
        value = fn()
    except MispServiceError as exc:
        return ("error", type(exc), exc.code, getattr(exc, "status", None), exc.message, exc.to_payload())
    except Exception as exc:  # PyMISP's own TypeError on a value it cannot read: the same on both paths
        return ("raised", type(exc), str(exc))
    return ("ok", value.to_dict() if isinstance(value, RawJson) else value)


@pytest.fixture(scope="module")
def real() -> Iterator[MispConnection]:
    """A real MispConnection on the dev MISP server served in-process, with two events in it."""
    key = secrets.token_hex(20)
    with serve(MispModels(), admin_key=key) as server:
        client = MispConnection(Settings(misp_url=server.url, api_key=key))
        for info in ("raw path one", "raw path two"):
            event = legacy.new_event(client, {"info": info, "distribution": 0, "threat_level_id": 2})
            event_id = event["Event"]["id"]
            legacy.add_named_attribute(client, {"event": event_id, "type_value": "ip-dst",
                                                "value": ["10.9.8.7", "10.9.8.6"], "to_ids": True})
            added = legacy.add_internal_comment(client, {"event": event_id, "reference": "café ☕ \"quoted\""})
            uuid = added[0]["Attribute"]["uuid"]
            legacy.tag(client, {"uuid": uuid, "tag": "tlp:green"})
            legacy.sighting(client, {"uuid": uuid, "type": "0", "source": "raw test"})
        yield client


@pytest.fixture(scope="module")
def event(real: MispConnection) -> dict[str, Any]:
    return legacy.search(ViaPyMISP(real), {"eventinfo": "raw path one"})["response"][0]["Event"]


# --- answers ---------------------------------------------------------------------------------------------
GET_EVENT_PAYLOADS = [{"event_id": "{id}"}, {"event": "{uuid}"}, {"event_id": "{id}", "extended": True},
                      {"event_id": "{id}", "deleted": [0, 1], "no_sightings": True}, {"event_id": "{id}", "deleted": 1}]


def fill(payload: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {key: value.format(**event) if isinstance(value, str) else value for key, value in payload.items()}


@pytest.mark.parametrize("payload", GET_EVENT_PAYLOADS)
def test_get_event_answer_equals_pymisp(real: MispConnection, event: dict[str, Any], payload: dict[str, Any]) -> None:
    """get_event answers MISP's bytes as a RawJson whose JSON equals the PyMISP path's answer."""
    payload = fill(payload, event)
    answer = legacy.get_event(real, payload)
    assert type(answer) is RawJson
    assert outcome(lambda: answer) == outcome(lambda: legacy.get_event(ViaPyMISP(real), payload))
    assert answer["Event"]["id"] == event["id"]


SEARCH_PAYLOADS = [
    {"eventid": "{id}"},
    {"controller": "attributes", "eventid": "{id}"},
    {"controller": "attributes", "value": "10.9.8.7", "include_sightings": True, "limit": 1, "page": 2},
    {"values": ["10.9.8.7", "10.9.8.6"], "not_values": "10.9.8.6"},
    {"tags": "tlp:green", "controller": "attributes", "includeEventUuid": 1},
    {"eventinfo": "raw path two", "metadata": True},
    {"uuid": "{uuid}", "returnFormat": "json", "published": False},
    {"type_attribute": "comment", "controller": "attributes", "to_ids": "0"},
    {"eventid": "987654"},
]


@pytest.mark.parametrize("payload", SEARCH_PAYLOADS)
def test_search_answer_equals_pymisp(real: MispConnection, event: dict[str, Any], payload: dict[str, Any]) -> None:
    """search on the events and attributes controllers answers a RawJson equal to the PyMISP path's answer."""
    payload = fill(payload, event)
    answer = legacy.search(real, payload)
    assert type(answer) is RawJson and set(answer) == {"response"}
    assert outcome(lambda: answer) == outcome(lambda: legacy.search(ViaPyMISP(real), payload))


# --- requests --------------------------------------------------------------------------------------------
REQUEST_PAYLOADS = SEARCH_PAYLOADS + [
    {"date_from": "2020-01-01", "date_to": 0, "last": "7d", "timestamp": ["14d", "7d"], "event_timestamp": 17},
    {"publish_timestamp": ["30d", "1d"], "timestamp": "2d", "to_ids": True, "deleted": [0, 1], "org": "ORGNAME"},
    {"with_attachments": True, "withAttachments": "0", "enforce_warninglist": 1, "enforceWarninglist": None},
    {"include_sightings": True, "includeSightings": 0, "include_context": False, "includeDecayScore": True,
     "include_correlations": "1", "exclude_decayed": 0, "sg_reference_only": True, "headerless": 0,
     "include_event_uuid": 1, "includeEventTags": True, "includeContext": "1", "includeCorrelations": False,
     "include_decay_score": 0, "include_event_tags": 0},
    {"quick_filter": "x", "quickFilter": "y", "searchall": "%x%", "requested_attributes": "value",
     "object_name": "file", "sharinggroup": [1, 2], "event_tags": ["a"], "category": "Other"},
    {"includeWarninglistHits": True, "includeProposals": 1, "tags": {"OR": ["a"], "NOT": ["b"]}, "limit": 3},
]


@pytest.mark.parametrize("payload", REQUEST_PAYLOADS)
def test_search_request_equals_pymisp(real: MispConnection, event: dict[str, Any], payload: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw path sends PyMISP's request: method, URL, headers, JSON body and verify/cert/timeout/proxies."""
    payload = fill(payload, event)
    recorder = Recorder(real, monkeypatch)
    raw = outcome(lambda: legacy.search(real, payload))
    raw_sent = recorder.take()
    assert outcome(lambda: legacy.search(ViaPyMISP(real), payload)) == raw
    assert len(raw_sent) == 1 and raw_sent == recorder.take()


@pytest.mark.parametrize("payload", GET_EVENT_PAYLOADS)
def test_get_event_request_equals_pymisp(real: MispConnection, event: dict[str, Any], payload: dict[str, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """get_event sends PyMISP's request: GET, or POST with deleted/extended; noSightings in the URL."""
    payload = fill(payload, event)
    recorder = Recorder(real, monkeypatch)
    legacy.get_event(real, payload)
    raw_sent = recorder.take()
    legacy.get_event(ViaPyMISP(real), payload)
    assert len(raw_sent) == 1 and raw_sent == recorder.take()


def test_slow_preparation_sends_the_same_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """With [Proxies] set (trust_env on) or a cookie in the session, each call is prepared by the session
    itself, and the request still equals PyMISP's, cookie included."""
    key = secrets.token_hex(20)
    with serve(MispModels(), admin_key=key) as server:
        parser_sections = "[Proxies]\nhttps=http://proxy.test:3128\n"
        client = MispConnection(settings_for(server.url, key, sections=parser_sections))
        event_id = legacy.new_event(client, {"info": "slow", "distribution": 0})["Event"]["id"]
        session = client.call(lambda pymisp: pymisp.session)
        assert session.trust_env is True
        recorder = Recorder(client, monkeypatch)
        for cookie in (None, "abc"):
            if cookie:
                session.cookies.set("MISP-session", cookie)
            for call in (legacy.get_event, legacy.search):
                assert type(call(client, {"eventid" if call is legacy.search else "event_id": event_id})) is RawJson
                raw_sent = recorder.take()
                call(ViaPyMISP(client), {"eventid" if call is legacy.search else "event_id": event_id})
                assert raw_sent == recorder.take()
                assert raw_sent[0]["headers"].get("Cookie") == (f"MISP-session={cookie}" if cookie else None)


# --- what the raw path leaves to PyMISP ------------------------------------------------------------------
INEXACT = [("objects", "json", {}), ("events", "csv", {}), ("events", "stix-xml", {}),
           ("attributes", "json", {"to_ids": 5}), ("events", "json", {"metadata": "yes"}),
           ("events", "json", {"timestamp": ["1d"]}), ("events", "json", {"include_sightings": [1]}),
           ("events", "json", {"unknown_keyword": 1})]


@pytest.mark.parametrize("controller, return_format, args", INEXACT)
def test_inexact_searches_are_left_to_pymisp(controller: str, return_format: str, args: dict[str, Any]) -> None:
    """Another controller or format, or a value PyMISP would refuse or convert otherwise, gets no raw body."""
    assert rawpath.search_body(controller, return_format, args, {}) is None


@pytest.mark.parametrize("payload", [{"controller": "objects", "eventid": "1"}, {"returnFormat": "csv"},
                                     {"to_ids": 5}, {"metadata": "yes"}, {"include_sightings": [1]}])
def test_inexact_searches_answer_as_pymisp(real: MispConnection, payload: dict[str, Any]) -> None:
    """Such payloads answer (or fail) exactly as the PyMISP path does."""
    assert outcome(lambda: legacy.search(real, payload)) == outcome(lambda: legacy.search(ViaPyMISP(real), payload))


def test_bad_search_flag_is_invalid_arguments_naming_the_key(real: MispConnection) -> None:
    """A flag that is not true/false is refused as invalid_arguments naming the key, before MISP is asked."""
    with pytest.raises(InvalidArguments, match="'metadata' must be true or false"):
        legacy.search(real, {"metadata": "yes"})


def test_raw_names_cover_pymisp_search() -> None:
    """Every PyMISP.search keyword (bar controller, return_format, pythonify) has its restSearch mapping."""
    names = set(inspect.signature(PyMISP.search).parameters) - {"self", "controller", "return_format",
                                                                  "pythonify", "kwargs"}
    assert names == set(rawpath.KNOWN)


def test_test_stand_ins_take_the_pymisp_path() -> None:
    """Only the real MispConnection is given raw requests."""
    assert not rawpath.supported(object()) and not rawpath.supported(ViaPyMISP(None))  # type: ignore[arg-type]


# --- errors and odd answers, against a scripted MISP --------------------------------------------------------
ODD_ANSWERS = [
    (404, {"name": "Invalid event", "message": "Invalid event", "url": "/events/view/5"}, "application/json"),
    (403, {"saved": False, "name": "No", "errors": {"value": ["bad"]}}, "application/json"),
    (405, b"<html>Method Not Allowed</html>", "text/html"),
    (500, b"boom", "text/plain"),
    (503, b"<html>down</html>", "text/html"),
    (200, b"<html>login</html>", "text/html"),
    (200, b"", "application/json"),
    (200, b'"just text"', "application/json"),
    (200, b"17", "application/json"),
    (200, b'{"response": {"Event": {"id": "5"}}}', "application/json"),
    (200, b'{"response": null}', "application/json"),
    (200, b'{"response": "text"}', "application/json"),
    (200, b'{"Event": {"id": "5"}, "extra": 1}', "application/json"),
    (200, b'  {\n  "Event": {"id": "5", "info": "caf\\u00e9"}\n}\n', "application/json"),
    (200, b'\xef\xbb\xbf{"Event": {"id": "5"}}', "application/json"),
    (200, b'[{"Event": {"id": "5"}}]', "application/json"),
    (200, b'{"Attribute": []}', "application/json"),
]


@pytest.mark.parametrize("status, body, ctype", ODD_ANSWERS)
def test_get_event_answers_and_errors_map_as_pymisp(stub: MispStub, status: int, body: Any, ctype: str) -> None:
    """Whatever MISP answers events/view with, the raw path answers or fails as the PyMISP path does."""
    stub.route("events/view/5", status, body, ctype)
    client = MispConnection(settings_for(stub.url))
    assert outcome(lambda: legacy.get_event(client, {"event_id": 5})) == \
        outcome(lambda: legacy.get_event(ViaPyMISP(client), {"event_id": 5}))


@pytest.mark.parametrize("status, body, ctype", ODD_ANSWERS)
@pytest.mark.parametrize("controller", ["events", "attributes"])
def test_search_answers_and_errors_map_as_pymisp(stub: MispStub, status: int, body: Any, ctype: str,
                                                 controller: str) -> None:
    """Whatever MISP answers restSearch with, the raw path answers or fails as the PyMISP path does."""
    stub.route(f"{controller}/restSearch", status, body, ctype)
    client = MispConnection(settings_for(stub.url))
    payload = {"controller": controller, "eventid": 5}
    assert outcome(lambda: legacy.search(client, payload)) == outcome(lambda: legacy.search(ViaPyMISP(client), payload))


def test_bare_list_answer_is_wrapped_without_decoding(stub: MispStub) -> None:
    """A restSearch answer that is a bare list comes back as {"response": [...]} built around MISP's bytes."""
    stub.route("events/restSearch", 200, b'[{"Event": {"id": "5"}}]')
    answer = legacy.search(MispConnection(settings_for(stub.url)), {"eventid": 5})
    assert type(answer) is RawJson and answer.body == b'{"response":[{"Event": {"id": "5"}}]}'


@pytest.mark.parametrize("route", [("events/view/8", 0, b""), ("events/view/6", -1, b'{"Event": {"id": "6"')])
def test_timeout_and_cut_short_map_as_pymisp(stub: MispStub, route: tuple[str, int, bytes]) -> None:
    """A MISP that does not answer in time, or cuts its answer short, is misp_unavailable on both paths."""
    stub.route(*route)
    client = MispConnection(settings_for(stub.url, extra="requestTimeout=0.3"))
    event_id = int(route[0].rsplit("/", 1)[1])
    raw = outcome(lambda: legacy.get_event(client, {"event_id": event_id}))
    assert raw[1] is MispUnavailable
    assert raw == outcome(lambda: legacy.get_event(ViaPyMISP(client), {"event_id": event_id}))


def test_misp_gone_is_unavailable(stub: MispStub) -> None:
    """MISP going away after the build is misp_unavailable naming MISP's URL, as on the PyMISP path."""
    client = MispConnection(settings_for(stub.url))
    client.call(lambda pymisp: pymisp)
    stub.close()
    with pytest.raises(MispUnavailable) as caught:
        client.fetch("GET", "events/view/1")
    assert caught.value.message.startswith(f"cannot reach MISP at {stub.url}: ConnectionError")


def test_refusal_keeps_status_body_and_hides_the_key(stub: MispStub) -> None:
    """A 4xx is misp_refused with MISP's status and JSON; a key MISP echoes is cut from the message."""
    key = settings_for(stub.url).api_key
    body = {"name": "Forbidden", "message": f"key {key} may not read this"}
    stub.route("events/view/3", 403, body)
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispRefused) as caught:
        client.fetch("GET", "events/view/3")
    assert caught.value.status == 403 and caught.value.payload == body
    assert key not in caught.value.message and "<redacted>" in caught.value.message


def test_fetch_builds_pymisp_first(stub: MispStub) -> None:
    """The raw path builds the shared PyMISP when nothing is built yet, like any call."""
    stub.route("events/view/9", 200, {"Event": {"id": "9"}})
    client = MispConnection(settings_for(stub.url))
    assert json.loads(client.fetch("GET", "events/view/9")) == {"Event": {"id": "9"}}
    assert client.built and "users/view/me" in stub.requests


def test_an_answer_over_max_response_size_is_not_read_to_its_end(stub: MispStub) -> None:
    """A 200 MB answer is response_too_large once maxResponseSize + 1 bytes are in: the service stops
    reading, so MISP gets to write only a little more than that (socket buffers), not the 200 MB."""
    stub.route("events/view/5", -2, b'{"Event": {"id": "5"}},' * 1000)
    client = MispConnection(settings_for(stub.url, extra="maxResponseSize=100000"))
    with pytest.raises(ResponseTooLarge, match="more than 100000 bytes"):
        client.fetch("GET", "events/view/5")
    time.sleep(0.5)  # let the stub notice the closed connection (no time is asserted on)
    assert stub.streamed < 50_000_000
    assert json.loads(client.fetch("GET", "servers/getVersion")) == {"version": "2.5.1"}  # the next call is fine


# --- RawJson ---------------------------------------------------------------------------------------------
def test_rawjson_reads_as_its_json_object() -> None:
    """A RawJson keeps its bytes and reads as the object they hold (equal to a dict, indexable)."""
    answer = RawJson(b'{"Event": {"id": "1", "Attribute": []}}')
    assert answer == {"Event": {"id": "1", "Attribute": []}}
    assert answer["Event"]["id"] == "1" and list(answer) == ["Event"] and len(answer) == 1
    assert answer.body == b'{"Event": {"id": "1", "Attribute": []}}'


def test_rawjson_of_a_non_object_is_refused_when_read() -> None:
    """Reading a RawJson whose bytes are not a JSON object raises ValueError."""
    with pytest.raises(ValueError):
        RawJson(b"[1, 2]").to_dict()
