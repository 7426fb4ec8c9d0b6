"""The event feed and fetch_events, against an in-memory MISP that pages and filters like restSearch."""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dxlmispservice.events import feed as feed_module, feedstate
from dxlmispservice.events.publisher import EventPayload, TooLarge
from dxlmispservice.errors import ConfigError, InvalidArguments, MispUnavailable
from dxlmispservice.events.feed import SEARCH_ORDERS, Feed, Filters, feed_message_id, feed_topic, fetch_events
from dxlmispservice.events.feedstate import PUBLICATIONS, Position, encode_cursor, load_position, save_position
from dxlmispservice.settings import FeedSettings

NOW = 2_000_000_000
DAY = 86_400


class FakeMisp:
    """A MispConnection stand-in: ``call(fn)`` runs ``fn`` on itself, and ``search`` acts like restSearch.

    It honours ``timestamp`` and ``publish_timestamp`` (>=), ``order`` (ascending by either; ties in a
    random order each call), ``limit``/``page``, ``tags`` (OR, with ``!`` negation), ``org``,
    ``published``, ``threat_level_id``, and returns each page's events shuffled, as MISP does not return
    them in its selection order. Like MISP, an edit sets ``timestamp`` and unpublishes; a publication sets
    ``publish_timestamp`` and leaves ``timestamp`` alone.
    """

    def __init__(self, seed: int = 7) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.down = False
        self.random = random.Random(seed)

    def add(self, uuid: str, timestamp: int, *, tags: tuple[str, ...] = (), org: str = "ORG",
            published: bool = True, threat_level: int = 1) -> None:
        """Create or replace one event (a published one was published at its timestamp)."""
        self.events[uuid] = {"uuid": uuid, "timestamp": str(timestamp), "info": f"event {uuid}",
                             "Orgc": {"name": org}, "published": published,
                             "publish_timestamp": str(timestamp if published else 0),
                             "threat_level_id": str(threat_level), "Tag": [{"name": t} for t in tags]}

    def edit(self, uuid: str, timestamp: int) -> None:
        """Change one event: MISP gives it a new timestamp and unpublishes it."""
        self.events[uuid] = {**self.events[uuid], "timestamp": str(timestamp), "info": f"edited at {timestamp}",
                             "published": False}

    def publish(self, uuid: str, at: int) -> None:
        """Publish one event: MISP sets published and publish_timestamp, and leaves timestamp alone."""
        self.events[uuid] = {**self.events[uuid], "published": True, "publish_timestamp": str(at)}

    def call(self, fn: Callable[[FakeMisp], Any]) -> Any:
        if self.down:
            raise MispUnavailable("MISP could not be reached")
        return fn(self)

    def search(self, **kw: Any) -> list[dict[str, Any]]:
        self.calls.append(kw)
        assert kw["controller"] == "events" and kw["return_format"] == "json" and not kw["pythonify"]
        chosen = [e for e in self.events.values() if self._matches(e, kw)]
        self.random.shuffle(chosen)
        field = {order: name for name, order in SEARCH_ORDERS.items()}.get(kw.get("order"))
        if field:
            chosen.sort(key=lambda e: int(e[field]))  # stable: ties keep their random order
        limit, page = kw.get("limit"), kw.get("page") or 1
        if limit:
            chosen = chosen[(page - 1) * limit: page * limit]
        self.random.shuffle(chosen)
        return [{"Event": json.loads(json.dumps(e))} for e in chosen]

    @staticmethod
    def _matches(event: dict[str, Any], kw: dict[str, Any]) -> bool:
        for field in ("timestamp", "publish_timestamp"):
            if kw.get(field) and int(event[field]) < int(kw[field]):
                return False
        names = {t["name"] for t in event["Tag"]}
        wanted = [t for t in kw.get("tags") or [] if not t.startswith("!")]
        banned = [t[1:] for t in kw.get("tags") or [] if t.startswith("!")]
        if (wanted and not names & set(wanted)) or names & set(banned):
            return False
        if kw.get("org") and event["Orgc"]["name"] not in kw["org"]:
            return False
        if kw.get("published") is not None and event["published"] != kw["published"]:
            return False
        levels = kw.get("threat_level_id")
        return not levels or int(event["threat_level_id"]) in levels


