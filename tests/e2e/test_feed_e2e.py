"""The event feed over the real stack: MISP's changed events, in order, as DXL events, with nothing lost.

Each test runs a service variant of its own (``serviceUniqueId`` = the feed's topic, its own state file,
no ZeroMQ forwarding) against the session's dev MISP server, which the test fills first: events with
explicit past timestamps, several per second, so that pages cut through runs of equal timestamps.

Absence is proven by order, never by waiting: the feed sends in ascending ``(timestamp, uuid)`` order, so
once an event has arrived, any earlier event that the feed would send has arrived before it.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from dxlclient.callbacks import EventCallback
from dxlclient.message import Event

from dxlmispservice.events.feed import feed_message_id
from dxlmisp_devstack.testing import (
    EventWaiter, Requester, ServiceProcess, StackHandle, make_config_dir, read_service_config, stop_process,
)

FEED = "/opendxl-misp/event/feed"
ORG_NAME = "ORGNAME"  # the dev MISP server's one organisation
WAIT = 30.0


def feed_topic(unique_id: str) -> str:
    """The feed topic of a service variant."""
    return f"{FEED}/{unique_id}/event"


def key(payload: dict[str, Any]) -> tuple[str, int]:
    """``(uuid, timestamp)`` of a feed event: one change of one MISP event."""
    return payload["Event"]["uuid"], int(payload["Event"]["timestamp"])


def timestamps(events: list[dict[str, Any]]) -> list[int]:
    """The event timestamps, in arrival order."""
    return [int(e["Event"]["timestamp"]) for e in events]


def uuids(events: list[dict[str, Any]]) -> list[str]:
    """The event uuids, in arrival order."""
    return [e["Event"]["uuid"] for e in events]


def add_event(misp: Any, info: str, timestamp: int, *, tags: tuple[str, ...] = (), threat_level: int = 4,
              publish: bool = False) -> dict[str, Any]:
    """Create an event on the dev MISP server with that timestamp (publishing keeps it); its inner Event."""
    body: dict[str, Any] = {"info": info, "timestamp": timestamp, "threat_level_id": threat_level,
                            "Tag": [{"name": t} for t in tags]}
    event = misp.add_event(body, pythonify=False)["Event"]
    if publish:
        misp.publish(event["id"])
    return dict(event)


def feed_config(devstack: StackHandle, directory: Path, unique_id: str, api_names: str = "get_event",
                **feed: str) -> Path:
    """A feed-only service variant: its own serviceUniqueId and state file, a 0.5 s interval, ``feed`` keys.

    The session service's config dir is copied without its feed state first: ``make_config_dir`` would copy
    the live ``feed-state.json`` (the variant would not start with a first run) and can meet the feed's
    temporary state file vanishing mid-copy.
    """
    base = directory / "base"
    shutil.copytree(devstack.info["service_config_dir"], base, ignore=shutil.ignore_patterns("*feed-state*"))
    return make_config_dir(base, directory / "service", {
        "General": {"serviceUniqueId": unique_id, "zeroMqNotificationTopics": None, "apiNames": api_names},
        "Feed": {"enabled": "true", "interval": "0.5", "lookback": "1d", **feed},
    })


@contextmanager
def feed_service(devstack: StackHandle, dxl_requester: Requester, directory: Path, unique_id: str,
                 **feed: str) -> Iterator[tuple[ServiceProcess, EventWaiter]]:
    """Run a feed variant; yields it with a waiter on its feed topic, subscribed before the service starts."""
    config = feed_config(devstack, directory, unique_id, **feed)
    with dxl_requester.event_waiter(feed_topic(unique_id)) as waiter, devstack.run_service(config) as service:
        yield service, waiter


def wait_for_uuid(waiter: EventWaiter, uuid: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``uuid`` has arrived ``count`` times; every event received so far."""
    return waiter.wait_until(lambda events: uuids(events).count(uuid) >= count, WAIT)


