"""Where the event feed stands: a position in MISP's change order, its state file, and its cursor form.

MISP stamps an event with two clocks (seconds): ``timestamp``, set by every change (an edit also
unpublishes the event), and ``publish_timestamp``, set by every publication (publishing leaves
``timestamp`` alone). restSearch can return the events at or after a value of either, in ascending
order. The feed follows one of them, its *watermark field*: ``timestamp`` (every change) or, with
publishedOnly, ``publish_timestamp`` (every publication).

A :class:`Position` is "every change up to here has been delivered", as a keyset: the field, a value
``T`` of it and the uuid ``U`` of the last event delivered at ``T``. Changes are delivered in ``(value,
uuid)`` order, so every change at or before ``(T, U)`` is behind the position, whatever the number of
events that share one value: the position (and the cursor) stays small. ``U`` is ``""`` when nothing at
``T`` is delivered yet. An event changed (or published) again later gets a larger value and is
delivered again: once per change (or publication).

The same position is saved in the feed's state file and handed to pulling clients as an opaque cursor
(:func:`encode_cursor`). The state file is replaced in two steps, :func:`prepare_position` (the next
state written and fsync'ed beside it, as ``<stateFile>.next``) and :meth:`PreparedState.commit`
(``os.replace`` into place, then an fsync of the directory), so that the feed can publish an event
between them and rename the moment it is written: see feed.py's delivery protocol.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dxlmispservice.errors import ConfigError, InvalidArguments

#: The watermark fields: every change, or every publication.
CHANGES = "timestamp"
PUBLICATIONS = "publish_timestamp"
FIELDS = (CHANGES, PUBLICATIONS)

#: Version 1 files and cursors (no ``field``) were keyed on ``timestamp``; version 2 named the field; both
#: held the uuids sent at the position's value (``sent``). Version 3 is the keyset ``(timestamp, uuid)``.
STATE_VERSION = 3
NEXT_SUFFIX = ".next"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Position:
    """Every change up to ``(timestamp, uuid)``, in ``(field value, uuid)`` order, is delivered."""

    timestamp: int
    uuid: str = ""
    field: str = CHANGES

    def __post_init__(self) -> None:
        if self.field not in FIELDS:
            raise ValueError(f"field must be one of {FIELDS}, not {self.field!r}")

    def delivered(self, uuid: str, timestamp: int) -> bool:
        """Whether the change ``(uuid, timestamp)`` is behind this position."""
        return (timestamp, uuid) <= (self.timestamp, self.uuid)

    def after(self, uuid: str, timestamp: int) -> Position:
        """The position once ``(uuid, timestamp)`` is delivered too (changes come in ascending order)."""
        if self.delivered(uuid, timestamp):
            raise ValueError(f"change ({timestamp}, {uuid}) is behind the position ({self.timestamp}, {self.uuid})")
        return Position(timestamp, uuid, self.field)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"field": F, "timestamp": T, "uuid": U}``."""
        return {"field": self.field, "timestamp": self.timestamp, "uuid": self.uuid}

    @classmethod
    def from_dict(cls, data: Any, *, version: Any = STATE_VERSION) -> Position:
        """Parse the JSON form of ``version``; ValueError if it is not one. Versions 1 and 2 (a set of uuids
        sent at the value) become ``(timestamp, "")``: the events at that value are sent again, under their
        same message ids, and none is lost."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if version == 1:
            field = CHANGES
        elif version in (2, STATE_VERSION):
            field = data.get("field")
            if field not in FIELDS:
                raise ValueError(f"field must be one of {list(FIELDS)}")
        else:
            raise ValueError(f"unknown version {version!r}")
        timestamp = data.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise ValueError(f"timestamp must be an integer from 0 to {MAX_TIMESTAMP}")
        if version != STATE_VERSION:
            sent = data.get("sent", [])
            if not isinstance(sent, list) or not all(isinstance(u, str) for u in sent):
                raise ValueError("sent must be a list of uuids")
            return cls(timestamp, "", field)
        uuid = data.get("uuid")
        if not isinstance(uuid, str) or len(uuid) > 64:
            raise ValueError("uuid must be a string of at most 64 characters")
        return cls(timestamp, uuid, field)


# --- the state file ------------------------------------------------------------------------------

def load_position(path: str) -> Position | None:
    """The position saved in ``path``, or None when the file does not exist.

    A file that exists but cannot be read is a :class:`ConfigError`: starting over from the look-back
    would send events twice, so the operator decides (fix or delete the file). A ``<path>.next`` left by
    a crash is ignored: it is overwritten by the next delivery.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[Feed] stateFile {path}: cannot be read ({exc}); fix or delete it") from exc
    try:
        return Position.from_dict(data, version=data.get("version"))
    except (AttributeError, ValueError) as exc:
        raise ConfigError(f"[Feed] stateFile {path}: not a feed state ({exc}); fix or delete it") from exc


