"""The ``status`` request topic: what this instance of the service runs, and how it is going.

Enabled through ``apiNames`` like any topic. It answers::

    {"version": "0.2.0", "service_unique_id": "",
     "misp": {"url", "state", "since", "detail"},          # state: unknown, reachable, refused or down
     "requests": {"ok": 120, "invalid_arguments": 3, ...},  # since the start, by outcome
     "feed": {"topic", "running", "position", "last_poll", "lag_seconds", "published", "notices",
              "failures", "last_error"} or null,
     "forwarder": {"endpoint", "topics", "running", "silent", "forwarded", "failed", "dropped", "notices",
                   "last_heartbeat"} or null,
     "roles": ["feed", "forwarder:misp_json_event,..."]}

:class:`StatusBoard` is filled by the app as it builds the parts (the MISP connection, the request handler,
the forwarders); it reads their own ``state()``, ``counts()`` and ``status()``, and asks MISP nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Protocol

from dxlmispservice import __version__
from dxlmispservice.errors import InvalidArguments


class Reporting(Protocol):
    """A part that reports on itself (the feed, the ZeroMQ forwarder)."""

    def status(self) -> dict[str, Any]: ...


@dataclass
class StatusBoard:
    """The parts the ``status`` topic reports on; the app sets them as it builds them."""

    service_unique_id: str = ""
    misp: Any = None                      # a MispConnection: its state()
    requests: Any = None                  # a RequestHandler: its counts()
    feed: Reporting | None = None
    forwarder: Reporting | None = None
    forwarded_topics: tuple[str, ...] = field(default_factory=tuple)
    roles_held: Callable[[], list[str]] | None = None  # the role keeper's, when roles are kept

    def roles(self) -> list[str]:
        """The roles this instance holds: the feed, and the forwarding of its ZeroMQ topics."""
        if self.roles_held is not None:
            return self.roles_held()
        held = []
        if self.feed is not None:
            held.append("feed")
        if self.forwarder is not None:
            held.append("forwarder:" + ",".join(self.forwarded_topics))
        return held

    def snapshot(self) -> dict[str, Any]:
        """The ``status`` answer."""
        misp_state = self.misp.state() if self.misp is not None else {"state": "unknown", "since": None,
                                                                       "detail": ""}
        return {
            "version": __version__,
            "service_unique_id": self.service_unique_id,
            "misp": {"url": getattr(self.misp, "url", None), **misp_state},
            "requests": self.requests.counts() if self.requests is not None else {},
            "feed": self.feed.status() if self.feed is not None else None,
            "forwarder": self.forwarder.status() if self.forwarder is not None else None,
            "roles": self.roles(),
        }

    def topic(self, misp: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """The ``status`` topic handler: takes ``{}``."""
        if payload:
            raise InvalidArguments(f"status: unknown key(s) {', '.join(repr(k) for k in sorted(payload))}; "
                                   "it takes no arguments (send {})")
        return self.snapshot()
