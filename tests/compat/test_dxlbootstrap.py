"""compat.dxlbootstrap: the private parts of dxlbootstrap that the service uses are all there."""
from __future__ import annotations

import inspect

import pytest

from dxlmispservice.compat import dxlbootstrap


def test_every_private_part_used_is_there() -> None:
    """The installed dxlbootstrap still has each private attribute the service reads or sets."""
    missing = dxlbootstrap.missing()
    assert missing == [], (f"dxlbootstrap {dxlbootstrap.TESTED} parts gone after an upgrade: {', '.join(missing)}; "
                           "adapt dxlmispservice/compat/dxlbootstrap.py")


def test_a_removed_part_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """When Application no longer has _dxl_client, missing() names it."""
    original = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: original(obj).replace("self._dxl_client", "self._c"))
    assert dxlbootstrap.missing() == ["Application._dxl_client"]


def test_pool_sizes_are_set_in_order() -> None:
    """set_pool_sizes sets incoming then callback (thread count, queue size)."""
    class App:
        pass

    app = App()
    dxlbootstrap.set_pool_sizes(app, incoming=(3, 30), callbacks=(4, 40))
    assert vars(app) == {"_incoming_thread_count": 3, "_incoming_queue_size": 30,
                         "_callbacks_thread_count": 4, "_callbacks_queue_size": 40}
