"""RequestHandler and DxlRequestCallback: JSON in and out, the size limit, and the error mapping."""
from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

import pytest
from dxlclient.message import ErrorResponse, Message, Request, Response
from pymisp import MISPEvent

from dxlmispservice.errors import (InternalError, InvalidArguments, InvalidPayload, MispRefused,
                                   MispUnavailable, ResponseTooLarge)
from dxlmispservice.api.handler import PAGING, DxlRequestCallback, Outcome, RequestHandler, advises, decode_payload
from dxlmispservice.compat.dxlclient import packet_size
from dxlmispservice.api.rawjson import RawJson

KEY = "handlerKey0123456789abcdefghijklmnopqrs"
REFUSAL = {"name": "Invalid event", "message": "Invalid event", "url": "/events/view/9"}


class FakeMisp:
    """Stands in for MispConnection: handlers only pass it around here."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []


def echo(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    misp.seen.append(payload)
    return payload


@advises(PAGING)
def sized(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    return {"data": "x" * payload["n"]}


def unpaged(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    return {"data": "x" * payload["n"]}


def boom(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    raise RuntimeError(f"database exploded with key {KEY}")


def refuse(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    raise MispRefused("MISP refused the call (HTTP 404): Invalid event", status=404, payload=REFUSAL)


def unavailable(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    raise MispUnavailable(f"cannot reach MISP with {KEY}")


def bad_args(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    raise InvalidArguments("unknown argument 'evnt'; accepted: event, value")


def leaky(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    return {"authkey": KEY}


def objects(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    event = MISPEvent()
    event.info = "pythonified"
    return {"event": event, "day": date(2024, 1, 31), "tags": {"b", "a"}}


def raw_bytes(misp: FakeMisp, payload: dict[str, Any]) -> Any:
    return b"\x00\x01"


TABLE = {f.__name__: f for f in (echo, sized, unpaged, boom, refuse, unavailable, bad_args, leaky, objects, raw_bytes)}


@pytest.fixture()
def misp() -> FakeMisp:
    return FakeMisp()


@pytest.fixture()
def handler(misp: FakeMisp) -> RequestHandler:
    return RequestHandler(TABLE, misp, max_response_size=1024, secret=KEY)


def body(outcome: Outcome) -> Any:
    return json.loads(outcome.body)


def test_object_payload_reaches_handler_and_answer_is_compact_json(handler: RequestHandler,
                                                                   misp: FakeMisp) -> None:
    """A JSON object payload is passed as a dict; the answer is compact UTF-8 JSON."""
    outcome = handler.handle("echo", '{"event": 5, "info": "café"}'.encode())
    assert outcome.ok and outcome.error_code == 0
    assert misp.seen == [{"event": 5, "info": "café"}]
    assert outcome.body == '{"event":5,"info":"café"}'.encode()


@pytest.mark.parametrize("payload", [b"", b"  \n", None])
def test_empty_payload_is_an_empty_object(handler: RequestHandler, misp: FakeMisp, payload: bytes | None) -> None:
    """An empty payload means no arguments: the handler gets {}."""
    assert handler.handle("echo", payload).ok  # type: ignore[arg-type]
    assert misp.seen == [{}]


@pytest.mark.parametrize("payload,words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not an array"),
    (b'"text"', "not a string"),
    (b"42", "not a number"),
    (b"null", "not null"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_bad_payload_is_invalid_payload(handler: RequestHandler, misp: FakeMisp, payload: bytes,
                                        words: str) -> None:
    """A payload that is not a JSON object answers invalid_payload, and the handler is not called."""
    outcome = handler.handle("echo", payload)
    assert not outcome.ok
    assert outcome.error_code == InvalidPayload.code
    assert words in outcome.error_message
    assert body(outcome) == {"code": InvalidPayload.code, "error": "invalid_payload",
                             "message": outcome.error_message}
    assert misp.seen == []


def test_too_large_names_size_limit_and_paging(handler: RequestHandler) -> None:
    """An answer over maxResponseSize becomes response_too_large naming the size, the limit and limit/page."""
    size = len(json.dumps({"data": "x" * 2000}, separators=(",", ":")))
    outcome = handler.handle("sized", b'{"n": 2000}')
    assert not outcome.ok and outcome.error_code == ResponseTooLarge.code
    for words in (f"{size} bytes", "1024 bytes", "maxResponseSize", '"limit"', '"page"'):
        assert words in outcome.error_message
    assert body(outcome)["error"] == "response_too_large"


def test_too_large_on_a_topic_that_does_not_page_says_so(handler: RequestHandler) -> None:
    """A topic with no paging advice is told to narrow the request, not to add limit and page."""
    outcome = handler.handle("unpaged", b'{"n": 2000}')
    assert "does not page: narrow the request" in outcome.error_message and '"page"' not in outcome.error_message


def test_answer_at_the_limit_is_sent(handler: RequestHandler) -> None:
    """An answer of exactly maxResponseSize bytes is sent as it is."""
    overhead = len(json.dumps({"data": ""}, separators=(",", ":")))
    outcome = handler.handle("sized", json.dumps({"n": 1024 - overhead}).encode())
    assert outcome.ok and len(outcome.body) == 1024


def test_unexpected_exception_is_internal_error(handler: RequestHandler, caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception answers a generic internal_error; the log has the traceback, without the key."""
    with caplog.at_level(logging.ERROR, logger="dxlmispservice.api.handler"):
        outcome = handler.handle("boom", b"{}")
    assert not outcome.ok and outcome.error_code == InternalError.code
    assert "database exploded" not in outcome.error_message and KEY not in outcome.body.decode()
    reference = outcome.error_message.rsplit(" ", 1)[1]
    logged = caplog.text
    assert reference in logged and "Traceback" in logged and "database exploded" in logged
    assert KEY not in logged


