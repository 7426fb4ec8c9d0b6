"""requests' side of the one MISP connection: the session's tuning, and what each thread last sent.

The session PyMISP creates is tuned before its first request (:func:`session_setup`): one connection pool
sized to the request threads, for both http and https, and ``trust_env`` off unless ``[Proxies]`` is
configured (requests then reads no proxy variables nor ``.netrc`` on every call). Its adapter,
:class:`CountingAdapter`, counts the requests each thread sends (:func:`requests_sent`) and keeps the last
4xx answer, so that a failure of PyMISP's can be told apart: none sent (PyMISP refused its arguments), or
MISP refused and PyMISP read the refusal as an answer (:func:`refusal_since`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from dxlmispservice.settings import Settings

#: Connections kept beside the request threads (the feed poller, a notification look-up).
EXTRA_CONNECTIONS = 2
_SENT = threading.local()


def requests_sent() -> int:
    """How many requests this thread has sent to MISP so far: a failure with none sent since a call began is
    PyMISP refusing its arguments, not MISP or its answer."""
    return getattr(_SENT, "count", 0)


class CountingAdapter(HTTPAdapter):
    """requests' HTTP adapter, counting what it sends per thread (:func:`requests_sent`)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Count, send, and keep a 4xx answer (small) for :func:`refusal_since`."""
        _SENT.count = requests_sent() + 1
        _SENT.refused = None
        response = super().send(request, *args, **kwargs)
        if 400 <= response.status_code < 500:
            _SENT.refused = response
        return response


def refusal_since(sent: int) -> tuple[int, Any] | None:
    """``(status, MISP's JSON or None)`` when this thread sent a request since its count was ``sent`` and the
    last one was answered 4xx; None otherwise."""
    response = getattr(_SENT, "refused", None)
    if requests_sent() == sent or response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def pool_size(settings: Settings) -> int:
    """Connections to keep open to MISP: one per request thread, plus a few."""
    return settings.incoming_pool.thread_count + EXTRA_CONNECTIONS


def session_setup(settings: Settings) -> Callable[[requests.Session], None]:
    """The tuning applied to PyMISP's session: pool size and ``trust_env``."""
    size = pool_size(settings)

    def setup(session: requests.Session) -> None:
        adapter = CountingAdapter(pool_maxsize=size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.trust_env = bool(settings.proxies)

    return setup
