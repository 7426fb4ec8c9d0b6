"""DXL in and out: a request payload becomes a handler call, and its result a Response or an ErrorResponse.

:class:`RequestHandler` is pure (no DXL) and does the work:

1. decode the payload: UTF-8 JSON that must be an object. An empty payload (no bytes, or only blanks)
   means "no arguments" and is taken as ``{}``; anything else that is not a JSON object is
   :class:`~dxlmispservice.errors.InvalidPayload`;
2. look the api name up in the topic table and call ``handler(misp, payload)``;
3. encode the result as compact JSON, once, and enforce ``maxResponseSize``
   (:class:`~dxlmispservice.errors.ResponseTooLarge` says the size, the limit and how to page). A
   :class:`~dxlmispservice.api.rawjson.RawJson` (MISP's answer as MISP sent it, from :mod:`.rawpath`) is sent
   as it is, its size checked before anything is decoded; it is decoded and encoded like any other answer
   only when it holds the API key, or when it is over the limit but pretty-printed or escaped (compact JSON
   might then fit);
4. map errors: a :class:`~dxlmispservice.errors.MispServiceError` answers with its code, message and
   ``to_payload()``; anything else is logged with its traceback and answered as
   :class:`~dxlmispservice.errors.InternalError` with a generic message and a reference to the log line.

The API key is cut out of every body, message and log line. :class:`DxlRequestCallback` adapts it to
dxlclient.
"""
from __future__ import annotations

import json
import logging
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from dxlclient.callbacks import RequestCallback
from dxlclient.message import ErrorResponse, Request, Response

from dxlmispservice.compat.dxlclient import packet_size, surely_fits, unpack
from dxlmispservice.errors import (ERROR_CODES, InternalError, InvalidPayload, MispServiceError, ResponseTooLarge,
                                   ServiceBusy, redact)
from dxlmispservice.api.rawjson import RawJson

if TYPE_CHECKING:
    from dxlmispservice.misp import MispConnection

logger = logging.getLogger(__name__)

#: What an answer over maxResponseSize advises for a topic that does not say (its handler's
#: ``paging_advice``); :data:`PAGING` for a topic that takes ``limit`` and ``page``.
NO_PAGING = "This topic does not page: narrow the request."
PAGING = ('Ask for it in parts: add "limit" and "page" to the payload (for example {"limit": 100, "page": 1}, '
          'then page 2, ... until a page has fewer than "limit" results), or narrow the request.')

