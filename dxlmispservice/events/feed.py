"""The event feed: MISP's changed (or published) events, in order, published as DXL events, with nothing lost.

This is the fetch-incidents pattern (XSOAR's ``fetch-incidents``, OpenCTI's connector state). Every
``interval`` seconds one *poll* asks MISP's ``events/restSearch`` for the events whose *watermark field*
is at or after the saved :class:`~dxlmispservice.events.feedstate.Position`, in ascending order of that field,
with the configured filters. Each event goes out as ``{"feed": {...}, "Event": {...}}`` (the envelope of
:mod:`~dxlmispservice.events.envelope`; a notice when it is too big for the fabric) on
``/opendxl-misp/event/feed[/<serviceUniqueId>]/event``, and the position is saved with *each* event.

**The watermark field.** By default it is ``Event.timestamp``, which MISP sets on every change: the feed
sends each change of each event once. With ``publishedOnly`` it is ``Event.publish_timestamp``: the feed
sends each *publication* of each event once. ``timestamp`` will not do there, because publishing
leaves it alone: in MISP's ``app/Model/Event.php``, ``Event::publish`` sets ``published = 1`` and
``publish_timestamp = time()`` and saves with ``fieldList`` ``['published', 'id', 'info',
'publish_timestamp']``, so ``timestamp`` is not written, and an event published after the feed had
moved past its ``timestamp`` would never be sent. An edit, the other way round, moves ``timestamp`` and
unpublishes the event: ``Attribute::touch`` saves the attribute's new timestamp and calls
``Event::unpublishEvent($event, false, $timestamp)``; the tag, object-reference and event-report paths
call ``unpublishEvent`` too; ``processModuleResultsData`` sets ``published = 0`` and ``timestamp =
time()``. So a published event that is edited drops out of a publishedOnly feed until it is published
again, and is then sent again. The dev MISP server does the same (its publish sets ``publish_timestamp``
only; its edits set ``timestamp`` and unpublish). The state file and the ``fetch_events`` cursor
record which field they are keyed on.

**How a poll pages.** Events go out in ``(value, uuid)`` order and the position is the keyset of the
last one. Each request starts again at the position's value (``page=1``) and asks for ``pageSize + 1``
events; MISP orders by the value alone, so a full answer is complete only below the largest value in
it, and the page is the events after the position among those (:func:`fetch_page`; with none, the
request asks for twice as many). A request never skips by offset, so an event edited while a poll runs
(which moves it to the end of the order) cannot shift another event out of sight. The order is
asked for with restSearch's ``order`` filter (``"Event.timestamp ASC"`` or ``"Event.publish_timestamp
ASC"``, which MISP hands to its query as the ORDER BY; the OpenAPI spec does not list it,
``RestSearchComponent`` does). Each answer is also sorted here by ``(value, uuid)``, because the order
MISP returns the events of a page in is not the order it chose them by; events behind the position are
dropped whatever the server sent.

**Delivering one event** (the state file is ``S``):

#. the position *after* the event is written to ``S.next`` and fsync'ed;
#. the event is published; ``os.replace(S.next, S)`` (atomic) runs the moment paho has written the
   message's last byte into the broker socket (the kernel's send buffer), in paho's network thread, as the
   payload's ``on_written`` hook (dxlutil.dxl_publisher), and the publisher returns after that, at most
   ``dxlutil.WRITE_TIMEOUT`` seconds; a publish that fails or times out ends the poll, ``S`` is left as
   it was (the hook is cancelled), and the next poll sends the event again;
#. an fsync of the directory (and the rename here, for a publisher that has no network thread to run it).

**Guarantees**, across restarts including ``kill -9``. Nothing is lost up to the broker's socket; after a
crash of the service, at most the one change in flight is sent again, with the same message id.

- *No loss.* ``S`` moves past an event only after the event's bytes are in the kernel's socket buffer,
  which the kernel still sends after the process dies. What is not covered: a connection that is reset
  (not closed) before those bytes leave the host, and the broker itself (QoS 0).
- *No duplicate, except the event in flight at a kill.* A kill between the socket write and the
  ``os.replace`` that follows it in the same thread (a few bytecodes and one rename) sends that one
  event again after the restart. Measured on the dev stack (2 cores, loopback broker, pageSize 100,
  ``kill -9`` at random moments of a run): 4 of 100 kills sent the event in flight again, none lost an
  event; with the earlier order (the publish returned once paho had queued the message, then a whole
  temporary-file, fsync and rename cycle) 58 of 150 kills did. Each feed event carries a DXL
  ``message_id`` derived from ``(topic, field, Event.uuid, value)`` (:func:`feed_message_id`), so a
  consumer that must be exact can drop a repeated message id, or a repeated ``(Event.uuid, Event.<field>)``.
- *An edited event is sent again, once per change* (per publication with ``publishedOnly``): its new
  value is past the position.
- The first run starts ``lookback`` back (a duration or a date), and saves that position at once, so a
  later restart does not recompute it.

**Limits.** MISP's timestamps have one-second resolution: two changes (publications) of one event in
the same second, with a poll between them, are one to the feed. An event whose watermark is set in
the past (a sync that keeps the remote timestamps) behind the position is not seen. Events deleted in
MISP are not announced. One state file belongs to one service instance. A state file of the other
field (``publishedOnly`` was switched) is a ConfigError: the orders do not map onto each other.

**Pull instead of subscribe:** :func:`fetch_events` serves the same pages to a requester, with the
position as an opaque cursor (``feedstate.encode_cursor``), keyed on ``publish_timestamp`` when its
filters ask for ``published_only``.
"""
from __future__ import annotations

