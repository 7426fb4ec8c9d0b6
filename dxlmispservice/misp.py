"""The one shared PyMISP client, built lazily and tuned, with MISP's failures mapped to service errors.

PyMISP's constructor talks to MISP (version, current user, attribute types), so :class:`MispConnection` builds
it on first use, under a lock, and builds it again on the next call after a failed build. The service thus
starts and registers while MISP is down, answers "MISP unavailable" meanwhile, and serves normally once
MISP is back, with no restart.

The session is tuned before PyMISP sends its first request (:mod:`dxlmispservice.transport`).

Mapping (:meth:`MispConnection.call`):

- a result ``{"errors": (status, body)}`` (PyMISP's form of a 4xx with a JSON body), or a 4xx without
  a JSON body, or a 4xx while PyMISP builds (a wrong key) -> :class:`~dxlmispservice.errors.MispRefused`
  with MISP's status and body;
- PyMISP failing (KeyError, TypeError...) on a 4xx answer it read as a result (``tags`` reads
  ``answer["Tag"]`` even from MISP's ``{"errors": ...}``) -> MispRefused with that status and body;
- a 5xx, a connection error or timeout (any requests exception), an answer that is not JSON, or a
  failed build ->
  :class:`~dxlmispservice.errors.MispUnavailable`.

:meth:`MispConnection.fetch` is the raw path for the hottest read calls: one request on PyMISP's own session
(:class:`RawSender`), MISP's JSON body handed back as bytes, undecoded, with the same mapping.

No message carries the API key (:func:`~dxlmispservice.errors.redact`).
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urljoin

import requests
from pymisp import PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError, PyMISPUnexpectedResponse
from requests.structures import CaseInsensitiveDict

from dxlmispservice import __version__
from dxlmispservice.compat.pymisp import SessionHook, clear_cookies, session_of
from dxlmispservice.errors import MispRefused, MispUnavailable, ResponseTooLarge, redact
from dxlmispservice.settings import Settings
from dxlmispservice.transport import refusal_since, requests_sent, session_setup

logger = logging.getLogger(__name__)

#: MISP's words for a refusal it answers with a 2xx status.
_COULD_NOT = re.compile(r"\s*Could not\b", re.IGNORECASE)

T = TypeVar("T")

#: Longest piece of MISP's own text quoted in an error message.
MAX_QUOTE = 500

_STATUS_IN_MESSAGE = re.compile(r"^Error code (\d{3})\b")
#: The headers PyMISP puts on every JSON request, over its session's own.
_JSON_HEADERS = {"Accept": "application/json", "content-type": "application/json"}
_BLANKS = b" \t\r\n"
#: How much of an answer the raw path reads at a time.
_READ_CHUNK = 65_536
class BuildRefused(Exception):
    """MISP refused the requests PyMISP sends while it builds (a wrong or disabled key)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"MISP refused the connection (HTTP {status})")
        self.status = status
        self.body = body


class TunedPyMISP(SessionHook, PyMISP):
    """PyMISP whose requests session is tuned the moment PyMISP creates it, before any request.

    PyMISP sends requests from its constructor; :class:`~dxlmispservice.compat.pymisp.SessionHook` sees it
    store its session, so ``session_setup`` runs first. ``tests/test_misp.py`` checks that this still holds
    for the pinned PyMISP.
    """

    def __init__(self, url: str, key: str, *, session_setup: Callable[[requests.Session], None],
                 **kwargs: Any) -> None:
        self._session_setup = session_setup
        self.build_refusal: tuple[int, Any] | None = None
        self._building = True
        try:
            super().__init__(url, key, **kwargs)
        except PyMISPError:
            if self.build_refusal is not None:
                raise BuildRefused(*self.build_refusal) from None
            raise
        finally:
            self._building = False

    def get_user(self, *args: Any, **kwargs: Any) -> Any:
        """PyMISP's ``get_user``; a refusal seen while PyMISP builds is kept in ``build_refusal``.

        PyMISP's constructor turns MISP's 4xx on ``users/view/me`` (a wrong key) into a text error; the
        status and MISP's JSON are kept here so that the build failure can be told apart from an outage.
        """
        result = super().get_user(*args, **kwargs)
        refusal = _refusal(result)
        if refusal is not None and self._building:
            self.build_refusal = refusal
        return result

    @property
    def session(self) -> requests.Session:
        """The tuned requests session."""
        return self.__dict__["_tuned_session"]


