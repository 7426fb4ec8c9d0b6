"""The write plumbing of the dev MISP models: the lock, one transaction per action, and notifications.

A change's ZeroMQ payloads are built inside its transaction, right after the write they describe (so that a
later delete in the same transaction cannot hide the row), and handed to the notifier once it commits, in
commit order. A failing notifier is logged and never fails the change.
"""
from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from dxlmisp_devstack.misp import db, serialize as ser
from dxlmisp_devstack.misp.queries import ModelQueries

Notifier = Callable[[str, dict[str, Any]], None]
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("dxlmisp_devstack.misp.models")


def locked(method: F) -> F:
    """Run a whole action under the models' lock: its reads and its transaction see one state."""
    @functools.wraps(method)
    def run(self: ModelQueries, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]


class Transactions(ModelQueries):
    """One SQLite database (``":memory:"`` or a file), its lock, and the notifier of committed changes."""

    def __init__(self, db_path: str = ":memory:", notifier: Notifier | None = None) -> None:
        super().__init__(db.connect(db_path), threading.RLock())
        self.notifier = notifier
        self._pending: list[tuple[str, dict[str, Any]]] | None = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._pending = []
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._pending = None
                raise
            self.conn.execute("COMMIT")
            pending, self._pending = self._pending, None
            for topic, payload in pending:
                self._send(topic, payload)

    def _notify(self, topic: str, build: Callable[[], dict[str, Any]]) -> None:
        if self.notifier is not None and self._pending is not None:
            self._pending.append((topic, build()))

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self.notifier(topic, payload)  # type: ignore[misc]
        except Exception:  # a notification must never fail the change itself
            log.exception("notifier failed for %s", topic)

    def _notify_attribute(self, attribute_id: int, action: str) -> None:
        self._notify("misp_json_attribute", lambda: self.attribute_notification(attribute_id, action))

    def _notify_event(self, event_id: int, action: str) -> None:
        self._notify("misp_json_event", lambda: self.event_notification(event_id, action))

    def _notify_tag(self, tag: sqlite3.Row, action: str, event_id: int, attribute_id: int | None = None) -> None:
        self._notify("misp_json_tag", lambda: dict(
            ser.tag_notification(tag, event_id=event_id, attribute_id=attribute_id), action=action))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self.conn.close()
