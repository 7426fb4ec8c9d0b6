"""The event feed: MISP's changed events, in order, published as DXL events, with nothing lost.

This is the fetch-incidents pattern (XSOAR's ``fetch-incidents``, OpenCTI's connector state). Every
``interval`` seconds one *poll* asks MISP's ``events/restSearch`` for the events whose ``timestamp``
(their last change) is at or after the saved :class:`~dxlmispservice.feedstate.Position`, in ascending
timestamp order, with the configured filters. Each event goes out as ``{"Event": {...}}`` on
``/opendxl-misp/event/feed[/<serviceUniqueId>]/event``, and the position is saved after *each* event.

**How a poll pages.** Each request starts again at the saved position (``page=1``) and asks for
``len(position.sent) + pageSize`` events: those already sent at the position's timestamp come first,
then at least ``pageSize`` new ones. A request never skips by offset, so an event edited while a poll
runs (which moves it to the end of the order) cannot shift another event out of sight. The order is
asked for with restSearch's ``order`` filter (``"Event.timestamp ASC"``, which MISP hands to its query
as the ORDER BY; the OpenAPI spec does not list it, ``RestSearchComponent`` does). Each answer is also
sorted here by ``(timestamp, uuid)``, because the order MISP returns the events of a page in is not the
order it chose them by; events behind the position are dropped whatever the server sent.

**Guarantees**, across restarts including ``kill -9``:

- *No loss.* The position only moves past an event after the event was handed to the publisher. A
  poll that fails (MISP unavailable, a publish that raises) stops where it is and the next poll starts
  from the last saved event.
- *No duplicate, except in one window.* The state is saved right after each publish. A crash after the
  DXL send returned and before the ``os.replace`` of the state file sends that one event again after the
  restart: the window is one fsync long, per event. Consumers that must be exact can drop a repeated
  ``(Event.uuid, Event.timestamp)``.
- *An edited event is sent again, once per change*: its new timestamp is past the position.
- The first run starts ``lookback`` back (a duration or a date), and saves that position at once, so a
  later restart does not recompute it.

**Limits.** MISP's timestamp has one-second resolution: two changes to one event in the same second,
with a poll between them, are one change to the feed. An event whose timestamp is set in the past (a
sync that keeps the remote timestamp) behind the position is not seen. Events deleted in MISP are not
announced. One state file belongs to one service instance.

**Pull instead of subscribe:** :func:`fetch_events` serves the same pages to a requester, with the
position as an opaque cursor (``feedstate.encode_cursor``).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from dxlmispservice.errors import ConfigError, InternalError, InvalidArguments, MispServiceError
from dxlmispservice.feedstate import (Position, decode_cursor, encode_cursor, load_position, parse_since,
                                      save_position)

logger = logging.getLogger(__name__)

#: ``(topic, payload)``: sends one DXL event (HACKING.md, "Publishing DXL events").
Publisher = Callable[[str, dict], None]

#: The DXL event topic is this prefix, the optional serviceUniqueId, then ``/event``.
FEED_TOPIC_PREFIX = "/opendxl-misp/event/feed"

#: restSearch's ``order`` value: MISP passes it to the query as the ORDER BY of the events it picks.
SEARCH_ORDER = "Event.timestamp ASC"

#: ``fetch_events``: events per answer when the request names no limit, and the most it may name.
DEFAULT_FETCH_LIMIT = 100
MAX_FETCH_LIMIT = 1000


def feed_topic(service_unique_id: str = "") -> str:
    """The feed's DXL event topic: ``/opendxl-misp/event/feed[/<id>]/event``."""
    middle = f"/{service_unique_id}" if service_unique_id else ""
    return f"{FEED_TOPIC_PREFIX}{middle}/event"


