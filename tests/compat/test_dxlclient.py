"""compat.dxlclient: the private parts of dxlclient and its paho that the service uses are all there."""
from __future__ import annotations

import inspect

import pytest

from dxlmispservice.compat import dxlclient


def test_every_private_part_used_is_there() -> None:
    """The installed dxlclient still has each private part the service reaches into."""
    missing = dxlclient.missing()
    assert missing == [], (f"dxlclient {dxlclient.TESTED} parts gone after an upgrade: {', '.join(missing)}; "
                           "adapt dxlmispservice/compat/dxlclient.py")


def test_a_removed_part_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """When DxlClient no longer sets _client, missing() names it."""
    original = inspect.getsource
    monkeypatch.setattr(inspect, "getsource",
                        lambda obj: original(obj).replace("self._client =", "self._paho =")
                        if getattr(obj, "__qualname__", "") == "DxlClient.__init__" else original(obj))
    assert "DxlClient._client (the paho client)" in dxlclient.missing()


def test_paho_is_none_for_a_client_without_one() -> None:
    """A test double without a paho client has no paho and no network thread."""
    assert dxlclient.paho(object()) is None and dxlclient.network_thread(object()) is None
