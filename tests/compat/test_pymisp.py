"""compat.pymisp: PyMISP's session attribute (and requests' prepared cookies) are where the service expects."""
from __future__ import annotations

import inspect

import pytest
import requests

from dxlmispservice.compat import pymisp as compat


def test_every_private_part_used_is_there() -> None:
    """The installed PyMISP still stores its session as __session, and requests keeps _cookies."""
    missing = compat.missing()
    assert missing == [], (f"PyMISP {compat.TESTED} parts gone after an upgrade: {', '.join(missing)}; "
                           "adapt dxlmispservice/compat/pymisp.py")


def test_a_renamed_session_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """When PyMISP stores its session under another name, missing() says so."""
    original = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: original(obj).replace("self.__session =", "self.s ="))
    assert compat.missing()[0].startswith("PyMISP._PyMISP__session")


def test_session_hook_runs_setup_before_the_session_is_stored() -> None:
    """SessionHook calls the setup with the session as it is assigned, and serves it back."""
    seen: list[requests.Session] = []

    class Hooked(compat.SessionHook):
        def __init__(self) -> None:
            self._session_setup = seen.append
            setattr(self, compat.SESSION_ATTRIBUTE, requests.Session())

    hooked = Hooked()
    assert seen == [compat.session_of(hooked)]