import logging
import time
import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from dxlmispservice.events.envelope import json_size
from dxlmispservice.events.feedformats import format_message, format_notice
from dxlmispservice.events.feedfilters import Filters
from dxlmispservice.events.worker import Worker
from dxlmispservice.events.publisher import EventPayload, Publisher, TooLarge
from dxlmispservice.names import feed_topic
from dxlmispservice.settings.feed import FEED_FORMATS
from dxlmispservice.settings.formats import FormatSettings
from dxlmispservice.errors import ConfigError, InternalError, InvalidArguments, MispServiceError, ResponseTooLarge
from dxlmispservice.events.feedstate import (CHANGES, PUBLICATIONS, Position, decode_cursor, encode_cursor,
                                      load_position, parse_since, prepare_position, save_position)

logger = logging.getLogger(__name__)


#: restSearch's ``order`` value per watermark field: MISP passes it to the query as the ORDER BY.
SEARCH_ORDERS = {CHANGES: "Event.timestamp ASC", PUBLICATIONS: "Event.publish_timestamp ASC"}

#: The namespace of the feed events' DXL message ids (uuid5).
MESSAGE_ID_NAMESPACE = uuidlib.UUID("5b0f4f5e-2f0c-4d53-9c1c-6d1f3f0e7a41")

#: ``fetch_events``: events per answer when the request names no limit, and the most it may name.
DEFAULT_FETCH_LIMIT = 100
MAX_FETCH_LIMIT = 1000
#: The most events one restSearch of the feed asks for (to see past events that share one value).
MAX_ASK = 10_000
#: Changes of the last this many seconds are held back: MISP stamps in whole seconds, and another change
#: may still land in a second the feed has read (or a save may commit a little after its stamp). Past
#: them, the keyset position never skips a change; a MISP clock behind the service's by more loses some.
SETTLE_SECONDS = 5

#: The clock ``fetch_events`` holds recent changes back by (epoch seconds).
clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Page:
    """New events after a position, sorted by ``(value, uuid)``; ``more`` when MISP has others; ``ask``:
    how many events the last restSearch asked for (a hint for the next poll at the same value)."""

    events: tuple[dict[str, Any], ...]
    more: bool
    ask: int = 0