def build_pymisp(settings: Settings) -> PyMISP:
    """Build the tuned PyMISP for ``settings`` (this talks to MISP); a 4xx on the way raises BuildRefused."""
    ssl: bool | str = (settings.verify_cert_bundle or True) if settings.verify_certificate else False
    cert: str | tuple[str, str] | None = settings.client_certificate
    if settings.client_certificate and settings.client_key:
        cert = (settings.client_certificate, settings.client_key)
    return TunedPyMISP(
        settings.misp_url, settings.api_key, session_setup=session_setup(settings), ssl=ssl,
        cert=cert, proxies=dict(settings.proxies) or None, timeout=settings.timeout,
        tool=f"dxlmispservice/{__version__}",
    )


class RawSender:
    """Sends one request on a built PyMISP's own session, as PyMISP would, and hands back the response.

    Same session (its pool, ``trust_env``, headers with the API key and User-Agent), same verify, cert,
    timeout and proxies. What PyMISP works out on every call is worked out once here when nothing can change
    it: with ``trust_env`` off, no ``auth`` object and no cookies in the session, the prepared request is
    built from the session's headers directly and the merged send settings are reused. Otherwise each call
    is prepared by the session, as PyMISP does it.
    """

    def __init__(self, pymisp: PyMISP) -> None:
        self.pymisp = pymisp
        self.session: requests.Session = session_of(pymisp)
        self.headers = CaseInsensitiveDict(self.session.headers)
        self.headers.update(_JSON_HEADERS)
        self.settings = self._settings(pymisp.root_url)

    def _settings(self, url: str) -> dict[str, Any]:
        pymisp = self.pymisp
        return self.session.merge_environment_settings(url, proxies=dict(pymisp.proxies or {}), stream=None,
                                                       verify=pymisp.ssl, cert=pymisp.cert)

    def _fast(self) -> bool:
        return not self.session.trust_env and self.pymisp.auth is None and not self.session.cookies

    def send(self, method: str, path: str, body: bytes | None) -> requests.Response:
        """``method`` on MISP's ``path`` (relative to its URL) with a JSON ``body``; redirects are followed.
        The answer's body is left unread (``stream``): the caller reads as much of it as it takes."""
        url = urljoin(self.pymisp.root_url, path)
        if self._fast():
            prepared = requests.PreparedRequest()
            prepared.method = method
            prepared.url = url
            prepared.headers = self.headers.copy()
            clear_cookies(prepared)
            prepared.body = body
            if body is not None:
                prepared.headers["Content-Length"] = str(len(body))
            elif method not in ("GET", "HEAD"):
                prepared.headers["Content-Length"] = "0"
            settings = self.settings
        else:
            request = requests.Request(method, url, data=body)
            request.auth = self.pymisp.auth
            prepared = self.session.prepare_request(request)
            prepared.headers.update(_JSON_HEADERS)
            settings = self._settings(url)
        return self.session.send(prepared, timeout=self.pymisp.timeout, **{**settings, "stream": True})


