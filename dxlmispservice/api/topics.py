"""The topic table: which API names the service serves, the handler of each, and the topic-name rule.

Every request topic is ``/opendxl-misp/service/misp-api[/<serviceUniqueId>]/<api name>``, and only the
names listed in ``apiNames`` are registered. :func:`build_table` turns those names into handlers, in this
order, and a name is served by the first source that has it:

1. :data:`dxlmispservice.api.legacy.LEGACY`: the 2.4-era names (``new_event``, ``search``, ``tag``...). Where
   a legacy name is also a PyMISP method name, the legacy adapter owns the topic.
2. The allow-listed PyMISP pass-through (:mod:`dxlmispservice.api.passthrough`): any other public PyMISP
   method the rules accept.
3. Service topics (:data:`EXTRA`): topics the service itself answers, such as ``fetch_events`` from
   :mod:`dxlmispservice.events.feed`. A module adds one with :func:`register_topic`, as a call or a decorator::

       @register_topic("fetch_events")
       def fetch_events(misp: MispConnection, payload: dict) -> dict: ...

   ``fetch_events`` is registered here (:func:`_service_topics`), so the whole table reads in this file;
   feed.py need not import this module.

A handler is ``handler(misp, payload) -> JSON-able``: the shared :class:`~dxlmispservice.misp.MispConnection`
and the request's JSON object in, the answer out; failures are raised from :mod:`dxlmispservice.errors`.
The method to call is fixed when the table is built: nothing is ever looked up by the topic string that a
request arrives on. An unknown or refused name stops the start with a ConfigError that says why and lists
the valid names.
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Iterable, Mapping

from pymisp import PyMISP

from dxlmispservice.api import passthrough
from dxlmispservice.errors import ConfigError
from dxlmispservice.names import SERVICE_TYPE, request_topic, service_type  # noqa: F401 - re-exported
from dxlmispservice.api.access import is_admin
from dxlmispservice.api.handler import Handler
from dxlmispservice.api.legacy import LEGACY
from dxlmispservice.settings.formats import FormatSettings

#: Where an apiNames error sends the reader for the full list of valid names.
NAMES_DOC = ("Every valid name, with whether it reads, writes or administers MISP, is listed in the docs: "
             "Service methods, 'All API names' (docs/methods.rst)")

#: Service topics registered by other modules: name -> handler (see :func:`register_topic`).
EXTRA: dict[str, Handler] = {}

#: The service topic that reports what this instance runs (:mod:`dxlmispservice.api.status`); its handler
#: is the app's StatusBoard, handed to :func:`build_table`.
STATUS = "status"


def register_topic(name: str, handler: Handler | None = None) -> Any:
    """Add a service topic ``name``; use as ``register_topic(name, handler)`` or as ``@register_topic(name)``.

    Registering the same handler again is harmless; a name that legacy or PyMISP already uses, or a second
    handler for one name, raises ValueError."""
    def add(fn: Handler) -> Handler:
        if name in LEGACY or hasattr(PyMISP, name):
            raise ValueError(f"service topic {name!r} would shadow a MISP API name")
        if EXTRA.get(name, fn) is not fn:
            raise ValueError(f"service topic {name!r} is already registered")
        EXTRA[name] = fn
        return fn

    if handler is not None:
        return add(handler)
    return add


def _service_topics() -> dict[str, Handler]:
    """The registered service topics, with the feed's ``fetch_events`` among them."""
    from dxlmispservice.api.export import export_event
    from dxlmispservice.events.feed import fetch_events  # here, not at the top: feed.py may import this module

    if "fetch_events" not in EXTRA:
        register_topic("fetch_events", fetch_events)
    if "export_event" not in EXTRA:
        register_topic("export_event", export_event)
    return EXTRA


def valid_api_names() -> list[str]:
    """Every name ``apiNames`` may hold: legacy names, allow-listed PyMISP methods (admin ones included,
    which need ``allowAdminApis``) and service topics."""
    return sorted(set(LEGACY) | set(passthrough.allowed_names()) | set(_service_topics()) | {STATUS})


def _problem(name: str, valid: list[str]) -> str:
    """Why ``name`` cannot be served."""
    if not name:
        return "an empty name (check the commas)"
    if name.startswith("_"):
        return f"{name!r} is refused: private and dunder names are never served"
    if hasattr(PyMISP, name):
        reason = passthrough.refusal_reason(name)
        if reason is None and is_admin(name):
            return f"{name!r} is an admin method: it is served only with [General] allowAdminApis=true"
        return f"{name!r} is refused: {reason}"
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"{name!r} is not an API name{hint}"


def build_table(api_names: Iterable[str], *, allow_admin: bool = False, status: Handler | None = None,
                max_response_size: int | None = None, formats: FormatSettings | None = None) -> dict[str, Handler]:
    """The handler of each name in ``api_names``; raises ConfigError naming every unknown or refused name,
    with close matches, and pointing at the docs for the valid ones. Admin methods (:mod:`.access`) are
    refused unless ``allow_admin``; ``status`` is the handler of the ``status`` topic (the app's
    StatusBoard); a service topic that takes ``max_answer`` is given ``max_response_size``, and one that
    takes ``formats`` the ``[Formats]`` settings."""
    extras = _service_topics()
    table: dict[str, Handler] = {}
    problems: list[str] = []
    for name in api_names:
        if name in table:
            continue
        if name in LEGACY:
            table[name] = LEGACY[name]
        elif name and not name.startswith("_") and hasattr(PyMISP, name) and passthrough.refusal_reason(name) is None \
                and (allow_admin or not is_admin(name)):
            table[name] = passthrough.build_handler(name)
        elif name in extras:
            table[name] = _bound(extras[name], max_response_size, formats)
        elif name == STATUS and status is not None:
            table[name] = status
        else:
            problems.append(name)
    if problems:
        valid = valid_api_names()
        details = "; ".join(_problem(name, valid) for name in problems)
        raise ConfigError(f"apiNames: {details}. {NAMES_DOC}")
    return table


def _bound(handler: Handler, max_response_size: int | None, formats: FormatSettings | None) -> Handler:
    """``handler`` with ``max_answer`` (fetch_events keeps its answers under the limit) and ``formats`` bound
    where it takes them."""
    parameters = inspect.signature(handler).parameters
    bound_args: dict[str, Any] = {}
    if max_response_size is not None and "max_answer" in parameters:
        bound_args["max_answer"] = max_response_size
    if formats is not None and "formats" in parameters:
        bound_args["formats"] = formats
    if not bound_args:
        return handler
    bound = functools.partial(handler, **bound_args)
    functools.update_wrapper(bound, handler)  # keeps its name and paging_advice
    return bound

def admin_names(table: Mapping[str, Handler]) -> list[str]:
    """The admin methods among a table's names, in table order."""
    return [name for name in table if name not in LEGACY and name not in EXTRA and name != STATUS
            and is_admin(name)]