class PreparedState:
    """The next state, written and fsync'ed beside the state file; :meth:`replace` puts it in place (any
    thread, once; it is short: one rename), :meth:`commit` makes sure of that and fsyncs the directory."""

    def __init__(self, path: str, next_path: str, directory: str) -> None:
        self.path = path
        self.next_path = next_path
        self._directory = directory
        self.replaced = False

    def replace(self) -> None:
        """``os.replace`` the prepared file over the state file (atomic); a second call does nothing."""
        if not self.replaced:
            os.replace(self.next_path, self.path)
            self.replaced = True

    def commit(self) -> None:
        """:meth:`replace` if not done yet, then fsync the directory (so the rename survives a power cut)."""
        self.replace()
        _fsync_directory(self._directory)

    def discard(self) -> None:
        """Remove the prepared file (the state file keeps the previous position)."""
        try:
            os.unlink(self.next_path)
        except FileNotFoundError:
            pass


def prepare_position(path: str, position: Position) -> PreparedState:
    """Write ``position`` to ``<path>.next``, flushed and fsync'ed; the state file itself is untouched.

    The name is fixed (one state file belongs to one feed), so a crash leaves at most one such file, and
    the next delivery overwrites it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    body = json.dumps({"version": STATE_VERSION, **position.to_dict()}, separators=(",", ":"))
    next_path = path + NEXT_SUFFIX
    try:
        with open(next_path, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        try:
            os.unlink(next_path)
        except FileNotFoundError:
            pass
        raise
    return PreparedState(path, next_path, directory)


def save_position(path: str, position: Position) -> None:
    """Replace ``path`` with ``position`` atomically: a reader sees the old file or the new, whole.

    The new content goes to ``<path>.next``, is flushed and fsync'ed, then ``os.replace`` puts it in
    place and the directory is fsync'ed, so the rename survives a power cut.
    """
    prepared = prepare_position(path, position)
    try:
        prepared.commit()
    except BaseException:
        prepared.discard()
        raise


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
    """An opaque, URL-safe cursor holding the position (with its field) and the filters it was reached with."""
    raw = json.dumps({"v": STATE_VERSION, **position.to_dict(), "filters": filters},
                     separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: Any) -> tuple[Position, dict[str, Any]]:
    """The position and filters of a cursor from :func:`encode_cursor` (version 1 or 2); InvalidArguments
    otherwise."""
    if not isinstance(cursor, str) or not cursor:
        raise InvalidArguments("cursor must be the 'next' string of an earlier fetch_events answer")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data.get("filters"), dict):
            raise ValueError("no filters")
        return Position.from_dict(data, version=data.get("v")), data["filters"]
    except (binascii.Error, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise InvalidArguments(f"cursor is not a fetch_events cursor ({exc})") from exc


# --- where the first run starts ------------------------------------------------------------------

#: The latest epoch second a timestamp may name (9999-12-31T23:59:59Z).
MAX_TIMESTAMP = 253_402_300_799


def parse_since(value: Any, now: float) -> int:
    """A start timestamp from a duration back from ``now`` (``30m``, ``12h``, ``7d``, ``2w``), an ISO
    date or date-time (UTC when no zone is given), or epoch seconds. ValueError when it is none of those.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if value != value or value < 0 or value > MAX_TIMESTAMP:
            raise ValueError(f"timestamp {value!r} is out of range (0 to {MAX_TIMESTAMP})")
        return int(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if text.isdigit():
        if len(text) > len(str(MAX_TIMESTAMP)) or int(text) > MAX_TIMESTAMP:
            raise ValueError(f"timestamp {text[:20]!r} is out of range (0 to {MAX_TIMESTAMP})")
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
