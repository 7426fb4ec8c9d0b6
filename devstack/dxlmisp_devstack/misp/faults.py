"""The dev MISP server's fault hooks: a log of the requests it answered, delays on chosen routes, and canned
answers that stand in for a MISP that answers something odd.

State only, no HTTP: :class:`~dxlmisp_devstack.misp.server.MispApp` records each answered request, waits
out a delay before it handles one and answers a canned answer instead of handling it; the dev-only routes
(``GET /devstack/requests``, ``POST /devstack/delay``, ``POST /devstack/answer``) read and set it, and
``POST /devstack/reset`` empties it with the database. The dev-only routes are neither logged, delayed nor
answered for.
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
        self._answers: dict[str, tuple[int, Any]] = {}

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

    def set_answer(self, path: str, status: int, body: Any) -> None:
        """Answer every request whose path is ``path`` with ``status`` and the JSON ``body``, instead of
        handling it (a ``status`` of 0 removes the canned answer)."""
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must start with '/'")
        if status and not 200 <= status <= 599:
            raise ValueError(f"status {status!r} must be from 200 to 599, or 0 to remove the answer")
        with self._lock:
            if status:
                self._answers[path] = (status, body)
            else:
                self._answers.pop(path, None)

    def answer_for(self, path: str) -> tuple[int, Any] | None:
        """The canned (status, body) for ``path``, or None."""
        with self._lock:
            return self._answers.get(path)

    def reset(self) -> None:
        """Forget the logged requests, every delay and every canned answer."""
        with self._lock:
            self._log.clear()
            self._delays.clear()
            self._answers.clear()