def test_refused_payload_is_misps_json(handler: RequestHandler) -> None:
    """MispRefused answers misp_refused with MISP's own error JSON as the payload."""
    outcome = handler.handle("refuse", b"{}")
    assert (outcome.ok, outcome.error_code) == (False, MispRefused.code)
    assert "HTTP 404" in outcome.error_message
    assert body(outcome) == REFUSAL


@pytest.mark.parametrize("name,error", [("unavailable", MispUnavailable), ("bad_args", InvalidArguments)])
def test_service_errors_keep_code_and_message(handler: RequestHandler, name: str, error: type) -> None:
    """A MispServiceError answers its own code and message, with the key cut out."""
    outcome = handler.handle(name, b"{}")
    assert outcome.error_code == error.code
    assert KEY not in outcome.error_message and KEY not in outcome.body.decode()
    assert body(outcome)["error"] == error.name


def test_key_cut_from_successful_answers(handler: RequestHandler) -> None:
    """Even a successful answer never carries the API key."""
    outcome = handler.handle("leaky", b"{}")
    assert outcome.ok and KEY not in outcome.body.decode()


def test_pymisp_objects_dates_and_sets_are_encoded(handler: RequestHandler) -> None:
    """PyMISP objects, dates and sets in a result are encoded as JSON."""
    outcome = handler.handle("objects", b"{}")
    assert outcome.ok
    answer = body(outcome)
    assert answer["event"]["info"] == "pythonified"
    assert (answer["day"], answer["tags"]) == ("2024-01-31", ["a", "b"])


def test_raw_bytes_result_is_internal_error(handler: RequestHandler) -> None:
    """A handler returning raw bytes is a bug: internal_error."""
    assert handler.handle("raw_bytes", b"{}").error_code == InternalError.code


def raw_handler(body: bytes, limit: int = 1024) -> RequestHandler:
    """A handler whose one topic ``raw`` answers ``RawJson(body)``."""
    return RequestHandler({"raw": lambda misp, payload: RawJson(body)}, FakeMisp(), max_response_size=limit,
                          secret=KEY)


def test_raw_json_is_sent_as_it_is() -> None:
    """A RawJson answer goes out byte for byte (blanks and escapes included), not re-encoded."""
    raw = b'{"Event": {"id": "1", "info": "caf\\u00e9 \\/x"}}'
    outcome = raw_handler(raw).handle("raw", b"{}")
    assert outcome.ok and outcome.body == raw


