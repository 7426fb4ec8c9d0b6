"""Where the event feed stands: a position in MISP's change order, its state file, and its cursor form.

MISP stamps an event with ``timestamp`` (seconds) each time it changes, and restSearch can return the
events with ``timestamp >= T`` in ascending order. A :class:`Position` is "every change up to here has
been delivered": a timestamp ``T`` and the uuids of the events already delivered *at* ``T``. The sent
set is keyed by ``(uuid, timestamp)``; since it only ever holds entries at the position's own
timestamp, it is stored as the uuids alone. An event edited later gets a larger timestamp, is not in
the set, and so is delivered again: once per change.

The same position is saved in the feed's state file (:func:`save_position`, atomic: temporary file,
``fsync``, ``os.replace``, ``fsync`` of the directory) and handed to pulling clients as an opaque
cursor (:func:`encode_cursor`).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dxlmispservice.errors import ConfigError, InvalidArguments

STATE_VERSION = 1

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Position:
    """Every event change with ``timestamp < self.timestamp`` is delivered, and so are ``sent`` at it."""

    timestamp: int
    sent: frozenset[str] = frozenset()

    def delivered(self, uuid: str, timestamp: int) -> bool:
        """Whether the change ``(uuid, timestamp)`` is behind this position."""
        return timestamp < self.timestamp or (timestamp == self.timestamp and uuid in self.sent)

    def after(self, uuid: str, timestamp: int) -> Position:
        """The position once ``(uuid, timestamp)`` is delivered too (changes come in ascending order)."""
        if timestamp > self.timestamp:
            return Position(timestamp, frozenset((uuid,)))
        if timestamp == self.timestamp:
            return Position(timestamp, self.sent | {uuid})
        raise ValueError(f"change at {timestamp} is behind the position at {self.timestamp}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"timestamp": T, "sent": [uuid, ...]}``."""
        return {"timestamp": self.timestamp, "sent": sorted(self.sent)}

    @classmethod
    def from_dict(cls, data: Any) -> Position:
        """Parse the JSON form; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        timestamp, sent = data.get("timestamp"), data.get("sent", [])
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
            raise ValueError("timestamp must be a non-negative integer")
        if not isinstance(sent, list) or not all(isinstance(u, str) for u in sent):
            raise ValueError("sent must be a list of uuids")
        return cls(timestamp, frozenset(sent))


# --- the state file ------------------------------------------------------------------------------

def load_position(path: str) -> Position | None:
    """The position saved in ``path``, or None when the file does not exist.

    A file that exists but cannot be read is a :class:`ConfigError`: starting over from the look-back
    would send events twice, so the operator decides (fix or delete the file).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[Feed] stateFile {path}: cannot be read ({exc}); fix or delete it") from exc
    try:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return Position.from_dict(data)
    except (AttributeError, ValueError) as exc:
        raise ConfigError(f"[Feed] stateFile {path}: not a feed state ({exc}); fix or delete it") from exc


def save_position(path: str, position: Position) -> None:
    """Replace ``path`` with ``position`` atomically: a reader sees the old file or the new, whole.

    The new content goes to a temporary file in the same directory, is flushed and fsync'ed, then
    ``os.replace`` puts it in place and the directory is fsync'ed, so the rename survives a power cut.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    body = json.dumps({"version": STATE_VERSION, **position.to_dict()}, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=".feed-state-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows): the rename is what we have
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --- cursors for clients that pull ---------------------------------------------------------------

def encode_cursor(position: Position, filters: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor holding the position and the filters it was reached with."""
    raw = json.dumps({"v": STATE_VERSION, **position.to_dict(), "filters": filters},
                     separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: Any) -> tuple[Position, dict[str, Any]]:
    """The position and filters of a cursor from :func:`encode_cursor`; InvalidArguments otherwise."""
    if not isinstance(cursor, str) or not cursor:
        raise InvalidArguments("cursor must be the 'next' string of an earlier fetch_events answer")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
        if data.get("v") != STATE_VERSION or not isinstance(data.get("filters"), dict):
            raise ValueError("unknown cursor version")
        return Position.from_dict(data), data["filters"]
    except (binascii.Error, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise InvalidArguments(f"cursor is not a fetch_events cursor ({exc})") from exc


# --- where the first run starts ------------------------------------------------------------------

def parse_since(value: Any, now: float) -> int:
    """A start timestamp from a duration back from ``now`` (``30m``, ``12h``, ``7d``, ``2w``), an ISO
    date or date-time (UTC when no zone is given), or epoch seconds. ValueError when it is none of those.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"negative timestamp: {value!r}")
        return int(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if match:
        return max(0, int(now) - int(match.group(1)) * _SECONDS[match.group(2).lower()])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a duration (30m, 12h, 7d, 2w), an ISO date or epoch seconds: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int(moment.timestamp()))
