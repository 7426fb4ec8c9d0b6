"""The ZeroMQ -> DXL forwarder, against the dev MISP server's real ZeroMQ publisher over TCP."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from dxlmisp_devstack.misp.zmq import ZmqPublisher
from dxlmispservice.events.publisher import PublishError, TooLarge
from dxlmispservice.errors import ConfigError
from dxlmispservice.events.notifications import Forwarder, notification_topic, parse_frame
from dxlmispservice.settings import ZmqSettings

MISP_TOPICS = ("misp_json", "misp_json_event", "misp_json_attribute", "misp_json_sighting",
               "misp_json_tag", "misp_json_object", "misp_json_user")
LOGGER = "dxlmispservice.events.notifications"


class ListPublisher:
    """Collects (topic, payload) pairs; thread-safe; can be told to fail or block."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail_when: Callable[[str, dict[str, Any]], bool] = lambda topic, payload: False
        self.error: Exception = RuntimeError("fabric down")
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        if self.fail_when(topic, payload):
            raise self.error
        with self.lock:
            self.sent.append((topic, payload))

    def topics(self) -> list[str]:
        """The DXL topics published so far, in order."""
        with self.lock:
            return [t for t, _ in self.sent]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail the test when it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def settings(port: int, topics: tuple[str, ...], **kw: Any) -> ZmqSettings:
    """ZmqSettings for a publisher on 127.0.0.1:port."""
    return ZmqSettings(topics=topics, host="127.0.0.1", port=port, **kw)


@pytest.fixture()
def misp_pub() -> Iterator[ZmqPublisher]:
    """The dev MISP server's publisher on a free port, heartbeat every 50 ms."""
    pub = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0.05)
    pub.start()
    yield pub
    pub.close()


@pytest.fixture()
def running() -> Iterator[Callable[..., Forwarder]]:
    """Builds and starts forwarders; stops every one of them after the test."""
    started: list[Forwarder] = []

    def make(*args: Any, **kw: Any) -> Forwarder:
        kw.setdefault("poll_timeout", 0.05)
        fwd = Forwarder(*args, **kw)
        fwd.start()
        started.append(fwd)
        return fwd

    yield make
    for fwd in started:
        fwd.stop()


def join(pub: ZmqPublisher, out: ListPublisher, topic: str = "misp_json_event") -> None:
    """Publish probes on ``topic`` until one is forwarded, then a fence, and forget them all."""
    def seen(marker: str) -> bool:
        return any(p.get("probe") == marker for _, p in list(out.sent))

    wait_until(lambda: (pub.publish(topic, {"probe": "join"}), seen("join"))[1])
    pub.publish(topic, {"probe": "fence"})  # frames keep their order: every probe is in once this is
    wait_until(lambda: seen("fence"))
    with out.lock:
        out.sent.clear()


def test_topic_name_with_and_without_service_id() -> None:
    """The DXL topic is the prefix, the optional serviceUniqueId, then the ZeroMQ topic."""
    assert notification_topic("misp_json_event") == \
        "/opendxl-misp/event/zeromq-notifications/misp_json_event"
    assert notification_topic("misp_json_event", "svc1") == \
        "/opendxl-misp/event/zeromq-notifications/svc1/misp_json_event"


def test_parse_frame_splits_at_the_first_space() -> None:
    """A single MISP frame splits into the topic and the JSON after the first space."""
    assert parse_frame([b'misp_json_tag {"a": "b c"}']) == ("misp_json_tag", b'{"a": "b c"}')
    assert parse_frame([b"misp_json_tag", b"{}"]) == ("misp_json_tag", b"{}")


def test_no_topics_is_a_config_error() -> None:
    """A forwarder with no topic refuses to be built."""
    with pytest.raises(ConfigError):
        Forwarder(settings(1, ()), ListPublisher())


def test_each_topic_is_forwarded_with_its_json(misp_pub: ZmqPublisher, running: Callable[..., Forwarder]) -> None:
    """Every configured MISP topic arrives on its own DXL topic with MISP's decoded JSON."""
    out = ListPublisher()
    running(settings(misp_pub.port, MISP_TOPICS), out, service_unique_id="svc")
    join(misp_pub, out)
    for i, topic in enumerate(MISP_TOPICS):
        misp_pub.publish(topic, {"n": i, "topic": topic})
    wait_until(lambda: len(out.sent) == len(MISP_TOPICS))
    assert out.sent == [(notification_topic(t, "svc"), {"n": i, "topic": t}) for i, t in enumerate(MISP_TOPICS)]


