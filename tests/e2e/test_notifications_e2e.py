"""MISP's ZeroMQ notifications arrive as DXL events, over real mosquitto TLS, real HTTP and real ZeroMQ.

Two set-ups:

- The session stack's service forwards every MISP topic (``misp_json``, ``misp_json_event``,
  ``misp_json_attribute``, ``misp_json_sighting``, ``misp_json_tag``) from the session's dev MISP server.
  A ZeroMQ *tap* (a SUB socket of the test's own on the same publisher) records what MISP sent, so that
  each DXL event is compared with MISP's own JSON.
- A dev MISP server of this module's own (its own SQLite file, ports and a fast heartbeat), restartable on
  the same ports, with two service variants pointed at its publisher: ``misp_json`` only, and
  ``misp_json_self`` plus ``misp_json_event``.

Absence is proven by order, never by waiting: MISP's publisher sends frames in order on one pipe per
subscriber, the forwarder publishes them in that order on one broker connection, and mosquitto keeps
that order for one subscriber. So once a later frame has arrived as a DXL event, an earlier frame that
was forwarded would have arrived before it.
"""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from dxlmisp_devstack.fabric.broker import free_port
from dxlmisp_devstack.stack import Child, child_env
from dxlmisp_devstack.testing import EventWaiter, Requester, ServiceProcess, StackHandle, make_config_dir

PREFIX = "/opendxl-misp/event/zeromq-notifications"
SERVICE = "/opendxl-misp/service/misp-api"
MISP_READY = "misp ready "
JSON_ONLY = "zmq-json-only"        # a variant that forwards misp_json alone
HEARTBEATS = "zmq-heartbeats"      # a variant that forwards misp_json_self and misp_json_event
WAIT = 15.0


# --- a ZeroMQ tap on the session's MISP publisher ---------------------------------------------------