def test_raw_json_over_the_limit_fails_before_any_decode() -> None:
    """A compact RawJson over maxResponseSize is response_too_large at once, naming its size: its bytes are
    never decoded (these are not even valid JSON)."""
    raw = b'{"Event":{"Attribute":[' + b'{"value":"10.0.0.1"},' * 100 + b"!!"
    outcome = raw_handler(raw).handle("raw", b"{}")
    assert outcome.error_code == ResponseTooLarge.code and f"{len(raw)} bytes" in outcome.error_message


def test_pretty_raw_json_over_the_limit_is_measured_compact() -> None:
    """A pretty-printed RawJson over the limit is measured as the compact JSON the service would send: sent
    compact when that fits, response_too_large with the compact size when it does not."""
    value = {"Event": {"Attribute": [{"value": f"10.0.0.{i}"} for i in range(30)]}}
    raw = json.dumps(value, indent=4).encode()
    compact = json.dumps(value, separators=(",", ":")).encode()
    assert len(compact) < 1024 < len(raw)
    outcome = raw_handler(raw).handle("raw", b"{}")
    assert outcome.ok and outcome.body == compact
    outcome = raw_handler(raw, limit=len(compact) - 1).handle("raw", b"{}")
    assert outcome.error_code == ResponseTooLarge.code and f"{len(compact)} bytes" in outcome.error_message


def test_key_cut_from_raw_json() -> None:
    """A RawJson that holds the API key is decoded and re-encoded with the key cut out."""
    outcome = raw_handler(json.dumps({"User": {"authkey": KEY}}).encode()).handle("raw", b"{}")
    assert outcome.ok and KEY not in outcome.body.decode() and body(outcome) == {"User": {"authkey": "<redacted>"}}


def test_raw_json_inside_another_answer_is_encoded() -> None:
    """A RawJson nested in a larger answer is encoded as the object it holds."""
    handler = RequestHandler({"nested": lambda misp, payload: [RawJson(b'{"a": 1}')]}, FakeMisp(),
                             max_response_size=1024)
    assert handler.handle("nested", b"{}").body == b'[{"a":1}]'


def test_unknown_api_name_is_internal_error(handler: RequestHandler) -> None:
    """An api name missing from the table (a wiring bug) answers internal_error."""
    assert handler.handle("nope", b"{}").error_code == InternalError.code


def test_decode_payload_accepts_str() -> None:
    """decode_payload takes text too."""
    assert decode_payload('{"a": 1}') == {"a": 1}


class FakeDxlClient:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Message] = []
        self.fail = fail

    def send_response(self, response: Message) -> None:
        if self.fail:
            raise RuntimeError("not connected")
        self.sent.append(response)


def request(payload: bytes) -> Request:
    req = Request("/opendxl-misp/service/misp-api/echo")
    req.payload = payload
    return req


def test_callback_sends_response(misp: FakeMisp) -> None:
    """DxlRequestCallback answers a good request with a Response carrying the JSON body."""
    client = FakeDxlClient()
    DxlRequestCallback(client, RequestHandler(TABLE, misp, max_response_size=1024), "echo").on_request(
        request(b'{"a": 1}'))
    (sent,) = client.sent
    assert type(sent) is Response and sent.payload == b'{"a":1}'


def test_callback_sends_error_response(misp: FakeMisp) -> None:
    """DxlRequestCallback answers a failure with an ErrorResponse: code, message and JSON payload."""
    client = FakeDxlClient()
    req = request(b"{}")
    DxlRequestCallback(client, RequestHandler(TABLE, misp, max_response_size=1024), "refuse").on_request(req)
    (sent,) = client.sent
    assert isinstance(sent, ErrorResponse)
    assert (sent.error_code, sent.request_message_id) == (MispRefused.code, req.message_id)
    assert "HTTP 404" in sent.error_message and json.loads(sent.payload) == REFUSAL


def test_callback_survives_send_failure(misp: FakeMisp, caplog: pytest.LogCaptureFixture) -> None:
    """A failure to send the answer is logged, not raised into dxlclient's thread."""
    callback = DxlRequestCallback(FakeDxlClient(fail=True), RequestHandler(TABLE, misp, max_response_size=1024),
                                  "echo")
    with caplog.at_level(logging.ERROR, logger="dxlmispservice.api.handler"):
        callback.on_request(request(b"{}"))
    assert "not connected" in caplog.text