def advises(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a topic handler with the ``paging_advice`` an answer over maxResponseSize gives."""
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.paging_advice = text  # type: ignore[attr-defined]
        return fn
    return mark


#: A topic handler (the topic table's entries): the shared MISP connection and the request payload (a JSON
#: object) in, a JSON-able answer out; failures are raised from :mod:`dxlmispservice.errors`.
Handler = Callable[["MispConnection", dict[str, Any]], Any]


@dataclass(frozen=True)
class Outcome:
    """What to send back: ``ok`` -> a Response with ``body``; else an ErrorResponse with code and message."""

    ok: bool
    body: bytes
    error_code: int = 0
    error_message: str = ""


class RequestHandler:
    """Runs one request through the topic table; never raises."""

    def __init__(self, table: Mapping[str, Handler], misp: Any, *, max_response_size: int,
                 secret: str | None = None) -> None:
        self._table = table
        self._misp = misp
        self._max_response_size = max_response_size
        self._secret = secret
        self._secret_bytes = secret.encode("utf-8") if secret else None
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """Requests handled since the start, by outcome: ``ok`` or the error's name (``invalid_payload``...)."""
        with self._counts_lock:
            return dict(self._counts)

    def handle(self, api_name: str, payload: bytes) -> Outcome:
        """Decode, call, encode; every failure becomes an error Outcome."""
        return self._counted(self._handle(api_name, payload))

    def recount(self, was: Outcome, now: Outcome) -> None:
        """Count ``now`` instead of ``was``: the answer sent was not the one handled (it did not fit)."""
        with self._counts_lock:
            for outcome, step in ((was, -1), (now, 1)):
                name = "ok" if outcome.ok else error_name(outcome.error_code)
                self._counts[name] = self._counts.get(name, 0) + step

    def busy(self, error: MispServiceError) -> Outcome:
        """The error Outcome of a request that was not handled (the service is busy), counted."""
        return self._counted(self._error(error))

    def _counted(self, outcome: Outcome) -> Outcome:
        name = "ok" if outcome.ok else error_name(outcome.error_code)
        with self._counts_lock:
            self._counts[name] = self._counts.get(name, 0) + 1
        return outcome

    def _handle(self, api_name: str, payload: bytes) -> Outcome:
        try:
            return self._ok(self._run(api_name, payload))
        except ResponseTooLarge as exc:  # MISP's answer, cut off as it was read: worded with the topic's advice
            at_least = getattr(exc, "at_least", None)
            return self._error(exc if at_least is None else self._too_large(api_name, at_least, more=True))
        except MispServiceError as exc:
            return self._error(exc)
        except Exception:  # the requester gets a reference, the log gets the traceback
            reference = uuid.uuid4().hex[:12]
            logger.error("Internal error in %s (reference %s):\n%s", api_name, reference,
                         redact(traceback.format_exc(), self._secret))
            return self._error(InternalError(
                f"internal error in the MISP service while handling {api_name}; "
                f"the service log has the details under reference {reference}"))

    def _run(self, api_name: str, payload: bytes) -> bytes:
        handler = self._table.get(api_name)
        if handler is None:
            raise KeyError(f"no handler for the registered api name {api_name!r}")
        result = handler(self._misp, decode_payload(payload))
        return self._encode(result, api_name)

    def _encode(self, result: Any, api_name: str) -> bytes:
        if type(result) is RawJson:
            raw = self._raw(result, api_name)
            if raw is not None:
                return raw
        body = redact(json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=_to_json),
                      self._secret).encode("utf-8")
        if len(body) > self._max_response_size:
            raise self._too_large(api_name, len(body))
        return body

    def _raw(self, result: RawJson, api_name: str) -> bytes | None:
        """MISP's own bytes, sent as they are, or None when they must go the decode-and-encode way: they hold
        the API key (to be cut out), or they are over the limit but might not be once made compact."""
        body = result.body
        if self._secret_bytes is not None and self._secret_bytes in body:
            return None
        if len(body) <= self._max_response_size:
            return body
        if _maybe_loose(body):
            return None
        raise self._too_large(api_name, len(body))

    def _too_large(self, api_name: str, size: int, *, more: bool = False) -> ResponseTooLarge:
        """response_too_large naming the size (``more``: at least that; the rest was not read), the limit
        and the topic's paging advice."""
        said = f"more than {size - 1}" if more else str(size)
        logger.warning("The answer to %s is %s bytes, over maxResponseSize %d: sent response_too_large",
                       api_name, said, self._max_response_size)
        advice = getattr(self._table.get(api_name), "paging_advice", None) or NO_PAGING
        return ResponseTooLarge(
            f"The answer to {api_name} is {said} bytes, more than the service's limit of "
            f"{self._max_response_size} bytes (maxResponseSize). {advice}")

    def _ok(self, body: bytes) -> Outcome:
        return Outcome(ok=True, body=body)

    def _error(self, exc: MispServiceError) -> Outcome:
        message = redact(exc.message, self._secret)
        try:
            text = json.dumps(exc.to_payload(), separators=(",", ":"), ensure_ascii=False, default=_to_json)
        except (TypeError, ValueError):
            text = json.dumps({"code": exc.code, "error": exc.name, "message": message}, separators=(",", ":"))
        return Outcome(ok=False, body=redact(text, self._secret).encode("utf-8"), error_code=exc.code,
                       error_message=message)


#: Bytes that compact JSON (as the handler encodes it) would shorten: a line break (JSON holds one only
#: between tokens, so the body is pretty-printed), a \u escape, an escaped slash.
_LOOSE = (b"\n", b"\\u", b"\\/")


def _maybe_loose(body: bytes) -> bool:
    """True when ``body`` might get shorter as compact JSON: it is pretty-printed or holds escapes that
    compact JSON writes shorter (a quick look at its bytes; a false alarm only costs a decode)."""
    return any(mark in body for mark in _LOOSE)


def _no_constant(name: str) -> Any:
    """json.loads' hook for NaN, Infinity and -Infinity, which are not JSON."""
    raise InvalidPayload(f"the payload holds {name}, which is not a JSON number; send a finite number or a string")