class ListPublisher:
    """Collects published events; raises on the call after ``fail_after`` successful ones.

    Like dxlutil's publisher, it runs the payload's ``on_written`` once the event is "written" (after
    ``on_publish``, which stands for that moment), unless ``run_hooks`` is off (a publisher without a
    network thread)."""

    def __init__(self, fail_after: int | None = None, *, run_hooks: bool = True, limit: int | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.limit = limit
        self.fail_after = fail_after
        self.run_hooks = run_hooks
        self.on_publish: Callable[[dict[str, Any]], None] = lambda event: None

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise RuntimeError("simulated crash")
        size = len(json.dumps(payload).encode())
        if self.limit is not None and size > self.limit:
            raise TooLarge(topic, size, self.limit)
        self.sent.append((topic, payload))
        self.on_publish(payload["Event"])
        on_written = getattr(payload, "on_written", None)
        if self.run_hooks and on_written is not None:
            on_written()

    def changes(self) -> list[tuple[str, int]]:
        """(uuid, timestamp) of each published event, in order."""
        return [(p["Event"]["uuid"], int(p["Event"]["timestamp"])) for _, p in self.sent]


@pytest.fixture()
def state_file(tmp_path: Path) -> str:
    """A state file path in a fresh directory."""
    return str(tmp_path / "state" / "feed.json")


def make_settings(state_file: str, **kw: Any) -> FeedSettings:
    """FeedSettings with a 1-day look-back, the given state file, and ``kw`` on top."""
    return replace(FeedSettings(enabled=True, interval=0.05, lookback="1d", state_file=state_file), **kw)


def make_feed(settings: FeedSettings, misp: FakeMisp, out: ListPublisher, **kw: Any) -> Feed:
    """A Feed whose clock reads NOW and that holds nothing back (unless ``settle`` says otherwise)."""
    return Feed(settings, misp, out, clock=lambda: NOW, **{"settle": 0, **kw})


@pytest.fixture(autouse=True)
def _fetch_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch_events reads NOW, SETTLE_SECONDS on: it holds back nothing up to NOW."""
    monkeypatch.setattr(feed_module, "clock", lambda: NOW + feed_module.SETTLE_SECONDS)


def populate(misp: FakeMisp, count: int, *, start: int = NOW - 1000, per_second: int = 1) -> list[tuple[str, int]]:
    """``count`` events, ``per_second`` of them sharing each timestamp; returns their (uuid, ts) in order."""
    changes = []
    for i in range(count):
        uuid, ts = f"e{i:03d}", start + i // per_second
        misp.add(uuid, ts)
        changes.append((uuid, ts))
    return sorted(changes, key=lambda c: (c[1], c[0]))


def assert_exactly_once_in_order(got: list[tuple[str, int]], expected: list[tuple[str, int]]) -> None:
    """Each expected change appears exactly once, and timestamps never go backwards.

    Within one timestamp the order is the one MISP picked the events in, so only the set is compared.
    """
    assert len(got) == len(set(got)), "a change was sent twice"
    assert sorted(got) == sorted(expected), "a change was lost or invented"
    assert [t for _, t in got] == sorted(t for _, t in got), "timestamps went backwards"


# --- first run, paging and filters ---------------------------------------------------------------

def test_first_run_starts_at_the_lookback_and_saves_it(state_file: str) -> None:
    """With no state file, events older than the look-back are skipped and the start is saved at once."""
    misp, out = FakeMisp(), ListPublisher()
    misp.add("old", NOW - 2 * DAY)
    misp.add("new", NOW - DAY // 2)
    feed = make_feed(make_settings(state_file), misp, out)
    assert load_position(state_file) is None
    assert feed.position == Position(NOW - DAY)
    assert load_position(state_file) == Position(NOW - DAY)
    assert feed.poll_once() == 1
    assert out.changes() == [("new", NOW - DAY // 2)]
    assert out.sent[0][0] == feed_topic()


def test_first_run_lookback_may_be_a_date(state_file: str) -> None:
    """A look-back given as an ISO date starts the feed at that date's midnight UTC."""
    feed = make_feed(make_settings(state_file, lookback="2024-01-31"), FakeMisp(), ListPublisher())
    assert feed.position.timestamp == 1706659200


def test_events_are_published_in_timestamp_order_page_by_page(state_file: str) -> None:
    """25 events with page size 4 go out once each, oldest first, over several restSearch calls."""
    misp, out = FakeMisp(), ListPublisher()
    expected = populate(misp, 25, per_second=2)
    feed = make_feed(make_settings(state_file, page_size=4), misp, out, service_unique_id="svc")
    assert feed.poll_once() == 25
    assert_exactly_once_in_order(out.changes(), expected)
    assert {topic for topic, _ in out.sent} == {"/opendxl-misp/event/feed/svc/event"}
    assert len(misp.calls) >= 7
    assert all(c["order"] == SEARCH_ORDERS["timestamp"] and c["page"] == 1 for c in misp.calls)


def test_many_events_in_one_second_are_paged_without_loss(state_file: str) -> None:
    """Twenty events sharing one timestamp, page size 3, tie order random per call: each goes out once."""
    misp, out = FakeMisp(), ListPublisher()
    expected = populate(misp, 20, per_second=20)
    feed = make_feed(make_settings(state_file, page_size=3), misp, out)
    feed.poll_once()
    assert_exactly_once_in_order(out.changes(), expected)


def test_filters_are_passed_to_misp_and_applied(state_file: str) -> None:
    """Tags, not-tags (as !tag), orgs, published-only and threat levels all reach restSearch."""
    misp, out = FakeMisp(), ListPublisher()
    misp.add("match", NOW - 10, tags=("tlp:green",), org="CIRCL", threat_level=2)
    misp.add("untagged", NOW - 9, org="CIRCL", threat_level=2)
    misp.add("banned", NOW - 8, tags=("tlp:green", "tlp:red"), org="CIRCL", threat_level=2)
    misp.add("other-org", NOW - 7, tags=("tlp:green",), org="ACME", threat_level=2)
    misp.add("draft", NOW - 6, tags=("tlp:green",), org="CIRCL", threat_level=2, published=False)
    misp.add("low", NOW - 5, tags=("tlp:green",), org="CIRCL", threat_level=3)
    settings = make_settings(state_file, tags=("tlp:green",), not_tags=("tlp:red",), orgs=("CIRCL",),
                             published_only=True, threat_levels=(1, 2))
    make_feed(settings, misp, out).poll_once()
    assert [u for u, _ in out.changes()] == ["match"]
    call = misp.calls[0]
    assert call["tags"] == ["tlp:green", "!tlp:red"]
    assert call["org"] == ["CIRCL"] and call["published"] is True and call["threat_level_id"] == [1, 2]


def test_no_filters_send_no_filter_arguments() -> None:
    """Empty filters add nothing to the restSearch call."""
    assert Filters().search_kwargs() == {}


# --- state: restore, atomic writes, restarts ------------------------------------------------------

def test_a_new_feed_resumes_from_the_state_file(state_file: str) -> None:
    """A second Feed on the same state file sends only what changed after the first one stopped."""
    misp = FakeMisp()
    populate(misp, 5)
    first = ListPublisher()
    make_feed(make_settings(state_file), misp, first).poll_once()
    misp.add("later", NOW - 1)
    second = ListPublisher()
    make_feed(make_settings(state_file), misp, second).poll_once()
    assert len(first.sent) == 5
    assert second.changes() == [("later", NOW - 1)]


def test_state_is_saved_after_each_published_event(state_file: str) -> None:
    """After every publish, the state file on disk already covers that event."""
    misp, out = FakeMisp(), ListPublisher()
    populate(misp, 4, per_second=2)
    seen_on_disk: list[bool] = []

    def check_previous(event: dict[str, Any]) -> None:
        position = load_position(state_file)
        previous = out.changes()[:-1]
        seen_on_disk.append(all(position.delivered(u, t) for u, t in previous))

    out.on_publish = check_previous
    make_feed(make_settings(state_file, page_size=3), misp, out).poll_once()
    assert seen_on_disk == [True] * 4
    assert all(load_position(state_file).delivered(u, t) for u, t in out.changes())


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3, 5, 8])
def test_a_crash_mid_run_loses_and_repeats_nothing(state_file: str, crash_after: int) -> None:
    """The publisher dies after N events; a restarted feed sends the rest: each change exactly once."""
    misp = FakeMisp(seed=crash_after)
    expected = populate(misp, 11, per_second=3)
    crashing = ListPublisher(fail_after=crash_after)
    with pytest.raises(RuntimeError):
        make_feed(make_settings(state_file, page_size=4), misp, crashing).poll_once()
    restarted = ListPublisher()
    make_feed(make_settings(state_file, page_size=4), misp, restarted).poll_once()
    assert_exactly_once_in_order(crashing.changes() + restarted.changes(), expected)