def test_topics_match_exactly_not_by_prefix(misp_pub: ZmqPublisher, running: Callable[..., Forwarder]) -> None:
    """Subscribed to misp_json only, a misp_json_event frame is not forwarded."""
    out = ListPublisher()
    running(settings(misp_pub.port, ("misp_json",)), out)
    join(misp_pub, out, topic="misp_json")
    misp_pub.publish("misp_json_event", {"which": "event"})
    misp_pub.publish("misp_json", {"which": "plain"})  # frames keep their order: this one comes last
    wait_until(lambda: len(out.sent) >= 1)
    assert out.sent == [(notification_topic("misp_json"), {"which": "plain"})]


def test_heartbeats_are_not_forwarded_unless_listed(misp_pub: ZmqPublisher,
                                                    running: Callable[..., Forwarder]) -> None:
    """misp_json_self is dropped when it is not configured, and forwarded when it is."""
    quiet, loud = ListPublisher(), ListPublisher()
    running(settings(misp_pub.port, ("misp_json_event",)), quiet)
    running(settings(misp_pub.port, ("misp_json_event", "misp_json_self")), loud)
    join(misp_pub, quiet)
    wait_until(lambda: notification_topic("misp_json_self") in loud.topics())
    misp_pub.publish("misp_json_event", {"last": True})
    wait_until(lambda: len(quiet.sent) == 1)
    assert quiet.topics() == [notification_topic("misp_json_event")]
    assert "uptime" in next(p for t, p in loud.sent if t.endswith("/misp_json_self"))


def test_payload_that_is_not_json_is_dropped_and_the_next_goes_out(
        misp_pub: ZmqPublisher, running: Callable[..., Forwarder], caplog: pytest.LogCaptureFixture) -> None:
    """A frame whose payload is not JSON (or not an object) is logged and dropped; forwarding goes on."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    out = ListPublisher()
    fwd = running(settings(misp_pub.port, ("misp_json_event",)), out)
    join(misp_pub, out)
    with misp_pub._lock:  # the dev publisher only sends JSON: send broken frames on its socket directly
        misp_pub._socket.send(b"misp_json_event {not json")
        misp_pub._socket.send(b"misp_json_event [1, 2]")
    misp_pub.publish("misp_json_event", {"ok": 1})
    wait_until(lambda: len(out.sent) == 1)
    assert out.sent[0][1] == {"ok": 1}
    assert fwd.dropped == 2
    assert "not JSON" in caplog.text


def test_a_failed_publish_is_logged_and_the_next_event_goes_out(
        misp_pub: ZmqPublisher, running: Callable[..., Forwarder], caplog: pytest.LogCaptureFixture) -> None:
    """When publishing one event raises, it is logged, and the following events are still forwarded."""
    caplog.set_level(logging.ERROR, logger=LOGGER)
    out = ListPublisher()
    out.fail_when = lambda topic, payload: payload.get("n") == 1
    fwd = running(settings(misp_pub.port, ("misp_json_event",)), out)
    join(misp_pub, out)
    for n in range(1, 4):
        misp_pub.publish("misp_json_event", {"n": n})
    wait_until(lambda: len(out.sent) == 2)
    assert [p["n"] for _, p in out.sent] == [2, 3]
    assert fwd.failed == 1
    assert "Failed to publish" in caplog.text


def test_fabric_away_is_one_warning_line_per_frame_without_traceback(
        misp_pub: ZmqPublisher, running: Callable[..., Forwarder], caplog: pytest.LogCaptureFixture) -> None:
    """A PublishError (broker away or slow) logs one warning line naming the topic, with no traceback."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    out = ListPublisher()
    out.error = PublishError("not connected to the broker")
    out.fail_when = lambda topic, payload: payload.get("n") == 1
    fwd = running(settings(misp_pub.port, ("misp_json_event",)), out)
    join(misp_pub, out)
    for n in range(1, 3):
        misp_pub.publish("misp_json_event", {"n": n})
    wait_until(lambda: len(out.sent) == 1)
    failures = [r for r in caplog.records if "Did not forward" in r.getMessage()]
    assert fwd.failed == 1 and len(failures) == 1
    assert failures[0].exc_info is None and "not connected to the broker" in failures[0].getMessage()