class ZmqTap:
    """A SUB socket on a MISP publisher that records every ``(topic, json)`` frame it receives."""

    def __init__(self, port: int) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(f"tcp://127.0.0.1:{port}")
        self._frames: list[tuple[str, Any]] = []
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zmq-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(50):
                topic, _, raw = self._socket.recv().partition(b" ")
                with self._condition:
                    self._frames.append((topic.decode(), json.loads(raw)))
                    self._condition.notify_all()

    def wait_for(self, topic: str, predicate: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        """The first recorded payload on ``topic`` for which ``predicate`` holds; TimeoutError if none."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for seen, payload in self._frames:
                    if seen == topic and predicate(payload):
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"MISP sent no matching {topic} frame within {timeout} s")
                self._condition.wait(remaining)

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        self._thread.join(5)
        self._socket.close(linger=0)
        self._context.term()


@pytest.fixture(scope="module")
def tap(devstack: StackHandle) -> Iterator[ZmqTap]:
    """A tap on the session MISP's publisher, subscribed (a change made now is seen) before it is handed out."""
    tap = ZmqTap(devstack.info["misp_zmq_port"])
    misp = devstack.misp()
    try:
        for attempt in range(50):  # ZeroMQ's slow joiner: change MISP until the tap hears about it
            uuid = misp.add_event({"info": f"tap warm-up {attempt}"}, pythonify=False)["Event"]["uuid"]
            try:
                tap.wait_for("misp_json_event", lambda p, u=uuid: p["Event"]["uuid"] == u, timeout=0.2)
                break
            except TimeoutError:
                continue
        else:
            raise RuntimeError("the ZeroMQ tap never heard the session MISP server")
        yield tap
    finally:
        tap.close()


def request(dxl_requester: Requester, api_name: str, payload: dict[str, Any]) -> Any:
    """Call the session service's ``api_name`` over the fabric; the answer's payload, which must be a success."""
    reply = dxl_requester.request(f"{SERVICE}/{api_name}", payload)
    assert reply.ok, (reply.error_code, reply.error_message, reply.payload)
    return reply.payload


def new_event(dxl_requester: Requester, info: str) -> dict[str, Any]:
    """A new event made through the service's legacy ``new_event``; its inner Event dict."""
    return request(dxl_requester, "new_event", {"info": info, "distribution": 0, "threat_level_id": 2,
                                            "analysis": 0})["Event"]


def add_ip(dxl_requester: Requester, event: dict[str, Any], value: str) -> dict[str, Any]:
    """An ip-dst attribute added through ``add_named_attribute``; its inner Attribute dict."""
    answer = request(dxl_requester, "add_named_attribute", {"event": event["id"], "type_value": "ip-dst",
                                                        "value": value})
    return answer[0]["Attribute"]


# --- forwarding each topic (the session service) -----------------------------------------------------

def test_new_event_request_comes_back_as_misp_json_event(devstack: StackHandle, dxl_requester: Requester,
                                                         tap: ZmqTap) -> None:
    """new_event over DXL -> MISP's misp_json_event frame -> a DXL event carrying that frame's JSON."""
    with dxl_requester.event_waiter(f"{PREFIX}/misp_json_event") as waiter:
        event = new_event(dxl_requester, "zmq chain: new_event")
        forwarded = waiter.wait_for(lambda p: p["Event"]["uuid"] == event["uuid"] and p["action"] == "add", WAIT)
    sent = tap.wait_for("misp_json_event", lambda p: p["Event"]["uuid"] == event["uuid"] and p["action"] == "add")
    assert forwarded == sent
    assert forwarded["Event"]["info"] == "zmq chain: new_event"


def test_a_frame_too_big_for_the_fabric_is_forwarded_as_a_notice(devstack: StackHandle, dxl_requester: Requester,
                                                                 tap: ZmqTap) -> None:
    """Publishing a 4,000-attribute event makes MISP send a misp_json frame (the whole event) over the dev
    fabric's 1 MiB limit: the service forwards a notice naming its topic, size, event and attributes
    instead, and stays connected (a small event published after it is forwarded whole)."""
    misp = devstack.misp()
    body = {"info": "zmq big", "Attribute": [{"type": "text", "category": "Other", "value": f"{n:05d} " + "z" * 600}
                                              for n in range(4000)]}
    big = misp.add_event(body, pythonify=False)["Event"]
    small = new_event(dxl_requester, "zmq after the big one")
    with dxl_requester.event_waiter(f"{PREFIX}/misp_json") as waiter:
        misp.publish(big["id"])
        notice = waiter.wait_for(lambda p: "notice" in p and big["uuid"] in p.get("event_uuids", []), WAIT)
        misp.publish(small["id"])
        waiter.wait_for(lambda p: p.get("Event", {}).get("uuid") == small["uuid"], WAIT)
    assert notice["notice"]["topic"] == "misp_json" and notice["notice"]["complete"] is False
    assert notice["notice"]["size"] > 1_048_576 and len(notice["attribute_uuids"]) == 200


def test_added_attribute_is_forwarded_on_misp_json_attribute(devstack: StackHandle, dxl_requester: Requester,
                                                             tap: ZmqTap) -> None:
    """add_named_attribute over DXL -> misp_json_attribute as a DXL event, with MISP's JSON."""
    event = new_event(dxl_requester, "zmq: attribute")
    with dxl_requester.event_waiter(f"{PREFIX}/misp_json_attribute") as waiter:
        attribute = add_ip(dxl_requester, event, "198.51.100.21")
        forwarded = waiter.wait_for(lambda p: p["Attribute"]["uuid"] == attribute["uuid"], WAIT)
    assert forwarded == tap.wait_for("misp_json_attribute", lambda p: p["Attribute"]["uuid"] == attribute["uuid"])
    assert (forwarded["action"], forwarded["Attribute"]["value"]) == ("add", "198.51.100.21")
    assert forwarded["Event"]["uuid"] == event["uuid"]


def test_sighting_is_forwarded_on_misp_json_sighting(devstack: StackHandle, dxl_requester: Requester,
                                                     tap: ZmqTap) -> None:
    """sighting over DXL -> misp_json_sighting as a DXL event, with MISP's JSON."""
    attribute = add_ip(dxl_requester, new_event(dxl_requester, "zmq: sighting"), "198.51.100.22")
    with dxl_requester.event_waiter(f"{PREFIX}/misp_json_sighting") as waiter:
        request(dxl_requester, "sighting", {"uuid": attribute["uuid"], "source": "e2e sighting"})
        forwarded = waiter.wait_for(lambda p: p["Sighting"]["Attribute"]["uuid"] == attribute["uuid"], WAIT)
    assert forwarded == tap.wait_for(
        "misp_json_sighting", lambda p: p["Sighting"]["Attribute"]["uuid"] == attribute["uuid"])
    assert forwarded["Sighting"]["source"] == "e2e sighting"


def test_tag_is_forwarded_on_misp_json_tag(devstack: StackHandle, dxl_requester: Requester, tap: ZmqTap) -> None:
    """tag over DXL -> misp_json_tag as a DXL event, with MISP's JSON."""
    event = new_event(dxl_requester, "zmq: tag")
    with dxl_requester.event_waiter(f"{PREFIX}/misp_json_tag") as waiter:
        request(dxl_requester, "tag", {"uuid": event["uuid"], "tag": "e2e:zmq-tag"})
        forwarded = waiter.wait_for(lambda p: p["Tag"]["event_id"] == event["id"], WAIT)
    assert forwarded == tap.wait_for("misp_json_tag", lambda p: p["Tag"]["event_id"] == event["id"])
    assert forwarded["Tag"]["name"] == "e2e:zmq-tag"
    assert forwarded["action"] == "attached to event"


def test_publish_is_forwarded_on_misp_json(devstack: StackHandle, dxl_requester: Requester, tap: ZmqTap) -> None:
    """publish over DXL -> misp_json (the whole event, action publish) as a DXL event, with MISP's JSON."""
    event = new_event(dxl_requester, "zmq: publish")
    add_ip(dxl_requester, event, "198.51.100.23")
    with dxl_requester.event_waiter(f"{PREFIX}/misp_json") as waiter:
        request(dxl_requester, "publish", {"event": event["id"]})
        forwarded = waiter.wait_for(lambda p: p["Event"]["uuid"] == event["uuid"], WAIT)
    assert forwarded == tap.wait_for("misp_json", lambda p: p["Event"]["uuid"] == event["uuid"])
    assert forwarded["action"] == "publish"
    assert forwarded["Event"]["published"] is True
    assert [a["value"] for a in forwarded["Event"]["Attribute"]] == ["198.51.100.23"]


# --- a dev MISP server of this module's own, and service variants on its publisher -------------------

class OwnMisp:
    """``python -m dxlmisp_devstack.misp.server`` on fixed-once ports and one SQLite file; restartable on the same."""

    def __init__(self, workdir: Path, api_key: str) -> None:
        self.workdir = workdir
        self.api_key = api_key
        self.port = free_port()
        self.zmq_port = free_port()
        self.url = ""
        self.child: Child | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait for its ready line."""
        command = [sys.executable, "-m", "dxlmisp_devstack.misp.server", "--port", str(self.port), "--zmq-port",
                   str(self.zmq_port), "--zmq-heartbeat", "0.2", "--db", str(self.workdir / "misp.sqlite")]
        self.child = Child("own-misp", command, self.workdir / "misp.log",
                           child_env(DEVSTACK_MISP_ADMIN_KEY=self.api_key))
        deadline = time.monotonic() + timeout
        while (line := self.child.ready_line(MISP_READY)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dev MISP server did not start: {self.child.tail()}")
            time.sleep(0.02)
        self.url = line[len(MISP_READY):].strip()

    def stop(self) -> None:
        """Stop the server by PID."""
        if self.child is not None:
            self.child.stop()

    def misp(self) -> Any:
        """A PyMISP client on this server."""
        from pymisp import PyMISP

        return PyMISP(self.url, self.api_key, ssl=False)


@pytest.fixture(scope="module")
def own_misp(devstack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnMisp]:
    """A dev MISP server with a 0.2 s heartbeat, for this module only; stopped by PID."""
    server = OwnMisp(tmp_path_factory.mktemp("own-misp"), devstack.info["misp_api_key"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def variant(devstack: StackHandle, own_misp: OwnMisp, directory: Path, unique_id: str, topics: str) -> Path:
    """A notification-only service variant on ``own_misp``'s publisher, in ``directory``.

    The session service's config dir is copied without its feed state first: ``make_config_dir`` can meet
    the session feed's temporary state file vanishing mid-copy.
    """
    base = directory / "base"
    shutil.copytree(devstack.info["service_config_dir"], base, ignore=shutil.ignore_patterns("*feed-state*"))
    return make_config_dir(base, directory / "service", {
        "General": {"host": own_misp.url, "serviceUniqueId": unique_id, "zeroMqNotificationTopics": topics,
                    "zeroMqPort": str(own_misp.zmq_port), "apiNames": "get_event"},
        "Feed": {"enabled": "false"}})


@pytest.fixture(scope="module")
def json_only(devstack: StackHandle, own_misp: OwnMisp,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service variant forwarding ``misp_json`` only (a ZeroMQ prefix of every other MISP topic)."""
    config = variant(devstack, own_misp, tmp_path_factory.mktemp("json-only"), JSON_ONLY, "misp_json")
    with devstack.run_service(config) as service:
        yield service


@pytest.fixture(scope="module")
def heartbeats(devstack: StackHandle, own_misp: OwnMisp,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service variant forwarding ``misp_json_self`` (the heartbeat) and ``misp_json_event``."""
    config = variant(devstack, own_misp, tmp_path_factory.mktemp("heartbeats"), HEARTBEATS,
                     "misp_json_self,misp_json_event")
    with devstack.run_service(config) as service:
        yield service


def create_and_publish(own_misp: OwnMisp, info: str) -> str:
    """Create an event on ``own_misp`` and publish it (misp_json_event add, edit, then misp_json); its uuid."""
    misp = own_misp.misp()
    event = misp.add_event({"info": info}, pythonify=False)["Event"]
    misp.publish(event["id"])
    return str(event["uuid"])


def until_forwarded(waiter: EventWaiter, make_change: Callable[[int], str], attempts: int = 40) -> str:
    """Make changes until one is forwarded (the SUB socket may still be joining); the uuid forwarded."""
    for attempt in range(attempts):
        uuid = make_change(attempt)
        try:
            waiter.wait_for(lambda p, u=uuid: p.get("Event", {}).get("uuid") == u, 0.5)
            return uuid
        except TimeoutError:
            continue
    raise TimeoutError(f"nothing was forwarded on {waiter.topic} after {attempts} changes")


def test_only_the_exact_topic_is_forwarded(devstack: StackHandle, dxl_requester: Requester, own_misp: OwnMisp,
                                           json_only: ServiceProcess, heartbeats: ServiceProcess) -> None:
    """Subscribed to misp_json only, the service forwards misp_json and neither misp_json_event nor heartbeats."""
    with dxl_requester.event_waiter(f"{PREFIX}/{JSON_ONLY}/#") as everything, \
            dxl_requester.event_waiter(f"{PREFIX}/{HEARTBEATS}/misp_json_self") as beats:
        until_forwarded(everything, lambda n: create_and_publish(own_misp, f"joining {n}"))
        beats.clear()
        beats.wait_for(lambda p: True, WAIT)  # a heartbeat went out after json_only was surely connected
        uuid = create_and_publish(own_misp, "exact topic match")
        published = everything.wait_for(lambda p: p.get("Event", {}).get("uuid") == uuid, WAIT)
        topics = set(everything.topics)
    # MISP sent misp_json_event (add, edit) and heartbeats before this misp_json: had any been forwarded,
    # it would have arrived first.
    assert topics == {f"{PREFIX}/{JSON_ONLY}/misp_json"}
    assert published["action"] == "publish"


def test_heartbeat_is_forwarded_when_listed(devstack: StackHandle, dxl_requester: Requester, own_misp: OwnMisp,
                                            heartbeats: ServiceProcess) -> None:
    """With misp_json_self listed, MISP's heartbeat arrives as a DXL event with MISP's JSON."""
    with dxl_requester.event_waiter(f"{PREFIX}/{HEARTBEATS}/misp_json_self") as beats:
        beat = beats.wait_for(lambda p: True, WAIT)
    assert beat["status"] == "ok"
    assert isinstance(beat["uptime"], int)


def test_forwarding_resumes_after_misp_restarts(devstack: StackHandle, dxl_requester: Requester, own_misp: OwnMisp,
                                                heartbeats: ServiceProcess) -> None:
    """MISP's server stops and starts again on the same ports and database; the service forwards again."""
    events_topic = f"{PREFIX}/{HEARTBEATS}/misp_json_event"
    with dxl_requester.event_waiter(events_topic) as events, \
            dxl_requester.event_waiter(f"{PREFIX}/{HEARTBEATS}/misp_json_self") as beats:
        before = until_forwarded(events, lambda n: own_misp.misp().add_event(
            {"info": f"before restart {n}"}, pythonify=False)["Event"]["uuid"])
        own_misp.stop()
        beats.clear()
        events.clear()
        own_misp.start()
        beats.wait_for(lambda p: True, WAIT)  # the new publisher's heartbeat: the SUB socket is back
        misp = own_misp.misp()
        after = misp.add_event({"info": "after restart"}, pythonify=False)["Event"]
        forwarded = events.wait_for(lambda p: p["Event"]["uuid"] == after["uuid"], WAIT)
    assert forwarded["action"] == "add"
    assert misp.get_event(before, pythonify=False)["Event"]["uuid"] == before  # same database
    assert heartbeats.process.poll() is None