def test_a_corrupt_state_file_stops_the_feed_from_starting(state_file: str) -> None:
    """A state file that is not a feed state is a ConfigError naming the file, not a silent restart."""
    os.makedirs(os.path.dirname(state_file))
    Path(state_file).write_text("{not json")
    feed = make_feed(make_settings(state_file), FakeMisp(), ListPublisher())
    with pytest.raises(ConfigError, match="feed.json"):
        feed.start()


# --- publishedOnly: the feed follows publish_timestamp -------------------------------------------

def test_published_only_sends_an_event_published_after_the_feed_passed_its_timestamp(state_file: str) -> None:
    """With publishedOnly, a draft older than events already sent is sent once it is published."""
    misp, out = FakeMisp(), ListPublisher()
    misp.add("draft", NOW - 100, published=False)
    misp.add("early", NOW - 50)
    feed = make_feed(make_settings(state_file, published_only=True), misp, out)
    assert feed.poll_once() == 1
    misp.publish("draft", NOW - 10)
    assert feed.poll_once() == 1
    assert [u for u, _ in out.changes()] == ["early", "draft"]


def test_published_only_pages_by_publish_timestamp(state_file: str) -> None:
    """publishedOnly asks restSearch for publish_timestamp >= position, ordered by it, never by timestamp."""
    misp, out = FakeMisp(), ListPublisher()
    for i in range(7):
        misp.add(f"p{i}", NOW - 500 + i, published=False)
        misp.publish(f"p{i}", NOW - 100 + i // 3)  # published in another order of time, 3 per second
    make_feed(make_settings(state_file, published_only=True, page_size=2), misp, out).poll_once()
    assert sorted(u for u, _ in out.changes()) == [f"p{i}" for i in range(7)]
    assert [int(p["Event"]["publish_timestamp"]) for _, p in out.sent] == sorted(NOW - 100 + i // 3 for i in range(7))
    assert all("timestamp" not in c and c["order"] == SEARCH_ORDERS[PUBLICATIONS] for c in misp.calls)
    assert misp.calls[0]["publish_timestamp"] == NOW - DAY and misp.calls[0]["published"] is True


def test_published_only_sends_each_publication_once(state_file: str) -> None:
    """An edit (which unpublishes) is not sent; publishing again sends the event again, once."""
    misp, out = FakeMisp(), ListPublisher()
    misp.add("e", NOW - 300)
    feed = make_feed(make_settings(state_file, published_only=True), misp, out)
    feed.poll_once()
    misp.edit("e", NOW - 200)
    assert feed.poll_once() == 0
    misp.publish("e", NOW - 100)
    assert feed.poll_once() == 1
    assert feed.poll_once() == 0
    assert [(p["Event"]["uuid"], int(p["Event"]["publish_timestamp"])) for _, p in out.sent] == \
        [("e", NOW - 300), ("e", NOW - 100)]


def test_published_only_state_file_records_its_field(state_file: str) -> None:
    """The state file of a publishedOnly feed is keyed on publish_timestamp, from the first run on."""
    misp, out = FakeMisp(), ListPublisher()
    misp.add("e", NOW - 5)
    make_feed(make_settings(state_file, published_only=True), misp, out).poll_once()
    assert load_position(state_file) == Position(NOW - 5, "e", PUBLICATIONS)


@pytest.mark.parametrize("saved_field,published_only", [("timestamp", True), ("publish_timestamp", False)])
def test_a_state_file_of_the_other_field_stops_the_start(state_file: str, saved_field: str,
                                                        published_only: bool) -> None:
    """Switching publishedOnly over an existing state file is a ConfigError naming the file; it is kept."""
    save_position(state_file, Position(NOW - 60, "x", saved_field))
    feed = make_feed(make_settings(state_file, published_only=published_only), FakeMisp(), ListPublisher())
    with pytest.raises(ConfigError, match="feed.json") as caught:
        feed.start()
    assert "lookback" in caught.value.message and saved_field in caught.value.message
    assert load_position(state_file) == Position(NOW - 60, "x", saved_field)


# --- delivering one event: prepare, publish, commit ------------------------------------------------

@pytest.mark.parametrize("run_hooks", [True, False])
def test_the_next_state_is_on_disk_before_the_publish_and_in_place_after(state_file: str, run_hooks: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each event: <state>.next written and fsync'ed, the write, one os.replace (by the publisher's on_written,
    or by the feed after the publish), then the directory fsync."""
    misp, out = FakeMisp(), ListPublisher(run_hooks=run_hooks)
    populate(misp, 2)
    feed = make_feed(make_settings(state_file), misp, out)
    feed.position  # the first run's state, saved before anything is watched
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(feedstate.os, "fsync", lambda fd: (steps.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(feedstate.os, "replace", lambda a, b: (steps.append("replace"), real_replace(a, b))[1])
    on_disk: list[tuple[Position | None, Position | None]] = []

    def look(event: dict[str, Any]) -> None:
        steps.append("publish")
        on_disk.append((load_position(state_file), load_position(state_file + ".next")))

    out.on_publish = look
    feed.poll_once()
    assert steps == ["fsync", "publish", "replace", "fsync"] * 2
    first, second = out.changes()
    assert on_disk == [(Position(NOW - DAY), Position(first[1], first[0])),
                       (Position(first[1], first[0]), Position(second[1], second[0]))]
    assert os.listdir(os.path.dirname(state_file)) == ["feed.json"]


def test_the_rename_happens_inside_the_publish_when_the_publisher_runs_on_written(state_file: str) -> None:
    """With dxlutil's publisher the state file is renamed by on_written, before the publish returns."""
    misp = FakeMisp()
    populate(misp, 2)
    in_place: list[Position | None] = []

    class Checking(ListPublisher):
        def __call__(self, topic: str, payload: dict[str, Any]) -> None:
            super().__call__(topic, payload)
            in_place.append(load_position(state_file))

    out = Checking()
    make_feed(make_settings(state_file), misp, out).poll_once()
    assert in_place == [Position(t, u) for u, t in out.changes()]


def test_a_publish_that_raises_after_its_rename_moves_the_feed_on(state_file: str) -> None:
    """If the state was renamed (the event was written) and the publish still raises, the feed's position
    follows the file: the next poll does not send that event again."""
    misp = FakeMisp()
    expected = populate(misp, 3)

    class LateFailure(ListPublisher):
        def __call__(self, topic: str, payload: dict[str, Any]) -> None:
            super().__call__(topic, payload)
            if len(self.sent) == 2:
                raise OSError("failed after the write")

    out = LateFailure()
    feed = make_feed(make_settings(state_file), misp, out)
    with pytest.raises(OSError):
        feed.poll_once()
    feed.poll_once()
    assert out.changes() == expected


def test_a_failed_publish_leaves_the_state_and_no_prepared_file(state_file: str) -> None:
    """A publish that raises (refused, or not written in time) leaves the previous state and removes .next."""
    misp = FakeMisp()
    expected = populate(misp, 3)
    with pytest.raises(RuntimeError):
        make_feed(make_settings(state_file), misp, ListPublisher(fail_after=1)).poll_once()
    assert load_position(state_file) == Position(expected[0][1], expected[0][0])
    assert os.listdir(os.path.dirname(state_file)) == ["feed.json"]


def test_a_crash_between_the_write_and_the_rename_repeats_that_event_only(state_file: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one window: an event out on the socket whose rename never happened is sent again, nothing else."""
    misp = FakeMisp()
    expected = populate(misp, 6, per_second=2)
    first = ListPublisher()
    real_replace = feedstate.PreparedState.replace

    def crash_on_third(prepared: feedstate.PreparedState) -> None:
        if len(first.sent) == 3:
            raise KeyboardInterrupt("killed after the write, before the rename")
        real_replace(prepared)

    monkeypatch.setattr(feedstate.PreparedState, "replace", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        make_feed(make_settings(state_file), misp, first).poll_once()
    monkeypatch.setattr(feedstate.PreparedState, "replace", real_replace)
    second = ListPublisher()
    make_feed(make_settings(state_file), misp, second).poll_once()
    assert second.changes()[0] == first.changes()[-1]
    assert_exactly_once_in_order(first.changes() + second.changes()[1:], expected)


def test_each_feed_event_names_a_stable_message_id(state_file: str) -> None:
    """The payload is {"feed": ..., "Event": ...} with a message id from (topic, field, uuid, value): same
    change, same id; the envelope names the change's position, the one before it and that id."""
    misp, out = FakeMisp(), ListPublisher()
    misp.add("e", NOW - 9)
    feed = make_feed(make_settings(state_file), misp, out, service_unique_id="svc")
    feed.poll_once()
    misp.edit("e", NOW - 3)
    feed.poll_once()
    (topic, one), (_, two) = out.sent
    event = misp.events["e"] | {"timestamp": str(NOW - 9), "info": "event e", "published": True}
    assert isinstance(one, EventPayload) and one["Event"] == event and set(one) == {"feed", "Event"}
    assert one["feed"] == {"position": {"field": "timestamp", "timestamp": NOW - 9, "uuid": "e"},
                           "previous": {"field": "timestamp", "timestamp": NOW - DAY, "uuid": ""},
                           "message_id": one.message_id, "complete": True,
                           "size": len(json.dumps(event, separators=(",", ":")).encode())}
    assert two["feed"]["previous"] == one["feed"]["position"]
    assert one.message_id == feed_message_id(topic, "timestamp", "e", NOW - 9)
    assert two.message_id == feed_message_id(topic, "timestamp", "e", NOW - 3) != one.message_id
    assert one.message_id == feed_message_id(topic, "timestamp", "e", NOW - 9)
    assert one.message_id != feed_message_id(feed_topic(), "timestamp", "e", NOW - 9)
    assert one.message_id != feed_message_id(topic, "publish_timestamp", "e", NOW - 9)
    assert one.message_id.startswith("{") and one.message_id.endswith("}") and len(one.message_id) == 38


# --- edits ----------------------------------------------------------------------------------------

def test_an_edited_event_is_sent_again_once(state_file: str) -> None:
    """An event edited after it was sent goes out once more, with its new timestamp, and only once."""
    misp, out = FakeMisp(), ListPublisher()
    populate(misp, 3)
    feed = make_feed(make_settings(state_file), misp, out)
    feed.poll_once()
    misp.edit("e000", NOW - 5)
    assert feed.poll_once() == 1
    assert feed.poll_once() == 0
    assert out.changes()[-1] == ("e000", NOW - 5)
    assert out.sent[-1][1]["Event"]["info"] == f"edited at {NOW - 5}"


def test_an_edit_during_a_poll_does_not_push_another_event_out_of_sight(state_file: str) -> None:
    """Editing an already-sent event mid-poll moves it to the end; no other event is skipped."""
    misp, out = FakeMisp(), ListPublisher()
    expected = populate(misp, 9)
    edited = []

    def edit_first(event: dict[str, Any]) -> None:
        if event["uuid"] == "e002" and not edited:
            misp.edit("e000", NOW - 1)
            edited.append(True)

    out.on_publish = edit_first
    make_feed(make_settings(state_file, page_size=2), misp, out).poll_once()
    assert out.changes() == expected + [("e000", NOW - 1)]


# --- the poll loop --------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail the test when it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture()
def running_feeds() -> Iterator[list[Feed]]:
    """Feeds appended here are stopped after the test."""
    feeds: list[Feed] = []
    yield feeds
    for feed in feeds:
        feed.stop()


def test_the_loop_retries_after_misp_was_unavailable(state_file: str, running_feeds: list[Feed],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A poll that finds MISP down is logged; a later poll publishes once MISP is back."""
    caplog.set_level(logging.WARNING, logger="dxlmispservice.events.feed")
    misp, out = FakeMisp(), ListPublisher()
    populate(misp, 3)
    misp.down = True
    feed = make_feed(make_settings(state_file), misp, out)
    running_feeds.append(feed)
    feed.start()
    wait_until(lambda: "poll failed" in caplog.text)
    misp.down = False
    wait_until(lambda: len(out.sent) == 3)
    assert "could not be reached" in caplog.text


def test_the_loop_keeps_going_after_a_publish_failure(state_file: str, running_feeds: list[Feed]) -> None:
    """A publish that raises ends that poll; the next poll resends from the failed event on."""
    misp = FakeMisp()
    expected = populate(misp, 4)
    out = ListPublisher(fail_after=2)
    feed = make_feed(make_settings(state_file), misp, out)
    running_feeds.append(feed)
    feed.start()
    wait_until(lambda: len(misp.calls) >= 3)  # it polled again after the failure
    out.fail_after = None
    wait_until(lambda: len(out.sent) == 4)
    assert out.changes() == expected


def test_stop_ends_the_thread(state_file: str) -> None:
    """stop() ends the poll thread."""
    feed = make_feed(make_settings(state_file, interval=30.0), FakeMisp(), ListPublisher())
    feed.start()
    thread = feed._worker.thread
    feed.stop()
    assert thread is not None and not thread.is_alive()


def test_stop_during_a_poll_leaves_a_state_that_resumes_exactly(state_file: str) -> None:
    """Stopping in the middle of a poll saves what went out; a new feed sends exactly the rest."""
    misp = FakeMisp()
    expected = populate(misp, 10)
    out = ListPublisher()
    feed = make_feed(make_settings(state_file, page_size=2), misp, out)
    out.on_publish = lambda event: feed._stop.set() if len(out.sent) == 4 else None
    feed.poll_once()
    rest = ListPublisher()
    make_feed(make_settings(state_file), misp, rest).poll_once()
    assert len(out.sent) == 4
    assert out.changes() + rest.changes() == expected


# --- fetch_events ----------------------------------------------------------------------------------

def fetch_all(misp: FakeMisp, first: dict[str, Any]) -> tuple[list[tuple[str, int]], str]:
    """Page through fetch_events from ``first`` until ``more`` is false; the changes and the last cursor."""
    answer = fetch_events(misp, first)
    got = [(e["Event"]["uuid"], int(e["Event"]["timestamp"])) for e in answer["events"]]
    while answer["more"]:
        answer = fetch_events(misp, {"cursor": answer["next"], "limit": first.get("limit", 100)})
        got += [(e["Event"]["uuid"], int(e["Event"]["timestamp"])) for e in answer["events"]]
    return got, answer["next"]


def test_fetch_events_pages_by_cursor_without_loss_or_repeat() -> None:
    """Paging 17 events (ties included) three at a time yields each once, in order."""
    misp = FakeMisp()
    expected = populate(misp, 17, per_second=4)
    got, _ = fetch_all(misp, {"since": NOW - 5000, "limit": 3})
    assert_exactly_once_in_order(got, expected)


def test_fetch_events_cursor_picks_up_later_changes() -> None:
    """The last cursor, asked again later, returns exactly the events created or edited since."""
    misp = FakeMisp()
    populate(misp, 4)
    _, cursor = fetch_all(misp, {"since": "1d", "limit": 2})
    misp.add("fresh", NOW - 1)
    misp.edit("e001", NOW)
    answer = fetch_events(misp, {"cursor": cursor})
    assert [(e["Event"]["uuid"], int(e["Event"]["timestamp"])) for e in answer["events"]] == \
        [("fresh", NOW - 1), ("e001", NOW)]
    assert fetch_events(misp, {"cursor": answer["next"]})["events"] == []


def test_fetch_events_cursor_carries_the_filters() -> None:
    """Filters given on the first page apply to every page fetched by cursor."""
    misp = FakeMisp()
    for i in range(6):
        misp.add(f"t{i}", NOW - 100 + i, tags=("keep",) if i % 2 else ())
    got, _ = fetch_all(misp, {"since": 0, "limit": 1, "filters": {"tags": ["keep"]}})
    assert [u for u, _ in got] == ["t1", "t3", "t5"]
    assert all(c.get("tags") == ["keep"] for c in misp.calls)


@pytest.mark.parametrize("payload", [
    {"limit": 0}, {"limit": "5"}, {"limit": 100_000}, {"bogus": 1},
    {"since": "yesterday"}, {"filters": {"colour": "red"}}, {"filters": {"threat_levels": [9]}},
    {"cursor": "not-a-cursor"}, {"cursor": 5},
])
def test_fetch_events_rejects_bad_payloads(payload: dict[str, Any]) -> None:
    """A bad limit, key, since, filter or cursor is InvalidArguments, before MISP is asked."""
    misp = FakeMisp()
    with pytest.raises(InvalidArguments):
        fetch_events(misp, payload)
    assert misp.calls == []


def test_fetch_events_refuses_since_with_a_cursor() -> None:
    """A cursor already holds the position and filters: since or filters beside it is an error."""
    misp = FakeMisp()
    cursor = fetch_events(misp, {"since": 0})["next"]
    with pytest.raises(InvalidArguments):
        fetch_events(misp, {"cursor": cursor, "since": 0})


def test_fetch_events_published_only_follows_publications() -> None:
    """With published_only, a draft published after the cursor passed its timestamp is fetched next."""
    misp = FakeMisp()
    misp.add("draft", NOW - 100, published=False)
    misp.add("early", NOW - 50)
    first = fetch_events(misp, {"since": NOW - 1000, "filters": {"published_only": True}})
    misp.publish("draft", NOW - 10)
    second = fetch_events(misp, {"cursor": first["next"]})
    assert [e["Event"]["uuid"] for e in first["events"] + second["events"]] == ["early", "draft"]
    assert feedstate.decode_cursor(second["next"])[0] == Position(NOW - 10, "draft", PUBLICATIONS)
    assert all(c["order"] == SEARCH_ORDERS[PUBLICATIONS] for c in misp.calls)


def test_fetch_events_refuses_an_old_published_only_cursor() -> None:
    """A cursor in timestamp order with published_only (made before publications were followed) is refused."""
    cursor = encode_cursor(Position(NOW - 10), {"published_only": True})
    with pytest.raises(InvalidArguments, match="since"):
        fetch_events(FakeMisp(), {"cursor": cursor})


# --- filters --------------------------------------------------------------------------------------

def test_filters_round_trip_through_the_request_form() -> None:
    """Filters written with to_payload read back equal, and unset ones are left out."""
    filters = Filters(tags=("a",), not_tags=("b",), threat_levels=(1, 4), published_only=True)
    assert Filters.from_payload(filters.to_payload()) == filters
    assert Filters().to_payload() == {}


def test_many_events_at_one_value_go_out_once_each_in_uuid_order(state_file: str) -> None:
    """350 events sharing one timestamp, 100 a page, go out exactly once each in (timestamp, uuid) order,
    and the saved position is one uuid."""
    misp, out = FakeMisp(), ListPublisher()
    expected = populate(misp, 350, per_second=350)
    misp.add("zlater", NOW - 10)
    feed = make_feed(make_settings(state_file, page_size=100), misp, out)
    assert feed.poll_once() == 351
    assert out.changes() == sorted(expected) + [("zlater", NOW - 10)]
    assert load_position(state_file) == Position(NOW - 10, "zlater")


def test_fetch_events_cursor_stays_small_at_one_crowded_value() -> None:
    """Paging fetch_events 7 at a time through 50 events of one timestamp gives each once, with a cursor
    that does not grow."""
    misp = FakeMisp()
    expected = populate(misp, 50, per_second=50)
    got, sizes, answer = [], [], fetch_events(misp, {"since": 0, "limit": 7})
    while True:
        got.extend((item["Event"]["uuid"], int(item["Event"]["timestamp"])) for item in answer["events"])
        sizes.append(len(answer["next"]))
        if not answer["more"]:
            break
        answer = fetch_events(misp, {"cursor": answer["next"], "limit": 7})
    assert got == expected and max(sizes) - min(sizes) <= 4


def test_an_event_too_big_for_the_fabric_goes_out_as_a_notice_between_the_others(
        state_file: str, caplog: pytest.LogCaptureFixture) -> None:
    """A big event between two small ones is published as a notice that fits, in its place; the events
    after it flow on, the notice is counted and logged, and the position moves past it."""
    misp, out = FakeMisp(), ListPublisher(limit=4000)
    misp.add("a-small", NOW - 30)
    misp.add("b-big", NOW - 20)
    misp.events["b-big"]["Attribute"] = [{"value": "x" * 100, "uuid": f"u{n}"} for n in range(60)]
    misp.events["b-big"]["id"] = "7"
    misp.events["b-big"]["Orgc"] = {"id": "1", "uuid": "org-uuid", "name": "ORG", "local": True}
    misp.add("c-small", NOW - 10)
    feed = make_feed(make_settings(state_file), misp, out)
    with caplog.at_level(logging.WARNING, logger="dxlmispservice.events.feed"):
        assert feed.poll_once() == 3
    assert [p["Event"]["uuid"] for _, p in out.sent] == ["a-small", "b-big", "c-small"]
    notice = out.sent[1][1]
    assert notice["feed"]["complete"] is False and notice["feed"]["size"] > 4000
    assert notice["Event"] == {"id": "7", "uuid": "b-big", "info": "event b-big", "timestamp": str(NOW - 20),
                               "publish_timestamp": str(NOW - 20), "attribute_count": "60",
                               "Orgc": {"id": "1", "uuid": "org-uuid", "name": "ORG"}}
    assert notice["feed"]["previous"] == out.sent[0][1]["feed"]["position"]
    assert out.sent[2][1]["feed"]["previous"] == notice["feed"]["position"]
    assert feed.notices == 1 and caplog.text.count("published a notice instead") == 1
    assert load_position(state_file) == Position(NOW - 10, "c-small")


@pytest.mark.parametrize("filters, words", [({"not_tags": ["a\u0000"]}, "with no NUL character"),
                                            ({"orgs": ["o" * 256]}, "at most 255 characters"),
                                            ({"tags": [f"t{n}" for n in range(101)]}, "at most 100 values")])
def test_fetch_events_filter_strings_are_bounded(filters: dict[str, Any], words: str) -> None:
    """A filter string with a NUL, longer than MISP's names, or too many of them is invalid_arguments."""
    with pytest.raises(InvalidArguments, match=words):
        fetch_events(FakeMisp(), {"filters": filters})


def test_changes_of_the_last_seconds_are_held_back_until_they_settle(state_file: str) -> None:
    """With settle 5, a change 3 s old waits; once 5 s have passed it goes out, and one made later in that
    same second with a smaller uuid goes out too (none is skipped by the keyset)."""
    misp, out, now = FakeMisp(), ListPublisher(), [NOW]
    misp.add("m-old", NOW - 60)
    misp.add("m-recent", NOW - 3)
    feed = Feed(make_settings(state_file), misp, out, clock=lambda: now[0], settle=5)
    assert feed.poll_once() == 1 and out.changes() == [("m-old", NOW - 60)]
    misp.add("a-same-second", NOW - 3)  # lands later in the very second the feed has seen
    now[0] = NOW + 2
    assert feed.poll_once() == 2
    assert out.changes()[1:] == [("a-same-second", NOW - 3), ("m-recent", NOW - 3)]


def test_fetch_events_holds_back_the_last_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch_events answers the changes older than SETTLE_SECONDS, and says there is nothing more yet."""
    misp = FakeMisp()
    misp.add("old", NOW - 60)
    misp.add("new", NOW - 1)
    monkeypatch.setattr(feed_module, "clock", lambda: NOW)
    answer = fetch_events(misp, {"since": 0})
    assert [item["Event"]["uuid"] for item in answer["events"]] == ["old"] and answer["more"] is False


def test_fetch_events_keeps_its_answer_under_max_answer() -> None:
    """With max_answer, a page ends before an event that would not fit (more is true), an event too big
    for any answer comes as a notice, and paging on returns every change once."""
    misp = FakeMisp()
    for number in range(6):
        misp.add(f"e{number}", NOW - 60 + number)
    misp.events["e3"]["Attribute"] = [{"value": "x" * 200, "uuid": f"a{n}"} for n in range(40)]  # ~10 KB
    got, answers, answer = [], [], fetch_events(misp, {"since": 0, "limit": 100}, max_answer=2000)
    while True:
        answers.append(answer)
        got.extend(answer["events"])
        if not answer["more"]:
            break
        answer = fetch_events(misp, {"cursor": answer["next"], "limit": 100}, max_answer=2000)
    assert [item["Event"]["uuid"] for item in got] == [f"e{n}" for n in range(6)]
    assert all(len(json.dumps(a, separators=(",", ":"))) <= 2000 for a in answers) and len(answers) > 1
    notice = got[3]
    assert notice["feed"]["complete"] is False and notice["feed"]["size"] > 2000 and "Attribute" not in notice["Event"]
    assert all(item["feed"]["complete"] for n, item in enumerate(got) if n != 3)


def test_a_worker_that_outlived_its_stop_is_not_started_twice() -> None:
    """A loop still running after its stop timed out cannot be started again beside itself."""
    import threading

    from dxlmispservice.events.worker import Worker

    release = threading.Event()
    worker = Worker("w", lambda: release.wait(10), stop_timeout=0.1, description="The test loop",
                    log=logging.getLogger("test"))
    worker.start()
    assert worker.stop() is False
    with pytest.raises(RuntimeError, match="has not stopped yet"):
        worker.start()
    release.set()
    time.sleep(0.2)
    worker.start()
    worker.stopping.set()
    release.set()
    assert worker.stop() is True


def test_fetch_events_goes_on_right_after_a_feed_position() -> None:
    """A consumer that missed a message asks from the last feed.position it saw and gets what follows."""
    misp = FakeMisp()
    expected = populate(misp, 6, per_second=2)
    first = fetch_events(misp, {"since": 0, "limit": 3})
    position = first["events"][-1]["feed"]["position"]
    rest = fetch_events(misp, {"position": position})
    assert [(i["Event"]["uuid"], int(i["Event"]["timestamp"])) for i in first["events"] + rest["events"]] == expected
    with pytest.raises(InvalidArguments, match="give one of since, position or cursor"):
        fetch_events(misp, {"position": position, "since": 0})
    with pytest.raises(InvalidArguments, match="position:"):
        fetch_events(misp, {"position": {"field": "timestamp", "timestamp": -1, "uuid": ""}})


def test_fetch_events_counts_its_cursor_in_the_answer() -> None:
    """With long filters the cursor is big: the answer still stays under max_answer."""
    misp = FakeMisp()
    for number in range(5):
        misp.add(f"e{number}", NOW - 60 + number, tags=("t" * 250,))
    filters = {"tags": ["t" * 250] + [f"{n}" + "u" * 250 for n in range(20)]}
    answer = fetch_events(misp, {"since": 0, "filters": filters}, max_answer=9000)
    assert len(json.dumps(answer, separators=(",", ":"))) <= 9000 and answer["events"]


def test_a_notice_keeps_a_short_info() -> None:
    """A feed notice cuts a long info to 1,000 characters, so that it fits any fabric limit."""
    from dxlmispservice.events.envelope import event_summary

    assert len(event_summary({"uuid": "u", "info": "i" * 60_000})["info"]) == 1003