def test_a_frame_too_big_for_the_fabric_is_forwarded_as_a_notice_in_its_place(
        misp_pub: ZmqPublisher, running: Callable[..., Forwarder], caplog: pytest.LogCaptureFixture) -> None:
    """A frame over the fabric's limit goes out as a notice naming its topic, size and the event and
    attribute uuids in it; the frames before and after it go out whole, in order."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    out = ListPublisher()
    out.error = TooLarge("/t", 2_000_000, 1_048_576)
    out.fail_when = lambda topic, payload: payload.get("n") == 2
    fwd = running(settings(misp_pub.port, ("misp_json_event",)), out)
    join(misp_pub, out)
    big = {"n": 2, "Event": {"uuid": "ev-1", "Attribute": [{"uuid": "at-1"}, {"uuid": "at-2"}],
                             "Object": [{"uuid": "ob-1", "Attribute": [{"uuid": "at-3"}]}]}}
    for payload in ({"n": 1}, big, {"n": 3}):
        misp_pub.publish("misp_json_event", payload)
    wait_until(lambda: len(out.sent) == 3)
    assert out.sent[0][1] == {"n": 1} and out.sent[2][1] == {"n": 3}
    assert out.sent[1][1] == {"notice": {"topic": "misp_json_event", "size": 2_000_000, "complete": False},
                              "event_uuids": ["ev-1"], "attribute_uuids": ["at-1", "at-2", "at-3"]}
    assert fwd.notices == 1 and fwd.failed == 0 and "forwarded a notice instead" in caplog.text


def test_forwarding_resumes_after_the_publisher_restarts(running: Callable[..., Forwarder]) -> None:
    """MISP's publisher closes and binds the same port again: the forwarder reconnects and forwards."""
    first = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0.05)
    port = first.start()
    out = ListPublisher()
    running(settings(port, ("misp_json_event",)), out)
    try:
        join(first, out)
        first.publish("misp_json_event", {"before": True})
        wait_until(lambda: len(out.sent) == 1)
    finally:
        first.close()
    with ZmqPublisher("127.0.0.1", port, heartbeat_interval=0.05) as second:
        join(second, out)
        second.publish("misp_json_event", {"after": True})
        wait_until(lambda: len(out.sent) == 1)
    assert out.sent == [(notification_topic("misp_json_event"), {"after": True})]


def test_silence_is_logged_and_so_is_the_return(running: Callable[..., Forwarder],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """No frame for N heartbeat intervals logs a warning; frames coming back log an info line."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    pub = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0.02)
    port = pub.start()
    out = ListPublisher()
    running(settings(port, ("misp_json_event",)), out, heartbeat_interval=0.05, silence_intervals=3)
    try:
        join(pub, out)
    finally:
        pub.close()
    wait_until(lambda: "has been silent" in caplog.text)
    assert "sending again" not in caplog.text
    with ZmqPublisher("127.0.0.1", port, heartbeat_interval=0.02):
        wait_until(lambda: "sending again" in caplog.text)
    warning = next(r for r in caplog.records if "has been silent" in r.getMessage())
    assert warning.levelno == logging.WARNING


def test_stop_returns_with_no_publisher_ever_present() -> None:
    """A forwarder pointed at an address where nothing listens starts and stops cleanly."""
    with ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0) as pub:
        port = pub.port  # a port that was free a moment ago, and is closed again below
    fwd = Forwarder(settings(port, ("misp_json",)), ListPublisher(), poll_timeout=0.05)
    fwd.start()
    fwd.stop()
    assert fwd._worker.thread is None and fwd._context is None


def test_stop_returns_while_the_dxl_publish_is_stuck(
        misp_pub: ZmqPublisher, caplog: pytest.LogCaptureFixture) -> None:
    """stop() gives up on a thread stuck in a publish call after its timeout, with a warning."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    release = threading.Event()
    entered = threading.Event()

    def stuck(topic: str, payload: dict[str, Any]) -> None:
        entered.set()
        release.wait(30)

    fwd = Forwarder(settings(misp_pub.port, ("misp_json_event",)), stuck, poll_timeout=0.05, stop_timeout=0.2)
    fwd.start()
    wait_until(lambda: (misp_pub.publish("misp_json_event", {}), entered.is_set())[1])
    thread = fwd._worker.thread
    fwd.stop()
    assert "did not stop" in caplog.text
    release.set()
    thread.join(5)
    assert not thread.is_alive()


def test_plain_credentials_are_sent(running: Callable[..., Forwarder]) -> None:
    """With a PLAIN username and password, a publisher that requires them is read."""
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_plain(domain="*", passwords={"dxl": "s3cret"})
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_server = True
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    out = ListPublisher()
    try:
        running(settings(port, ("misp_json_event",), username="dxl", password="s3cret"), out)
        wait_until(lambda: (sock.send(b'misp_json_event {"auth": "ok"}'), bool(out.sent))[1])
        assert out.sent[0] == (notification_topic("misp_json_event"), {"auth": "ok"})
    finally:
        sock.close(linger=0)
        auth.stop()
        ctx.term()
