"""The one shared PyMISP client, built lazily and tuned, with MISP's failures mapped to service errors.

PyMISP's constructor talks to MISP (version, current user, attribute types), so :class:`MispClient` builds
it on first use, under a lock, and builds it again on the next call after a failed build. The service thus
starts and registers while MISP is down, answers "MISP unavailable" meanwhile, and serves normally once
MISP is back, with no restart.

The session is tuned before PyMISP sends its first request: one connection pool sized to the request
threads, for both http and https, and ``trust_env`` off unless ``[Proxies]`` is configured (requests then
reads no proxy variables nor ``.netrc`` on every call).

Mapping (:meth:`MispClient.call`):

- a result ``{"errors": (status, body)}`` (PyMISP's form of a 4xx with a JSON body), or a 4xx without
  a JSON body, or a 4xx while PyMISP builds (a wrong key) -> :class:`~dxlmispservice.errors.MispRefused`
  with MISP's status and body;
- a 5xx, a connection error or timeout (any requests exception), an answer that is not JSON, or a
  failed build ->
  :class:`~dxlmispservice.errors.MispUnavailable`.

No message carries the API key (:func:`~dxlmispservice.errors.redact`).
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from pymisp import PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError, PyMISPUnexpectedResponse
from requests.adapters import HTTPAdapter

from . import __version__
from .errors import MispRefused, MispUnavailable, redact
from .settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Connections kept beside the request threads (the feed poller, a notification look-up).
EXTRA_CONNECTIONS = 2
#: Longest piece of MISP's own text quoted in an error message.
MAX_QUOTE = 500

_STATUS_IN_MESSAGE = re.compile(r"^Error code (\d{3})\b")


class BuildRefused(Exception):
    """MISP refused the requests PyMISP sends while it builds (a wrong or disabled key)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"MISP refused the connection (HTTP {status})")
        self.status = status
        self.body = body


class TunedPyMISP(PyMISP):
    """PyMISP whose requests session is tuned the moment PyMISP creates it, before any request.

    PyMISP keeps its session in the private attribute ``_PyMISP__session`` and sends requests from its
    constructor. A property of that name on this subclass sees the assignment, so ``session_setup`` runs
    first. ``tests/test_misp.py`` checks that this still holds for the pinned PyMISP.
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
    def _PyMISP__session(self) -> requests.Session:  # noqa: N802 - the name PyMISP stores its session under
        return self.__dict__["_tuned_session"]

    @_PyMISP__session.setter
    def _PyMISP__session(self, session: requests.Session) -> None:  # noqa: N802
        self._session_setup(session)
        self.__dict__["_tuned_session"] = session

    @property
    def session(self) -> requests.Session:
        """The tuned requests session."""
        return self.__dict__["_tuned_session"]


def pool_size(settings: Settings) -> int:
    """Connections to keep open to MISP: one per request thread, plus a few."""
    return settings.incoming_pool.thread_count + EXTRA_CONNECTIONS


def session_setup(settings: Settings) -> Callable[[requests.Session], None]:
    """The tuning applied to PyMISP's session: pool size and ``trust_env``."""
    size = pool_size(settings)

    def setup(session: requests.Session) -> None:
        adapter = HTTPAdapter(pool_maxsize=size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.trust_env = bool(settings.proxies)

    return setup


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


class MispClient:
    """One shared PyMISP, built on first use; :meth:`call` runs a function on it and maps failures."""

    def __init__(self, settings: Settings, *, factory: Callable[[], PyMISP] | None = None) -> None:
        self._settings = settings
        self._factory = factory if factory is not None else (lambda: build_pymisp(settings))
        self._secret = settings.api_key
        self._lock = threading.Lock()
        self._pymisp: PyMISP | None = None
        self._failed_builds = 0
        self._last_failure = ""

    @property
    def url(self) -> str:
        """MISP's base URL."""
        return self._settings.misp_url

    @property
    def secret(self) -> str:
        """The API key, for redaction only."""
        return self._secret

    @property
    def built(self) -> bool:
        """Whether PyMISP has been built (MISP answered at least once)."""
        return self._pymisp is not None

    def call(self, fn: Callable[[PyMISP], T]) -> T:
        """Run ``fn(pymisp)`` and return its result; MISP's refusals and outages raise service errors."""
        pymisp = self._get()
        try:
            result = fn(pymisp)
        except MISPServerError as exc:
            raise self._server_error(exc) from None
        except requests.RequestException as exc:  # refused, reset, timed out, cut short
            raise self._unavailable(f"cannot reach MISP at {self.url}: {_describe(exc)}") from None
        except PyMISPUnexpectedResponse as exc:
            raise self._unavailable(f"MISP at {self.url} answered something that is not JSON: "
                                    f"{_quote(str(exc))}") from None
        refusal = _refusal(result)
        if refusal is not None:
            status, body = refusal
            raise self._refused(status, body)
        return result

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
                raise self._refused(exc.status, exc.body) from None
            except Exception as exc:  # any failed build means MISP cannot be used yet
                self._last_failure = redact(
                    f"MISP at {self.url} is unavailable: {_quote(_describe(exc))}", self._secret)
                self._failed_builds += 1
                logger.warning("%s (the next request tries again)", self._last_failure)
                raise MispUnavailable(self._last_failure) from None
            logger.info("Connected to MISP at %s", self.url)
            return self._pymisp

    def _server_error(self, exc: MISPServerError) -> MispRefused | MispUnavailable:
        """PyMISP's MISPServerError: a 4xx without JSON is a refusal, the rest (5xx) an outage."""
        text = str(exc)
        match = _STATUS_IN_MESSAGE.match(text)
        status = int(match.group(1)) if match else 500
        detail = text.split("\n", 1)[1] if "\n" in text else text
        if 400 <= status < 500:
            return self._refused(status, None, detail)
        return self._unavailable(f"MISP at {self.url} failed with a server error: {_quote(detail)}")

    def _refused(self, status: int, body: Any, text: str | None = None) -> MispRefused:
        reason = _misp_message(body) if body is not None else _quote(text or "")
        message = redact(f"MISP refused the call (HTTP {status}): {reason}", self._secret)
        logger.info("%s", message)
        return MispRefused(message, status=status, payload=body)

    def _unavailable(self, message: str) -> MispUnavailable:
        message = redact(message, self._secret)
        logger.warning("%s", message)
        return MispUnavailable(message)


def _refusal(result: object) -> tuple[int, Any] | None:
    """``(status, body)`` when ``result`` is PyMISP's ``{"errors": (status, body)}``, else None."""
    if isinstance(result, dict) and isinstance(result.get("errors"), tuple):
        errors = result["errors"]
        if len(errors) == 2 and isinstance(errors[0], int):
            return errors[0], errors[1]
    return None


def _misp_message(body: Any) -> str:
    """MISP's own words from an error body: ``message`` (or ``name``), plus any field ``errors``."""
    if isinstance(body, dict):
        text = str(body.get("message") or body.get("name") or "")
        details = body.get("errors")
        if details:
            text = f"{text}: {_flatten(details)}" if text else _flatten(details)
        if text:
            return _quote(text)
    return _quote(json.dumps(body, default=str))


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


def _quote(text: str) -> str:
    """``text`` cut to :data:`MAX_QUOTE` characters."""
    text = text.strip()
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "..."
