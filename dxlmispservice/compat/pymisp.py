"""PyMISP's private parts (and one of requests that PyMISP's request path relies on), in one place.

Tested with PyMISP 2.5.34.4 (``setup.py`` bounds it below 2.6). What is used, and why:

- ``PyMISP._PyMISP__session``: PyMISP keeps its requests session under this name and sends requests from
  its constructor. :class:`SessionHook` defines a property of that name, so the session is tuned (pool size,
  ``trust_env``) the moment PyMISP creates it, before the first request; the raw read path sends on it.
- ``requests.PreparedRequest._cookies``: what ``Session.prepare_request`` leaves on a prepared request; the
  raw path builds prepared requests itself and sets it the same way.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import requests
from requests.cookies import RequestsCookieJar

TESTED = "2.5.34.4"
SESSION_ATTRIBUTE = "_PyMISP__session"


class SessionHook:
    """A mixin for PyMISP subclasses: ``_session_setup(session)`` runs as PyMISP stores its new session."""

    _session_setup: Callable[[requests.Session], None]

    @property
    def _PyMISP__session(self) -> requests.Session:  # noqa: N802 - the name PyMISP stores its session under
        return self.__dict__["_tuned_session"]

    @_PyMISP__session.setter
    def _PyMISP__session(self, session: requests.Session) -> None:  # noqa: N802
        self._session_setup(session)
        self.__dict__["_tuned_session"] = session


def session_of(pymisp: Any) -> requests.Session:
    """The requests session PyMISP sends on."""
    return getattr(pymisp, SESSION_ATTRIBUTE)


def clear_cookies(prepared: requests.PreparedRequest) -> None:
    """Give a hand-built prepared request the empty cookie jar that ``prepare_request`` would."""
    prepared._cookies = RequestsCookieJar()


def missing() -> list[str]:
    """The private parts above that the installed PyMISP and requests no longer have (empty when all are)."""
    from pymisp import PyMISP

    problems = []
    if "self.__session =" not in inspect.getsource(PyMISP.__init__):
        problems.append(f"PyMISP.{SESSION_ATTRIBUTE} (PyMISP no longer stores its session as self.__session)")
    if "_cookies" not in inspect.getsource(requests.PreparedRequest.prepare_cookies):
        problems.append("requests.PreparedRequest._cookies")
    return problems