@dataclass(frozen=True)
class Filters:
    """Which events the feed carries; each field maps to one restSearch filter."""

    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    published_only: bool = False
    threat_levels: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> Filters:
        """The filters of a ``FeedSettings``."""
        return cls(tuple(settings.tags), tuple(settings.not_tags), tuple(settings.orgs),
                   bool(settings.published_only), tuple(int(t) for t in settings.threat_levels))

    @classmethod
    def from_payload(cls, data: Any) -> Filters:
        """The filters of a request (``{"tags": [...], "not_tags": [...], "orgs": [...],
        "published_only": bool, "threat_levels": [1, 2]}``, every key optional); InvalidArguments if bad."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidArguments("filters must be an object")
        known = {"tags", "not_tags", "orgs", "published_only", "threat_levels"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArguments(f"unknown filters {unknown}; accepted: {sorted(known)}")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InvalidArguments(f"filters.{key} must be a list of non-empty strings")
            return tuple(value)

        levels = data.get("threat_levels", [])
        if not isinstance(levels, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4 for v in levels):
            raise InvalidArguments("filters.threat_levels must be a list of integers from 1 to 4")
        published = data.get("published_only", False)
        if not isinstance(published, bool):
            raise InvalidArguments("filters.published_only must be true or false")
        return cls(strings("tags"), strings("not_tags"), strings("orgs"), published, tuple(levels))

    def to_payload(self) -> dict[str, Any]:
        """The request form of the filters that are set (what :meth:`from_payload` reads)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items() if value}

    def search_kwargs(self) -> dict[str, Any]:
        """The restSearch arguments (PyMISP ``search`` keywords); not-tags use MISP's ``!`` negation."""
        kwargs: dict[str, Any] = {}
        if self.tags or self.not_tags:
            kwargs["tags"] = list(self.tags) + [f"!{tag}" for tag in self.not_tags]
        if self.orgs:
            kwargs["org"] = list(self.orgs)
        if self.published_only:
            kwargs["published"] = True
        if self.threat_levels:
            kwargs["threat_level_id"] = list(self.threat_levels)
        return kwargs


@dataclass(frozen=True)
class Page:
    """New events after a position, sorted by ``(timestamp, uuid)``; ``more`` when MISP has others."""

    events: tuple[dict[str, Any], ...]
    more: bool


def event_key(event: dict[str, Any]) -> tuple[int, str]:
    """``(timestamp, uuid)`` of an inner ``Event`` dict."""
    return int(event["timestamp"]), str(event["uuid"])


def fetch_page(misp: Any, position: Position, filters: Filters, limit: int) -> Page:
    """Up to ``limit`` events changed at or after ``position`` and not yet delivered, oldest first.

    ``misp`` is a MispClient: its errors (MispUnavailable, MispRefused) propagate.
    """
    ask = len(position.sent) + limit
    answer = misp.call(lambda pymisp: pymisp.search(
        controller="events", return_format="json", pythonify=False, timestamp=position.timestamp,
        limit=ask, page=1, order=SEARCH_ORDER, **filters.search_kwargs()))
    if not isinstance(answer, list):
        raise InternalError(f"MISP's events/restSearch answered a {type(answer).__name__}, not a list")
    fresh: list[dict[str, Any]] = []
    for item in answer:
        event = item.get("Event", item) if isinstance(item, dict) else None
        try:
            timestamp, uuid = event_key(event)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            logger.warning("Skipped a restSearch result with no usable uuid and timestamp")
            continue
        if not position.delivered(uuid, timestamp):
            fresh.append(event)  # type: ignore[arg-type]
    fresh.sort(key=event_key)
    return Page(tuple(fresh[:limit]), more=len(answer) >= ask or len(fresh) > limit)