def event_key(event: dict[str, Any], field: str = CHANGES) -> tuple[int, str]:
    """``(value of field, uuid)`` of an inner ``Event`` dict (the uuid in lower case, as keysets compare)."""
    return int(event[field]), str(event["uuid"]).lower()


def feed_message_id(topic: str, field: str, uuid: str, value: int) -> str:
    """The DXL message id of one feed event: the same for the same change (or publication) on one topic,
    in dxlclient's form (a lower-case uuid in braces)."""
    return "{" + str(uuidlib.uuid5(MESSAGE_ID_NAMESPACE, f"{topic}\n{field}\n{uuid}\n{value}")) + "}"


def fetch_page(misp: Any, position: Position, filters: Filters, limit: int, *, ask: int = 0,
               horizon: int | None = None) -> Page:
    """Up to ``limit`` events after ``position`` (in its ``(value, uuid)`` order), oldest first.

    restSearch orders by the value only, and ties come back in any order, so one request for ``ask``
    events (from the position's value, page 1) is complete only below the largest value it holds when it
    comes back full. The events after the position among those complete ones are the page; when there
    are none (many events share one value), the request is repeated asking for twice as many, up to
    :data:`MAX_ASK`. Changes with a value after ``horizon`` are held back (:data:`SETTLE_SECONDS`).
    ``misp`` is a MispConnection: its errors (MispUnavailable, MispRefused) propagate.
    """
    field = position.field
    if field != filters.watermark:
        raise InternalError(f"a position in {field} order cannot page a feed that follows {filters.watermark}")
    ask = min(max(ask, limit + 1), MAX_ASK)
    while True:
        answer = misp.call(lambda pymisp, ask=ask: pymisp.search(
            controller="events", return_format="json", pythonify=False, **{field: position.timestamp},
            limit=ask, page=1, order=SEARCH_ORDERS[field], **filters.search_kwargs()))
        if not isinstance(answer, list):
            raise InternalError(f"MISP's events/restSearch answered a {type(answer).__name__}, not a list")
        keyed = _keyed(answer, field)
        full = len(answer) >= ask
        edge = max((key[0] for key, _ in keyed), default=position.timestamp)
        settled = horizon is None or edge <= horizon
        fresh = sorted(((key, event) for key, event in keyed
                        if (not full or key[0] < edge) and (horizon is None or key[0] <= horizon)
                        and not position.delivered(key[1], key[0])),
                       key=lambda pair: pair[0])
        if fresh or not full or not settled:
            more = (full and settled) or len(fresh) > limit
            return Page(tuple(event for _, event in fresh[:limit]), more=more, ask=ask)
        if ask >= MAX_ASK:
            raise InternalError(f"more than {MAX_ASK} events share Event.{field} {edge}: the feed cannot page "
                                "past them")
        ask = min(ask * 2, MAX_ASK)


def _keyed(answer: list[Any], field: str) -> list[tuple[tuple[int, str], dict[str, Any]]]:
    """The events of a restSearch answer with their ``(value, uuid)``; unusable results are skipped."""
    keyed = []
    for item in answer:
        event = item.get("Event", item) if isinstance(item, dict) else None
        try:
            keyed.append((event_key(event, field), event))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            logger.warning("Skipped a restSearch result with no usable uuid and %s", field)
    return keyed