def test_first_run_starts_the_lookback_back(devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """A first run sends the events changed within the look-back, oldest first, and none older."""
    misp, now = devstack.misp(), int(time.time())
    old = add_event(misp, "older than the look-back", now - 7200)
    recent = [add_event(misp, f"within the look-back {i}", now - 1800 + i) for i in range(3)]
    with feed_service(devstack, dxl_requester, tmp_path, "feed-lookback", lookback="1h") as (service, waiter):
        events = wait_for_uuid(waiter, recent[-1]["uuid"])
    assert uuids(events) == [e["uuid"] for e in recent]
    assert old["uuid"] not in uuids(events)
    state_file = read_service_config(tmp_path / "service")["Feed"]["stateFile"]
    assert json.loads(Path(state_file).read_text())["timestamp"] == now - 1800 + 2


def test_small_pages_send_every_event_once_in_order(devstack: StackHandle, dxl_requester: Requester,
                                                   tmp_path: Path) -> None:
    """With pageSize 3, 40 events (4 per timestamp) all arrive once, oldest change first, as {"Event": ...}."""
    misp, now = devstack.misp(), int(time.time())
    made = [add_event(misp, f"paged {i}", now - 600 + i // 4) for i in range(40)]
    last = add_event(misp, "after the pages", now)
    with feed_service(devstack, dxl_requester, tmp_path, "feed-paging", pageSize="3") as (service, waiter):
        events = wait_for_uuid(waiter, last["uuid"])[:-1]
    assert sorted(uuids(events)) == sorted(e["uuid"] for e in made)
    assert len(events) == len(made)
    assert timestamps(events) == sorted(timestamps(events))
    assert {e["Event"]["info"] for e in events} == {f"paged {i}" for i in range(40)}
    assert all(set(e) == {"feed", "Event"} and e["feed"]["complete"] for e in events)
    assert all(later["feed"]["previous"] == earlier["feed"]["position"] for earlier, later in zip(events, events[1:]))


def test_edited_event_is_sent_again_once(devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """An event edited after it was sent is sent again with its new timestamp, once, and never a third time."""
    misp, now = devstack.misp(), int(time.time())
    made = [add_event(misp, f"to edit {i}", now - 300 + i) for i in range(5)]
    with feed_service(devstack, dxl_requester, tmp_path, "feed-edit", pageSize="2") as (service, waiter):
        wait_for_uuid(waiter, made[-1]["uuid"])
        edited = made[1]
        misp.add_attribute(edited["id"], {"type": "ip-dst", "value": "203.0.113.9"}, pythonify=False)
        new_timestamp = int(misp.get_event(edited["id"], pythonify=False)["Event"]["timestamp"])
        first = add_event(misp, "after the edit", new_timestamp + 1)
        wait_for_uuid(waiter, first["uuid"])
        second = add_event(misp, "a later poll", new_timestamp + 2)  # arrives in a later poll than `first`
        events = wait_for_uuid(waiter, second["uuid"])
    sent = [e for e in events if e["Event"]["uuid"] == edited["uuid"]]
    assert [int(e["Event"]["timestamp"]) for e in sent] == [int(edited["timestamp"]), new_timestamp]
    assert [a["value"] for a in sent[1]["Event"]["Attribute"]] == ["203.0.113.9"]
    assert len(events) == len(set(map(key, events))) == len(made) + 3


def test_filters_select_the_events(devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """tags, notTags, orgs, publishedOnly and threatLevels together: only the events that pass all are sent."""
    misp, now = devstack.misp(), int(time.time())
    made = {
        "match": add_event(misp, "match", now - 100, tags=("feed:in",), threat_level=1, publish=True),
        "no tag": add_event(misp, "no tag", now - 99, threat_level=1, publish=True),
        "other tag": add_event(misp, "other tag", now - 98, tags=("feed:other",), threat_level=1, publish=True),
        "not-tag": add_event(misp, "not-tag", now - 97, tags=("feed:in", "feed:out"), threat_level=1,
                             publish=True),
        "unpublished": add_event(misp, "unpublished", now - 96, tags=("feed:in",), threat_level=2),
        "threat 3": add_event(misp, "threat 3", now - 95, tags=("feed:in",), threat_level=3, publish=True),
        "threat 4": add_event(misp, "threat 4", now - 94, tags=("feed:in",), threat_level=4, publish=True),
        "match 2": add_event(misp, "match 2", now - 93, tags=("feed:in", "feed:other"), threat_level=2,
                             publish=True),
        "last match": add_event(misp, "last match", now - 92, tags=("feed:in",), threat_level=1, publish=True),
    }
    with feed_service(devstack, dxl_requester, tmp_path, "feed-filters", tags="feed:in", notTags="feed:out",
                      orgs=ORG_NAME, publishedOnly="true", threatLevels="1,2") as (service, waiter):
        wanted = {made[name]["uuid"] for name in ("match", "match 2", "last match")}
        waiter.wait_until(lambda events: wanted <= set(uuids(events)), WAIT)
        sentinel = add_event(misp, "sentinel", now - 50, tags=("feed:in",), threat_level=1, publish=True)
        events = wait_for_uuid(waiter, sentinel["uuid"])[:-1]  # a later poll: anything else came before it
    # publishedOnly sends in publication order, (publish_timestamp, uuid), and these share a second or two
    assert sorted(e["Event"]["info"] for e in events) == ["last match", "match", "match 2"]
    assert [(int(e["Event"]["publish_timestamp"]), e["Event"]["uuid"]) for e in events] == sorted(
        (int(e["Event"]["publish_timestamp"]), e["Event"]["uuid"]) for e in events)


def test_published_only_sends_an_event_published_later(devstack: StackHandle, dxl_requester: Requester,
                                                       tmp_path: Path) -> None:
    """With publishedOnly, an event published after later events were sent is still sent, once, in
    publication order; an edit (which unpublishes) sends nothing until the event is published again."""
    misp, now = devstack.misp(), int(time.time())
    draft = add_event(misp, "published late", now - 100)
    add_event(misp, "published at once", now - 50, publish=True)
    with feed_service(devstack, dxl_requester, tmp_path, "feed-published", publishedOnly="true") as (service, waiter):
        waiter.wait_for(lambda e: e["Event"]["info"] == "published at once", WAIT)
        misp.publish(draft["id"])
        sentinel = add_event(misp, "sentinel", now - 10, publish=True)
        waiter.wait_for(lambda e: e["Event"]["uuid"] == sentinel["uuid"], WAIT)
        misp.add_attribute(draft["id"], {"type": "domain", "value": "late.example"}, pythonify=False)
        assert misp.get_event(draft["id"], pythonify=False)["Event"]["published"] is False
        second = add_event(misp, "a later poll", now - 5, publish=True)
        events = wait_for_uuid(waiter, second["uuid"])
        first = next(int(e["Event"]["publish_timestamp"]) for e in events if e["Event"]["uuid"] == draft["uuid"])
        while int(time.time()) <= first:  # two publications in one second are one to the feed (its limit)
            time.sleep(0.05)
        misp.publish(draft["id"])
        events = wait_for_uuid(waiter, draft["uuid"], count=2)
    infos = [e["Event"]["info"] for e in events]
    # the late publication and the sentinel may share a second (then they come in uuid order)
    assert (infos[0], sorted(infos[1:3]), infos[3:]) == (
        "published at once", ["published late", "sentinel"], ["a later poll", "published late"])
    assert [int(e["Event"]["publish_timestamp"]) for e in events] == sorted(
        int(e["Event"]["publish_timestamp"]) for e in events)
    first_late = next(e["Event"] for e in events if e["Event"]["uuid"] == draft["uuid"])
    assert int(first_late["timestamp"]) == now - 100  # publishing left timestamp alone
    assert [a["value"] for a in events[-1]["Event"]["Attribute"]] == ["late.example"]
    state_file = read_service_config(tmp_path / "service")["Feed"]["stateFile"]
    state = json.loads(Path(state_file).read_text())
    assert (state["field"], state["timestamp"]) == ("publish_timestamp", int(events[-1]["Event"]["publish_timestamp"]))
    assert state["uuid"] == events[-1]["Event"]["uuid"] == draft["uuid"]  # the keyset of the last change


# --- kill -9 in the middle of a run ------------------------------------------------------------------

BACKLOG = 300
KILLS = 3
KILL_AFTER = 20        # events received from a run before its kill is set off
KILL_JITTER = 0.03     # then a random delay up to this many seconds, so kills land anywhere in an event's cycle


class Killer(EventCallback):
    """Sends SIGKILL to the armed PID once ``count`` more feed events have arrived (on dxlclient's thread);
    records each event's DXL message id with its ``(uuid, timestamp)``."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._pid = 0
        self._left = 0
        self.message_ids: list[tuple[str, tuple[str, int]]] = []

    def arm(self, pid: int, count: int) -> None:
        """Kill ``pid`` after ``count`` more events (and a random delay)."""
        with self._lock:
            self._pid, self._left = pid, count

    def on_event(self, event: Any) -> None:
        with self._lock:
            self.message_ids.append((event.message_id, key(json.loads(event.payload))))
            if self._left <= 0:
                return
            self._left -= 1
            if self._left:
                return
            pid = self._pid
        threading.Timer(random.uniform(0, KILL_JITTER), _kill, (pid,)).start()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def in_flight(change: tuple[str, int], killed: list[tuple[str, int]], restarted: list[tuple[str, int]]) -> bool:
    """Whether ``change`` was the last change sent before a kill and is among the first the restart sends,
    those at its own timestamp (a page is sorted by uuid within a timestamp, so it need not come first)."""
    if not killed or killed[-1] != change:
        return False
    return change in itertools.takewhile(lambda k: k[1] == change[1], restarted)


def settle(dxl_requester: Requester, topic: str) -> None:
    """Wait until the broker has delivered what a killed service wrote before it died: a DXL event's round
    trip through the broker, sent after the death (mosquitto serves its sockets in the order they became
    readable, and the dead service's last bytes were readable first)."""
    barrier = f"{topic}/barrier/{uuid4()}"
    with dxl_requester.event_waiter(barrier) as waiter:
        event = Event(barrier)
        event.payload = b"{}"
        dxl_requester.client.send_event(event)
        waiter.wait_for(lambda payload: True, WAIT)


def start_service(devstack: StackHandle, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m dxlmispservice config`` as a child of this test (stopped by PID by the caller)."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "dxlmispservice", str(config)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1", **devstack.service_env()))


def test_kill_9_mid_run_loses_nothing(devstack: StackHandle, dxl_requester: Requester, tmp_path: Path,
                                      record_property: Any) -> None:
    """SIGKILL three times mid-run, then a full run: every change arrives, oldest first within a run, a change
    is only ever repeated as the one in flight at a kill (feed.py's window), and each carries its stable id."""
    misp, now = devstack.misp(), int(time.time())
    made = {(e["uuid"], int(e["timestamp"])) for e in
            (add_event(misp, f"backlog {i}", now - 3000 + i // 3) for i in range(BACKLOG))}
    config = feed_config(devstack, tmp_path, "feed-kill", pageSize="2")
    topic, killer = feed_topic("feed-kill"), Killer()
    runs: list[list[tuple[str, int]]] = []
    with dxl_requester.event_waiter(topic) as waiter:
        dxl_requester.client.add_event_callback(topic, killer)
        try:
            for run in range(KILLS):
                before = len(waiter.events)
                process = start_service(devstack, config, tmp_path / f"run-{run}.log")
                try:
                    killer.arm(process.pid, KILL_AFTER)
                    process.wait(WAIT)
                finally:
                    stop_process(process)
                assert process.returncode == -signal.SIGKILL
                settle(dxl_requester, topic)  # the event in flight at the kill belongs to this run
                runs.append([key(e) for e in waiter.events[before:]])
                assert len(set(map(key, waiter.events))) < BACKLOG, "the run ended before the kill"
            before = len(waiter.events)
            process = start_service(devstack, config, tmp_path / "run-last.log")
            try:
                waiter.wait_until(lambda events: made <= set(map(key, events)), WAIT)
                sentinel = add_event(misp, "after the backlog", now)  # a later poll, after every other
                wait_for_uuid(waiter, sentinel["uuid"])
            finally:
                stop_process(process)
            runs.append([key(e) for e in waiter.events[before:] if e["Event"]["uuid"] != sentinel["uuid"]])
        finally:
            dxl_requester.client.remove_event_callback(topic, killer)
    received = [k for run in runs for k in run]
    assert set(received) == made
    for run in runs:
        assert [k[1] for k in run] == sorted(k[1] for k in run)
    repeated = {k: n for k, n in Counter(received).items() if n > 1}
    for change, count in repeated.items():
        assert count == 2
        assert any(in_flight(change, earlier, later) for earlier, later in zip(runs, runs[1:])), \
            f"{change} repeated, not as the change in flight at a kill: {[(r[-3:], r[:5]) for r in runs]}"
    assert made <= {change for _, change in killer.message_ids}
    assert all(mid == feed_message_id(topic, "timestamp", uuid, ts) for mid, (uuid, ts) in killer.message_ids)
    record_property("feed_kill_repeats", len(repeated))
    print(f"feed kill -9: {len(repeated)} repeat(s) over {KILLS} kills, {len(made - set(received))} lost")
    if repeated:
        warnings.warn(f"feed kill -9: {len(repeated)} of {KILLS} kills hit feed.py's window (the change in "
                      "flight was sent again after the restart)")


def test_a_big_event_between_two_small_ones_is_a_notice_and_the_service_stays_connected(
        devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """A 4,000-attribute event (over the dev fabric's 1 MiB limit) between two small ones: all three are
    announced in order, the big one as a notice that fits, the service is never cut off by the broker, and
    it answers a request afterwards."""
    misp, now = devstack.misp(), int(time.time())
    before = add_event(misp, "small before", now - 30)
    body = {"info": "big", "timestamp": now - 20, "threat_level_id": 4,
            "Attribute": [{"type": "text", "category": "Other", "value": f"{n:05d} " + "v" * 600}
                          for n in range(4000)]}
    big = misp.add_event(body, pythonify=False)["Event"]
    after = add_event(misp, "small after", now - 10)
    broker_log = Path(devstack.info["workdir"], "broker", "mosquitto.log")
    log_size = broker_log.stat().st_size
    with feed_service(devstack, dxl_requester, tmp_path, "feed-big") as (service, waiter):
        events = wait_for_uuid(waiter, after["uuid"])
        answer = dxl_requester.request("/opendxl-misp/service/misp-api/feed-big/get_event",
                                       {"event_id": before["id"]})
        log = service.log_text()
    assert uuids(events) == [before["uuid"], big["uuid"], after["uuid"]]
    notice = events[1]
    assert notice["feed"]["complete"] is False and notice["feed"]["size"] > 1_048_576
    assert notice["Event"]["uuid"] == big["uuid"] and notice["Event"]["attribute_count"] == "4000"
    assert "Attribute" not in notice["Event"] and events[0]["feed"]["complete"] and events[2]["feed"]["complete"]
    assert events[2]["feed"]["previous"] == notice["feed"]["position"]
    assert answer.ok and answer.payload["Event"]["uuid"] == before["uuid"]
    assert "published a notice instead" in log and "Unexpected disconnect" not in log
    assert "oversize packet" not in broker_log.read_text(errors="replace")[log_size:]