def decode_payload(payload: bytes | str | None) -> dict[str, Any]:
    """The request payload as a dict: empty means ``{}``; it must otherwise be a JSON object. One trailing
    NUL byte (dxlbootstrap's and the C client's habit) is taken as if it were not there; NaN and
    Infinity anywhere are refused."""
    if payload is None:
        return {}
    if isinstance(payload, (bytes, str)) and payload[-1:] in (b"\0", "\0"):
        payload = payload[:-1]
    if isinstance(payload, bytes):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPayload(f"the payload is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                 "send a JSON object") from None
    else:
        text = payload
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except InvalidPayload:
        raise
    except ValueError as exc:
        raise InvalidPayload(f"the payload is not valid JSON ({exc}); send a JSON object") from None
    except RecursionError:  # valid JSON, but nested deeper than Python's decoder goes
        raise InvalidPayload("the payload is nested too deeply to decode; send a flatter JSON object") from None
    if not isinstance(value, dict):
        raise InvalidPayload(f"the payload must be a JSON object, not {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _to_json(value: Any) -> Any:
    """JSON for what ``json`` cannot encode itself: PyMISP objects, dates, sets."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        raise TypeError("a handler returned raw bytes")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def error_name(code: int) -> str:
    """The documented name of an error code (``internal_error`` for one the table does not know)."""
    return ERROR_CODES.get(code, (InternalError.name, ""))[0]


#: The longest error message sent in place of an answer that would not fit the fabric.
_MAX_FITTED_MESSAGE = 1000


def fitted(outcome: Outcome, api_name: str, size: int, limit: int) -> Outcome:
    """What to send instead of ``outcome``, whose packet would be ``size`` bytes, over the fabric's ``limit``:
    an answer becomes response_too_large; an error keeps its code with the service's own small payload
    (MISP's JSON, if it carried it, is left out) and a message cut short."""
    if outcome.ok:
        code = ResponseTooLarge.code
        message = (f"The answer to {api_name} would be {size} bytes on the DXL fabric (envelope and topic "
                   f"included), over fabricMessageLimit {limit}: the broker would disconnect the service. Ask "
                   f"for less: add \"limit\" and \"page\", or narrow the request.")
    else:
        code = outcome.error_code
        message = outcome.error_message[:_MAX_FITTED_MESSAGE]
        if len(outcome.error_message) > _MAX_FITTED_MESSAGE:
            message += " [cut short: the full error was over the fabric's message limit]"
    body = json.dumps({"code": code, "error": error_name(code), "message": message}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    return Outcome(ok=False, body=body, error_code=code, error_message=message)


class BusyAnswer:
    """What answers a request that does not fit the incoming queue: service_busy, sent at once from paho's
    network thread (it only queues the answer for writing), counted with the other outcomes. Anything
    else on a full queue (an event, a response to the service's own registration) waits for room, as
    dxlclient does."""

    def __init__(self, client: Any, handler: RequestHandler, topics: frozenset[str], queue_size: int) -> None:
        self._client = client
        self._handler = handler
        self._topics = topics
        self._message = (f"the MISP service is busy: its incoming queue is full ({queue_size} requests waiting, "
                         "[IncomingMessagePool] queueSize); retry later")

    def __call__(self, topic: str, payload: bytes) -> bool:
        if topic not in self._topics:
            return False
        try:
            request = unpack(payload)
        except Exception:  # not a DXL message: let dxlclient deal with it as it would
            return False
        if not isinstance(request, Request):
            return False
        request.destination_topic = topic
        outcome = self._handler.busy(ServiceBusy(self._message))
        response = ErrorResponse(request, error_code=outcome.error_code, error_message=outcome.error_message)
        response.payload = outcome.body
        try:
            self._client.send_response(response)
        except Exception as exc:  # a lost connection: the requester times out
            logger.error("Could not send service_busy on %s: %s", topic, exc)
        return True


class DxlRequestCallback(RequestCallback):
    """The dxlclient callback for one api name: runs the RequestHandler, sends Response or ErrorResponse,
    never one over ``fabric_limit`` bytes on the fabric (:func:`fitted` replaces it)."""

    def __init__(self, client: Any, handler: RequestHandler, api_name: str, *,
                 fabric_limit: int | None = None) -> None:
        super().__init__()
        self._client = client
        self._handler = handler
        self._api_name = api_name
        self._fabric_limit = fabric_limit

    def _response(self, request: Request, outcome: Outcome) -> Response:
        if outcome.ok:
            response: Response = Response(request)
        else:
            response = ErrorResponse(request, error_code=outcome.error_code, error_message=outcome.error_message)
        response.payload = outcome.body
        return response

    def on_request(self, request: Request) -> None:
        """Answer ``request`` (on the incoming message thread)."""
        outcome = self._handler.handle(self._api_name, request.payload)
        response = self._response(request, outcome)
        if self._fabric_limit is not None and not surely_fits(response, self._fabric_limit):
            size = packet_size(response)
            if size > self._fabric_limit:
                logger.warning("The answer to %s would be %d bytes on the fabric, over fabricMessageLimit %d: "
                               "sent a short error instead", self._api_name, size, self._fabric_limit)
                replacement = fitted(outcome, self._api_name, size, self._fabric_limit)
                self._handler.recount(outcome, replacement)
                response = self._response(request, replacement)
        try:
            self._client.send_response(response)
        except Exception as exc:  # a lost connection: dxlclient logs it too; the requester times out
            logger.error("Could not send the answer to %s: %s", self._api_name, exc)