class Feed:
    """The poll loop on one daemon thread: ``start()`` once, ``stop()`` once.

    ``settings`` is a ``FeedSettings``; ``misp`` a MispClient; ``publisher(topic, payload)`` sends one
    DXL event. ``clock`` (epoch seconds) only serves the first run's look-back.
    """

    def __init__(self, settings: Any, misp: Any, publisher: Publisher, *, service_unique_id: str = "",
                 clock: Callable[[], float] = time.time, stop_timeout: float = 10.0) -> None:
        if settings.page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._settings = settings
        self._misp = misp
        self._publisher = publisher
        self._topic = feed_topic(service_unique_id)
        self._filters = Filters.from_settings(settings)
        self._clock = clock
        self._stop_timeout = stop_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._position: Position | None = None

    @property
    def topic(self) -> str:
        """The DXL topic the feed publishes on."""
        return self._topic

    @property
    def position(self) -> Position:
        """The position saved last (loads the state file, or sets up the first run, on first use)."""
        if self._position is None:
            self._position = self._initial_position()
        return self._position

    def start(self) -> None:
        """Load (or create) the state, then poll now and every ``interval`` seconds on a thread."""
        if self._thread is not None:
            raise RuntimeError("Feed.start() called twice")
        position = self.position
        logger.info("Event feed on %s from timestamp %d (state file %s)", self._topic, position.timestamp,
                    self._settings.state_file)
        self._thread = threading.Thread(target=self._run, name="misp-event-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the event in hand (its state is saved); waits at most ``stop_timeout`` seconds."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self._stop_timeout)
            if thread.is_alive():
                logger.warning("The event feed thread did not stop within %.1f s; leaving it",
                               self._stop_timeout)

    def poll_once(self) -> int:
        """One poll: publish every new event, saving the state after each; returns how many went out.

        Raises what MISP or the publisher raised; the events before it are published and saved.
        """
        published = 0
        while not self._stop.is_set():
            page = fetch_page(self._misp, self.position, self._filters, self._settings.page_size)
            for event in page.events:
                if self._stop.is_set():
                    return published
                self._publisher(self._topic, {"Event": event})
                timestamp, uuid = event_key(event)
                self._save(self.position.after(uuid, timestamp))
                published += 1
            if not page.more or not page.events:
                break
        return published

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                count = self.poll_once()
                if count:
                    logger.info("Event feed: published %d event(s), now at timestamp %d", count,
                                self.position.timestamp)
            except MispServiceError as exc:
                logger.warning("Event feed poll failed, retrying in %.0f s: %s", self._settings.interval,
                               exc.message)
            except Exception:
                logger.exception("Event feed poll failed, retrying in %.0f s", self._settings.interval)
            self._stop.wait(self._settings.interval)

    def _initial_position(self) -> Position:
        saved = load_position(self._settings.state_file)
        if saved is not None:
            return saved
        try:
            start = parse_since(self._settings.lookback, self._clock())
        except ValueError as exc:
            raise ConfigError(f"[Feed] lookback: {exc}") from exc
        position = Position(start)
        save_position(self._settings.state_file, position)  # a restart must not recompute the look-back
        logger.info("Event feed: first run, starting %s back at timestamp %d", self._settings.lookback, start)
        return position

    def _save(self, position: Position) -> None:
        save_position(self._settings.state_file, position)
        self._position = position


def fetch_events(misp: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The ``fetch_events`` request topic: one page of the feed, for clients that pull.

    Payload: ``{"since": ..., "limit": n, "filters": {...}}`` for the first page (``since``: epoch
    seconds, a duration back from now such as ``"7d"``, or an ISO date; default 0), then
    ``{"cursor": next, "limit": n}`` for the following ones (the cursor carries the filters).
    Answer: ``{"events": [{"Event": ...}, ...], "next": cursor, "more": bool}``. Paging by ``next``
    neither repeats nor skips a change; an empty page's ``next`` is where to ask again later.
    """
    if not isinstance(payload, dict):
        raise InvalidArguments("the payload must be an object")
    unknown = sorted(set(payload) - {"since", "limit", "filters", "cursor"})
    if unknown:
        raise InvalidArguments(f"unknown keys {unknown}; accepted: cursor, filters, limit, since")
    limit = payload.get("limit", DEFAULT_FETCH_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FETCH_LIMIT:
        raise InvalidArguments(f"limit must be an integer from 1 to {MAX_FETCH_LIMIT}")
    if "cursor" in payload:
        if "since" in payload or "filters" in payload:
            raise InvalidArguments("with a cursor, leave out since and filters: the cursor carries them")
        position, filter_data = decode_cursor(payload["cursor"])
        filters = Filters.from_payload(filter_data)
    else:
        filters = Filters.from_payload(payload.get("filters"))
        try:
            position = Position(parse_since(payload.get("since", 0), time.time()))
        except ValueError as exc:
            raise InvalidArguments(f"since: {exc}") from exc
    page = fetch_page(misp, position, filters, limit)
    for event in page.events:
        timestamp, uuid = event_key(event)
        position = position.after(uuid, timestamp)
    return {"events": [{"Event": event} for event in page.events],
            "next": encode_cursor(position, filters.to_payload()),
            "more": page.more}
