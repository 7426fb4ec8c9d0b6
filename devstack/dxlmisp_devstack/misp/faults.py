"""The dev MISP server's fault hooks: a log of the requests it answered and delays on chosen routes.

State only, no HTTP: :class:`~dxlmisp_devstack.misp.server.MispApp` records each answered request and waits
out a delay before it handles one; the dev-only routes (``GET /devstack/requests``, ``POST /devstack/delay``)
read and set it, and ``POST /devstack/reset`` empties it with the database. The dev-only routes are neither
logged nor delayed.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any

#: How many answered requests the log keeps (the oldest go first).
LOG_SIZE = 10_000
#: The longest delay a route may be given, in seconds.
MAX_DELAY = 300.0


class Faults:
    """The request log (``{"method", "path", "status"}``, oldest first) and the route delays."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self._delays: dict[str, float] = {}

    def record(self, method: str, path: str, status: int) -> None:
        """Log one answered request."""
        with self._lock:
            self._log.append({"method": method, "path": path, "status": status})

    def requests(self) -> list[dict[str, Any]]:
        """The requests answered since the last reset, oldest first."""
        with self._lock:
            return list(self._log)

    def set_delay(self, path: str, seconds: float) -> None:
        """Delay every request whose path starts with ``path`` by ``seconds`` (0 removes the delay)."""
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must start with '/'")
        if not 0 <= seconds <= MAX_DELAY:
            raise ValueError(f"seconds {seconds!r} must be from 0 to {MAX_DELAY:g}")
        with self._lock:
            if seconds:
                self._delays[path] = float(seconds)
            else:
                self._delays.pop(path, None)

    def delay_for(self, path: str) -> float:
        """The delay of the longest configured prefix of ``path``, or 0."""
        with self._lock:
            matches = [prefix for prefix in self._delays if path.startswith(prefix)]
            return self._delays[max(matches, key=len)] if matches else 0.0

    def reset(self) -> None:
        """Forget the logged requests and every delay."""
        with self._lock:
            self._log.clear()
            self._delays.clear()