class Feed:
    """The poll loop on one daemon thread: ``start()`` once, ``stop()`` once.

    ``settings`` is a ``FeedSettings``; ``misp`` a MispConnection; ``publisher(topic, payload)`` sends one
    DXL event and returns once it is in the broker socket (dxlutil.dxl_publisher), raising otherwise; the
    payload is a ``dxlutil.EventPayload`` (a dict with the message id to send it under). ``clock``
    (epoch seconds) only serves the first run's look-back.
    """

    def __init__(self, settings: Any, misp: Any, publisher: Publisher, *, service_unique_id: str = "",
                 clock: Callable[[], float] = time.time, stop_timeout: float = 10.0,
                 settle: int = SETTLE_SECONDS, formats: FormatSettings | None = None) -> None:
        if settings.page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._settings = settings
        self._misp = misp
        self._publisher = publisher
        self._unique_id = service_unique_id
        self._topic = feed_topic(service_unique_id)
        self._format_names = tuple(settings.formats)
        self._format_settings = formats or FormatSettings()
        self._filters = Filters.from_settings(settings)
        self._clock = clock
        self._settle = settle
        self._worker = Worker("misp-event-feed", self._run, stop_timeout=stop_timeout,
                              description="The event feed thread", log=logger)
        self._stop = self._worker.stopping
        self._position: Position | None = None
        self._ask = 0  # the last restSearch size at the position's value (see fetch_page)
        self._ask_at: tuple[int, str] | None = None
        self.notices = 0  # events published as notices: too big for the fabric
        self.conversion_failures = 0  # changes a format could not convert (a notice went in their place)
        self.published = 0  # events published since the start, notices included
        self.failures = 0  # polls that failed since the start
        self.last_poll: float | None = None  # epoch seconds when the last poll completed
        self.last_error = ""

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

    def status(self) -> dict[str, Any]:
        """What the ``status`` topic reports of the feed: its position, how long since it last caught up
        with MISP (``lag_seconds``), and its counts."""
        lag = None if self.last_poll is None else round(max(0.0, self._clock() - self.last_poll), 3)
        return {"topic": self._topic, "running": self._worker.running,
                "position": self._position.to_dict() if self._position is not None else None,
                "last_poll": self.last_poll, "lag_seconds": lag, "published": self.published,
                "notices": self.notices, "failures": self.failures, "last_error": self.last_error,
                "formats": list(self._format_names), "conversion_failures": self.conversion_failures}

    def start(self) -> None:
        """Load (or create) the state, then poll now and every ``interval`` seconds on a thread."""
        if self._worker.thread is not None:
            raise RuntimeError("Feed.start() called twice")
        position = self.position
        logger.info("Event feed on %s from %s %d (state file %s)", self._topic, position.field,
                    position.timestamp, self._settings.state_file)
        self._worker.start()

    def stop(self) -> None:
        """Stop after the event in hand (its state is saved); waits at most ``stop_timeout`` seconds."""
        self._worker.stop()

    def poll_once(self) -> int:
        """One poll: deliver every new event (module docstring: prepare, publish, commit); returns how many
        went out.

        Raises what MISP or the publisher raised; the events before it are published and saved.
        """
        published = 0
        while not self._stop.is_set():
            at = (self.position.timestamp, self.position.field)
            page = fetch_page(self._misp, self.position, self._filters, self._settings.page_size,
                              horizon=int(self._clock()) - self._settle,
                              ask=self._ask if self._ask_at == at else 0)
            self._ask, self._ask_at = page.ask, at
            for event in page.events:
                if self._stop.is_set():
                    return published
                self._deliver(event)
                published += 1
                self.published += 1
            if not page.more or not page.events:
                break
        self.last_poll = self._clock()
        return published

    def _deliver(self, event: dict[str, Any]) -> None:
        field = self._filters.watermark
        value, uuid = event_key(event, field)
        previous = self.position
        after = previous.after(uuid, value)
        prepared = prepare_position(self._settings.state_file, after)
        try:
            for index, name in enumerate(self._format_names):  # the state moves with the last one written
                last = index == len(self._format_names) - 1
                self._publish(name, event, field, value, after, previous, prepared.replace if last else None)
        except BaseException:
            if prepared.replaced:  # it was written, and the state moved with it
                self._position = after
            else:
                prepared.discard()
            raise
        prepared.commit()  # the rename, unless the publisher already ran it; then the directory fsync
        self._position = after

    def _publish(self, name: str, event: dict[str, Any], field: str, value: int, after: Position,
                 previous: Position, on_written: Callable[[], None] | None) -> None:
        """One change in one format on its topic; a notice in its place when it is too big for the fabric."""
        topic = feed_topic(self._unique_id, name)
        message_id = feed_message_id(topic, field, str(event["uuid"]), value)
        envelope = {"position": after.to_dict(), "previous": previous.to_dict(), "message_id": message_id,
                    "complete": True}
        message, converted = format_message(name, event, envelope, self._format_settings)
        if not converted:
            self.conversion_failures += 1
        try:
            self._publisher(topic, EventPayload(message, message_id, on_written=on_written))
        except TooLarge as exc:  # nothing was sent: a notice that fits goes in its place
            self.notices += 1
            logger.warning("Event feed: event %s (%s %d) in %s is %d bytes on the fabric, over its limit of %d: "
                           "published a notice instead (%d so far); get_event gives the event in pages",
                           event.get("uuid"), field, value, name, exc.size, exc.limit, self.notices)
            self._publisher(topic, EventPayload(format_notice(message, event), message_id, on_written=on_written))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                count = self.poll_once()
                if count:
                    logger.info("Event feed: published %d event(s), now at %s %d", count,
                                self.position.field, self.position.timestamp)
            except MispServiceError as exc:
                self.failures, self.last_error = self.failures + 1, exc.message
                logger.warning("Event feed poll failed, retrying in %.0f s: %s", self._settings.interval,
                               exc.message)
            except Exception as exc:
                self.failures, self.last_error = self.failures + 1, f"{type(exc).__name__}: {exc}"
                logger.exception("Event feed poll failed, retrying in %.0f s", self._settings.interval)
            self._stop.wait(self._settings.interval)

    def _initial_position(self) -> Position:
        field = self._filters.watermark
        saved = load_position(self._settings.state_file)
        if saved is not None:
            if saved.field != field:
                raise ConfigError(
                    f"[Feed] stateFile {self._settings.state_file}: it holds a position in Event.{saved.field} "
                    f"order, but publishedOnly={'true' if field == PUBLICATIONS else 'false'} follows "
                    f"Event.{field}. The two orders do not map onto each other: set publishedOnly back, or "
                    f"delete the file and set lookback to where the feed should start (it stood at "
                    f"{_iso(saved.timestamp)} in {saved.field})")
            return saved
        try:
            start = parse_since(self._settings.lookback, self._clock())
        except ValueError as exc:
            raise ConfigError(f"[Feed] lookback: {exc}") from exc
        position = Position(start, field=field)
        save_position(self._settings.state_file, position)  # a restart must not recompute the look-back
        logger.info("Event feed: first run, starting %s back at %s %d", self._settings.lookback, field, start)
        return position


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_events(misp: Any, payload: dict[str, Any], *, max_answer: int | None = None,
                 formats: FormatSettings | None = None) -> dict[str, Any]:
    """The ``fetch_events`` request topic: one page of the feed, for clients that pull.

    Payload: ``{"since": ..., "limit": n, "filters": {...}}`` for the first page (``since``: epoch
    seconds, a duration back from now such as ``"7d"``, or an ISO date; default 0), then
    ``{"cursor": next, "limit": n}`` for the following ones (the cursor carries the filters).
    Answer: ``{"events": [{"Event": ...}, ...], "next": cursor, "more": bool}``. Paging by ``next``
    neither repeats nor skips a change; an empty page's ``next`` is where to ask again later.
    With ``filters.published_only`` the pages follow ``publish_timestamp`` (each publication once), and
    the cursor records it.

    ``max_answer`` (the service's maxResponseSize, bound by the topic table) keeps the answer under it: the
    page ends early (``more``) before an event that would not fit, and an event too big for an answer of
    its own comes as a notice (``feed.complete`` false, the event's summary), so that paging always goes on.
    ``"format"`` (with since, position or cursor; default ``misp``) gives each change in that format, as
    the feed's format topics carry it; ``formats`` (bound by the table) is the ``[Formats]`` settings.
    """
    if not isinstance(payload, dict):
        raise InvalidArguments("the payload must be an object")
    unknown = sorted(set(payload) - {"since", "position", "limit", "filters", "cursor", "format"})
    if unknown:
        raise InvalidArguments(f"unknown keys {unknown}; accepted: cursor, filters, format, limit, position, since")
    format_name = payload.get("format", "misp")
    if format_name not in FEED_FORMATS:
        raise InvalidArguments(f"format: {format_name!r} is not a format; accepted: {', '.join(FEED_FORMATS)}")
    if "position" in payload and ("since" in payload or "cursor" in payload):
        raise InvalidArguments("give one of since, position or cursor")
    limit = payload.get("limit", DEFAULT_FETCH_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FETCH_LIMIT:
        raise InvalidArguments(f"limit must be an integer from 1 to {MAX_FETCH_LIMIT}")
    if "cursor" in payload:
        if "since" in payload or "filters" in payload:
            raise InvalidArguments("with a cursor, leave out since and filters: the cursor carries them")
        position, filter_data = decode_cursor(payload["cursor"])
        filters = Filters.from_payload(filter_data)
        if position.field != filters.watermark:
            raise InvalidArguments(f"this cursor pages by Event.{position.field} but its filters need "
                                   f"Event.{filters.watermark} (an older cursor with published_only): start "
                                   "again with since and the filters")
    else:
        filters = Filters.from_payload(payload.get("filters"))
        try:
            if "position" in payload:  # a feed message's feed.position: go on right after it
                position = Position.from_dict(payload["position"])
            else:
                position = Position(parse_since(payload.get("since", 0), clock()), field=filters.watermark)
        except ValueError as exc:
            key = "position" if "position" in payload else "since"
            raise InvalidArguments(f"{key}: {exc}") from exc
        if position.field != filters.watermark:
            raise InvalidArguments(f"position: it is in Event.{position.field} order, but these filters follow "
                                   f"Event.{filters.watermark} (published_only)")
    page = fetch_page(misp, position, filters, limit, horizon=int(clock()) - SETTLE_SECONDS)
    items: list[dict[str, Any]] = []
    frame = _ANSWER_FRAME + len(encode_cursor(position, filters.to_payload()))  # the cursor carries the filters
    if max_answer is not None and frame > max_answer:
        raise ResponseTooLarge(f"fetch_events: the cursor of these filters alone is {frame} bytes, more than "
                               f"maxResponseSize {max_answer}: use fewer or shorter filters")
    more, used = page.more, frame
    for event in page.events:
        timestamp, uuid = event_key(event, position.field)
        after = position.after(uuid, timestamp)
        item, _ = format_message(format_name, event, {"position": after.to_dict(), "previous": position.to_dict(),
                                                      "complete": True}, formats or FormatSettings())
        if max_answer is not None:
            size = json_size(item)
            if size + frame > max_answer:  # too big for any answer: its notice stands in for it
                item = format_notice(item, event)
                size = json_size(item)
            if items and used + size > max_answer:  # it goes first on the next page
                more = True
                break
            used += size + 1
        items.append(item)
        position = after
    return {"events": items, "next": encode_cursor(position, filters.to_payload()), "more": more}


#: What a fetch_events answer needs besides its events and its cursor: the keys and the flag.
_ANSWER_FRAME = 256

fetch_events.paging_advice = (  # type: ignore[attr-defined]
    'Ask for fewer events at a time: lower "limit" (an event too big for an answer of its own comes as a '
    'notice; get it with get_event\'s advice).')
