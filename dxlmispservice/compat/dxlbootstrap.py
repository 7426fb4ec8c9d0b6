"""dxlbootstrap's private parts, in one place.

Tested with dxlbootstrap 0.2.2 (``setup.py`` bounds it below 0.3), which has no accessors for these:

- ``Application._dxl_client``: the connected DxlClient, to register the service and publish events.
- ``Application._config_dir`` and ``_app_config_path``: the config directory (relative paths in the config
  are taken from it) and the app config file (named in configuration errors).
- ``Application._incoming_thread_count``, ``_incoming_queue_size``, ``_callbacks_thread_count`` and
  ``_callbacks_queue_size``: dxlbootstrap reads the pool sizes itself and ignores bad values; the service
  sets the checked ones from its own settings.
"""
from __future__ import annotations

import inspect
from typing import Any

TESTED = "0.2.2"
_POOL_ATTRIBUTES = ("_incoming_thread_count", "_incoming_queue_size", "_callbacks_thread_count",
                    "_callbacks_queue_size")


def dxl_client(app: Any) -> Any:
    """The DxlClient of a dxlbootstrap ``Application``."""
    return app._dxl_client


def config_dir(app: Any) -> str:
    """The configuration directory the application was started with."""
    return str(app._config_dir)


def app_config_path(app: Any) -> str:
    """The path of the application's own config file."""
    return str(app._app_config_path)


def set_pool_sizes(app: Any, *, incoming: tuple[int, int], callbacks: tuple[int, int]) -> None:
    """Set the incoming-message and callback pools' ``(thread count, queue size)`` before the client is made."""
    values = (*incoming, *callbacks)
    for name, value in zip(_POOL_ATTRIBUTES, values):
        setattr(app, name, value)


def missing() -> list[str]:
    """The private parts above that the installed dxlbootstrap no longer has (empty when all are there)."""
    from dxlbootstrap.app import Application

    source = inspect.getsource(Application)
    names = ("_dxl_client", "_config_dir", "_app_config_path", *_POOL_ATTRIBUTES)
    return [f"Application.{name}" for name in names if f"self.{name}" not in source]