def test_one_trailing_nul_byte_is_ignored() -> None:
    """A payload ending in one NUL byte decodes as if it were not there; two are still invalid."""
    assert decode_payload(b'{"a": 1}\0') == {"a": 1}
    assert decode_payload(b"\0") == {}
    with pytest.raises(InvalidPayload):
        decode_payload(b'{"a": 1}\0\0')


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": [1, Infinity]}', b'{"a": {"b": -Infinity}}'])
def test_nan_and_infinity_are_invalid_payload(raw: bytes) -> None:
    """NaN, Infinity and -Infinity anywhere in a payload are invalid_payload naming the constant."""
    with pytest.raises(InvalidPayload, match="not a JSON number"):
        decode_payload(raw)


def test_an_answer_over_the_fabric_limit_is_sent_as_response_too_large(misp: FakeMisp) -> None:
    """An answer under maxResponseSize whose packet (envelope and topic included) is over the fabric's
    limit goes out as a short response_too_large error that fits, naming both sizes."""
    client = FakeDxlClient()
    handler = RequestHandler(TABLE, misp, max_response_size=200_000)
    DxlRequestCallback(client, handler, "sized", fabric_limit=70_000).on_request(request(b'{"n": 69950}'))
    (sent,) = client.sent
    assert isinstance(sent, ErrorResponse) and sent.error_code == 5
    assert "over fabricMessageLimit 70000" in sent.error_message and packet_size(sent) <= 70_000
    assert json.loads(sent.payload)["error"] == "response_too_large"


def test_an_answer_just_under_the_fabric_limit_is_sent_whole(misp: FakeMisp) -> None:
    """The limit counts the whole packet: an answer whose packet is at the limit is sent as it is."""
    client = FakeDxlClient()
    handler = RequestHandler(TABLE, misp, max_response_size=200_000)
    DxlRequestCallback(client, handler, "sized", fabric_limit=70_000).on_request(request(b'{"n": 69000}'))
    (sent,) = client.sent
    assert type(sent) is Response and packet_size(sent) <= 70_000


def test_an_error_over_the_fabric_limit_keeps_its_code_and_drops_misps_json(misp: FakeMisp) -> None:
    """A misp_refused whose MISP JSON would not fit keeps code 3 and a short message, without that JSON."""
    def big_refusal(misp: FakeMisp, payload: dict[str, Any]) -> Any:
        raise MispRefused("MISP refused the call (HTTP 403): " + "x" * 5000, status=403,
                          payload={"errors": ["y" * 100_000]})

    client = FakeDxlClient()
    handler = RequestHandler({"big": big_refusal}, misp, max_response_size=200_000)
    DxlRequestCallback(client, handler, "big", fabric_limit=70_000).on_request(request(b"{}"))
    (sent,) = client.sent
    assert isinstance(sent, ErrorResponse) and sent.error_code == 3 and packet_size(sent) <= 70_000
    assert sent.error_message.endswith("[cut short: the full error was over the fabric's message limit]")
    assert json.loads(sent.payload)["error"] == "misp_refused"


def test_a_request_that_does_not_fit_the_queue_is_answered_service_busy(misp: FakeMisp) -> None:
    """BusyAnswer answers a request on a served topic with service_busy at once and counts it; an event
    or a topic the service does not serve is left to dxlclient."""
    from dxlclient.message import Event

    from dxlmispservice.api.handler import BusyAnswer

    client = FakeDxlClient()
    handler = RequestHandler(TABLE, misp, max_response_size=1024)
    busy = BusyAnswer(client, handler, frozenset({"/opendxl-misp/service/misp-api/echo"}), 50)
    req = request(b"{}")
    assert busy("/opendxl-misp/service/misp-api/echo", req._to_bytes())
    (sent,) = client.sent
    assert isinstance(sent, ErrorResponse) and sent.error_code == 7 and sent.request_message_id == req.message_id
    assert "incoming queue is full (50 requests waiting" in sent.error_message
    assert json.loads(sent.payload)["error"] == "service_busy" and handler.counts() == {"service_busy": 1}
    assert not busy("/other/topic", req._to_bytes())
    event = Event("/opendxl-misp/service/misp-api/echo")
    event.payload = b"{}"
    assert not busy("/opendxl-misp/service/misp-api/echo", event._to_bytes()) and len(client.sent) == 1