class MispConnection:
    """One shared PyMISP, built on first use; :meth:`call` runs a function on it and maps failures."""

    def __init__(self, settings: Settings, *, factory: Callable[[], PyMISP] | None = None) -> None:
        self._settings = settings
        self._factory = factory if factory is not None else (lambda: build_pymisp(settings))
        self._secret = settings.api_key
        self._lock = threading.Lock()
        self._pymisp: PyMISP | None = None
        self._failed_builds = 0
        self._last_failure = ""
        self._sender: RawSender | None = None
        self._state: tuple[str, float | None, str] = ("unknown", None, "")

    @property
    def url(self) -> str:
        """MISP's base URL."""
        return self._settings.misp_url

    @property
    def secret(self) -> str:
        """The API key, for redaction only."""
        return self._secret

    def state(self) -> dict[str, Any]:
        """MISP as the service last found it: ``state`` ``unknown`` (not asked yet), ``reachable`` (it
        answered), ``refused`` (it answered and refused the API key) or ``down``; ``since`` (epoch seconds)
        and ``detail`` (the last failure's message)."""
        state, since, detail = self._state
        return {"state": state, "since": since, "detail": detail}

    def _note(self, state: str, detail: str = "") -> None:
        if self._state[0] != state or detail:
            self._state = (state, time.time(), detail)

    @property
    def built(self) -> bool:
        """Whether PyMISP has been built (MISP answered at least once)."""
        return self._pymisp is not None

    def call(self, fn: Callable[[PyMISP], T]) -> T:
        """Run ``fn(pymisp)`` and return its result; MISP's refusals and outages raise service errors."""
        pymisp = self._get()
        sent = requests_sent()
        try:
            result = fn(pymisp)
        except MISPServerError as exc:
            raise self._server_error(exc) from None
        except (KeyError, TypeError, IndexError, AttributeError):  # PyMISP reading a refusal as an answer
            refusal = refusal_since(sent)
            if refusal is None:
                raise
            raise self._refused(*refusal) from None
        except requests.RequestException as exc:  # refused, reset, timed out, cut short
            raise self._unavailable(f"cannot reach MISP at {self.url}: {_describe(exc)}") from None
        except PyMISPUnexpectedResponse as exc:
            raise self._unavailable(f"MISP at {self.url} answered something that is not JSON: "
                                    f"{_quote(str(exc), self._secret)}") from None
        refusal = _refusal(result)
        if refusal is not None:
            status, body = refusal
            raise self._refused(status, body)
        self._note("reachable")
        return result

    def fetch(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """MISP's answer to one request, as the bytes of a JSON object or array, undecoded.

        The request goes on PyMISP's own session (:class:`RawSender`), through :meth:`call`. Failures map as
        PyMISP's answers do: a 4xx -> MispRefused with MISP's status and JSON body (or its text); a 5xx, a
        connection error or a timeout -> MispUnavailable; a 2xx that is not a JSON object or array ->
        MispUnavailable. Whether a 2xx is JSON is judged by its first and last non-blank bytes; a body that
        does not pass that test is decoded to be sure (a JSON array or object found that way comes back
        re-encoded)."""
        return self.call(lambda pymisp: self._fetch(pymisp, method, path, body))

    def read_json(self, content: bytes) -> dict[str, Any] | list[Any]:
        """``content`` read as PyMISP reads a JSON answer: decoded, a non-null top-level ``response``
        unwrapped; anything but a JSON object or array then -> MispUnavailable."""
        try:
            value = json.loads(content)
        except (ValueError, RecursionError):
            raise self._not_json(content.decode("utf-8", "replace")) from None
        return self._container(value)

    def _fetch(self, pymisp: PyMISP, method: str, path: str, body: bytes | None) -> bytes:
        sender = self._sender
        if sender is None or sender.pymisp is not pymisp:
            sender = self._sender = RawSender(pymisp)
        response = sender.send(method, path, body)
        try:
            content = self._read_capped(response)
        except BaseException:
            response.close()  # left half read: the connection cannot be used again
            raise
        status = response.status_code
        text = content.decode(response.encoding or "utf-8", "replace") if status >= 400 else ""
        if status >= 500:
            raise self._unavailable(f"MISP at {self.url} failed with a server error: {_quote(text, self._secret)}")
        if status >= 400:
            try:
                refusal = json.loads(content)
            except (ValueError, RecursionError):
                raise self._refused(status, None, text) from None
            raise self._refused(status, refusal)
        stripped = content.strip(_BLANKS)
        if stripped[:1] + stripped[-1:] in (b"{}", b"[]"):
            return content
        try:
            value = json.loads(content)
        except (ValueError, RecursionError):
            raise self._not_json(content.decode("utf-8", "replace")) from None
        if not isinstance(value, (dict, list)):
            raise self._container_expected(value)
        return json.dumps(value).encode("utf-8")

    def _read_capped(self, response: requests.Response) -> bytes:
        """The answer's body, read to at most ``maxResponseSize`` + 1 bytes: a longer one is
        ResponseTooLarge, and no more of it is read (the connection is closed)."""
        cap = self._settings.max_response_size
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_READ_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                too_large = ResponseTooLarge(
                    f"MISP's answer is more than {cap} bytes, the service's limit (maxResponseSize); the "
                    "service stopped reading it. Ask for it in parts or narrow the request.")
                too_large.at_least = cap + 1  # type: ignore[attr-defined]  # the handler words it per topic
                raise too_large
        return b"".join(chunks)

    def _container(self, value: Any) -> dict[str, Any] | list[Any]:
        if isinstance(value, dict) and value.get("response") is not None:
            value = value["response"]
        if not isinstance(value, (dict, list)):
            raise self._container_expected(value)
        return value

    def _not_json(self, text: str) -> MispUnavailable:
        return self._unavailable(f"MISP at {self.url} answered something that is not JSON: "
                                 f"{_quote(f'Unexpected response (size: {len(text)}) from server: {text}', self._secret)}")

    def _container_expected(self, value: Any) -> MispUnavailable:
        return self._unavailable(f"MISP at {self.url} answered something that is not JSON: "
                                 f"{_quote(f'A dict was expected, got a string: {value}', self._secret)}")

    def _get(self) -> PyMISP:
        """The shared PyMISP, built now if needed; a build that failed while this thread waited is not
        repeated at once (the waiting callers share its failure)."""
        pymisp = self._pymisp
        if pymisp is not None:
            return pymisp
        failures_seen = self._failed_builds
        with self._lock:
            if self._pymisp is not None:
                return self._pymisp
            if self._failed_builds != failures_seen:
                raise MispUnavailable(self._last_failure)
            try:
                self._pymisp = self._factory()
            except BuildRefused as exc:  # MISP answered, and said no: not an outage
                refused = self._refused(exc.status, exc.body)
                self._note("refused", refused.message)
                raise refused from None
            except Exception as exc:  # any failed build means MISP cannot be used yet
                self._last_failure = redact(
                    f"MISP at {self.url} is unavailable: {_quote(_describe(exc), self._secret)}", self._secret)
                self._failed_builds += 1
                self._note("down", self._last_failure)
                logger.warning("%s (the next request tries again)", self._last_failure)
                raise MispUnavailable(self._last_failure) from None
            logger.info("Connected to MISP at %s", self.url)
            return self._pymisp

    def check(self) -> bool:
        """The start-up check: build PyMISP now. Logs an ERROR when MISP answers and refuses the API key,
        the warning of :meth:`_get` when MISP cannot be reached; never raises (MISP may be down at start,
        and the next request tries again). True when MISP accepted the key."""
        try:
            self._get()
        except MispRefused as exc:
            logger.error("MISP at %s answered and refused the service's API key (%s). Check the key "
                         "([General] apiKey or its environment variable) and that its MISP user may use "
                         "the API; the service keeps running and answers misp_refused until MISP accepts "
                         "it", self.url, exc.message)
            return False
        except MispUnavailable:
            return False
        return True

    def _server_error(self, exc: MISPServerError) -> MispRefused | MispUnavailable:
        """PyMISP's MISPServerError: a 4xx without JSON is a refusal, the rest (5xx) an outage."""
        text = str(exc)
        match = _STATUS_IN_MESSAGE.match(text)
        status = int(match.group(1)) if match else 500
        detail = text.split("\n", 1)[1] if "\n" in text else text
        if 400 <= status < 500:
            return self._refused(status, None, detail)
        return self._unavailable(f"MISP at {self.url} failed with a server error: {_quote(detail, self._secret)}")

    def _refused(self, status: int, body: Any, text: str | None = None) -> MispRefused:
        reason = _misp_message(body, self._secret) if body is not None else _quote(text or "", self._secret)
        message = redact(f"MISP refused the call (HTTP {status}): {reason}", self._secret)
        logger.info("%s", message)
        self._note("reachable")  # it answered (a refused key at build is noted "refused" after this)
        return MispRefused(message, status=status, payload=body)

    def _unavailable(self, message: str) -> MispUnavailable:
        message = redact(message, self._secret)
        logger.warning("%s", message)
        self._note("down", message)
        return MispUnavailable(message)


def _refusal(result: object) -> tuple[int, Any] | None:
    """``(status, body)`` when ``result`` is a refusal, else None.

    A refusal is PyMISP's ``{"errors": (status, body)}`` (MISP's 4xx with a JSON body), or an answer with
    a 2xx status that says MISP did not do it: ``"saved": false`` or ``"success": false``, an ``errors``
    field with something in it (MISP saved part and names what failed), or a ``message`` or ``name`` that
    starts with "Could not" (MISP's own sightings refusal comes as 200)."""
    if not isinstance(result, dict):
        return None
    errors = result.get("errors")
    if isinstance(errors, tuple) and len(errors) == 2 and isinstance(errors[0], int):
        return errors[0], errors[1]
    if result.get("saved") is False or result.get("success") is False or errors:
        return 200, result
    if any(isinstance(result.get(key), str) and _COULD_NOT.match(result[key]) for key in ("message", "name")):
        return 200, result
    return None


def _misp_message(body: Any, secret: str | None = None) -> str:
    """MISP's own words from an error body: ``message`` (or ``name``), plus any field ``errors``."""
    if isinstance(body, dict):
        text = str(body.get("message") or body.get("name") or "")
        details = body.get("errors")
        if details:
            text = f"{text}: {_flatten(details)}" if text else _flatten(details)
        if text:
            return _quote(text, secret)
    return _quote(json.dumps(body, default=str), secret)


def _flatten(details: Any) -> str:
    """``{"value": ["A similar attribute exists."]}`` -> ``value: A similar attribute exists.``"""
    if isinstance(details, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in details.items())
    if isinstance(details, (list, tuple)):
        return " ".join(_flatten(item) for item in details)
    return str(details)


def _describe(exc: BaseException) -> str:
    """A one-line description of an exception, with its class name."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _quote(text: str, secret: str | None = None) -> str:
    """``text`` with the key cut out, then cut to :data:`MAX_QUOTE` characters (in that order, so that no
    part of the key is left at the cut)."""
    text = redact(text, secret).strip()
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "..."
