"""The dev MISP server's ZeroMQ publisher, read by a real pyzmq SUB socket over TCP."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from dxlmisp_devstack.misp.zmq import ZmqPublisher

HEARTBEAT = "misp_json_self"


@pytest.fixture()
def publisher() -> Iterator[ZmqPublisher]:
    """A publisher on a free port with a fast heartbeat, closed after the test."""
    pub = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0.05)
    pub.start()
    yield pub
    pub.close()


@pytest.fixture()
def context() -> Iterator[zmq.Context]:
    """A pyzmq context of the test's own, terminated after it."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def subscriber(ctx: zmq.Context, port: int, *topics: str) -> zmq.Socket:
    """A SUB socket connected to the publisher and subscribed to ``topics`` and the heartbeat."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    for topic in (*topics, HEARTBEAT):
        sock.setsockopt_string(zmq.SUBSCRIBE, topic)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def split(frame: bytes) -> tuple[str, dict[str, Any]]:
    """A frame ``<topic> <json>`` as (topic, payload)."""
    topic, _, body = frame.decode("utf-8").partition(" ")
    return topic, json.loads(body)


def wait_joined(sock: zmq.Socket) -> None:
    """Block until a heartbeat arrives: from then on the subscription is live on the publisher."""
    while True:
        topic, _ = split(sock.recv())
        if topic == HEARTBEAT:
            return


def receive_non_heartbeat(sock: zmq.Socket, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` frames that are not heartbeats."""
    got: list[tuple[str, dict[str, Any]]] = []
    while len(got) < count:
        topic, payload = split(sock.recv())
        if topic != HEARTBEAT:
            got.append((topic, payload))
    return got


def test_start_binds_a_free_port(publisher: ZmqPublisher) -> None:
    """start() with port 0 binds a random free port and reports it."""
    assert publisher.port > 0


def test_frame_is_topic_space_json(publisher: ZmqPublisher, context: zmq.Context) -> None:
    """A published payload arrives as one frame: the topic, one space, then compact JSON."""
    sock = subscriber(context, publisher.port, "misp_json_event")
    wait_joined(sock)
    payload = {"Event": {"id": "7", "info": "a b"}, "action": "add"}
    publisher.publish("misp_json_event", payload)
    while True:
        frame = sock.recv()
        if not frame.startswith(HEARTBEAT.encode()):
            break
    assert frame.startswith(b"misp_json_event {")
    assert sock.getsockopt(zmq.RCVMORE) == 0
    assert split(frame) == ("misp_json_event", payload)


def test_heartbeat_reports_status_and_uptime(publisher: ZmqPublisher, context: zmq.Context) -> None:
    """The heartbeat thread sends misp_json_self frames with status ok and an integer uptime."""
    sock = subscriber(context, publisher.port)
    topic, payload = split(sock.recv())
    assert topic == HEARTBEAT
    assert payload["status"] == "ok"
    assert isinstance(payload["uptime"], int) and payload["uptime"] >= 0


def test_every_misp_topic_is_delivered_in_order(publisher: ZmqPublisher, context: zmq.Context) -> None:
    """Each MISP topic reaches a subscriber to it, in the order published."""
    topics = ["misp_json", "misp_json_event", "misp_json_attribute", "misp_json_sighting", "misp_json_tag"]
    sock = subscriber(context, publisher.port, *topics)
    wait_joined(sock)
    sent = [(topic, {"n": n, "action": "edit"}) for n, topic in enumerate(topics)]
    for topic, payload in sent:
        publisher.publish(topic, payload)
    assert receive_non_heartbeat(sock, len(sent)) == sent


def test_subscription_filters_other_topics(publisher: ZmqPublisher, context: zmq.Context) -> None:
    """A subscriber to misp_json_attribute gets none of the misp_json_event frames published around it."""
    sock = subscriber(context, publisher.port, "misp_json_attribute")
    wait_joined(sock)
    publisher.publish("misp_json_event", {"n": 1})
    publisher.publish("misp_json_attribute", {"n": 2})
    publisher.publish("misp_json_event", {"n": 3})
    publisher.publish("misp_json_attribute", {"n": 4})
    assert receive_non_heartbeat(sock, 2) == [("misp_json_attribute", {"n": 2}), ("misp_json_attribute", {"n": 4})]


def test_zeromq_matches_subscriptions_by_prefix(publisher: ZmqPublisher, context: zmq.Context) -> None:
    """A subscription to misp_json also receives misp_json_event: exact matching is the reader's job."""
    sock = subscriber(context, publisher.port, "misp_json")
    wait_joined(sock)
    publisher.publish("misp_json_event", {"n": 1})
    assert receive_non_heartbeat(sock, 1) == [("misp_json_event", {"n": 1})]


def test_a_burst_loses_nothing(publisher: ZmqPublisher, context: zmq.Context) -> None:
    """A burst of 2,000 frames reaches a live subscriber whole and in order."""
    sock = subscriber(context, publisher.port, "misp_json_attribute")
    sock.setsockopt(zmq.RCVHWM, 100_000)
    wait_joined(sock)
    for n in range(2000):
        publisher.publish("misp_json_attribute", {"n": n})
    got = receive_non_heartbeat(sock, 2000)
    assert [payload["n"] for _, payload in got] == list(range(2000))


def test_publish_after_close_is_a_no_op(context: zmq.Context) -> None:
    """After close() a publish neither raises nor sends, and a second close() is harmless."""
    pub = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0)
    port = pub.start()
    sock = subscriber(context, port, "misp_json_event")
    sock.setsockopt(zmq.RCVTIMEO, 200)
    pub.close()
    pub.publish("misp_json_event", {"n": 1})
    pub.close()
    with pytest.raises(zmq.Again):
        sock.recv()


def test_publisher_restart_on_same_port_reaches_a_connected_subscriber(context: zmq.Context) -> None:
    """A subscriber stays connected across a publisher restart on the same port and gets the new frames."""
    first = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0.05)
    port = first.start()
    sock = subscriber(context, port, "misp_json_event")
    wait_joined(sock)
    first.close()
    second = ZmqPublisher("127.0.0.1", port, heartbeat_interval=0)
    try:
        second.start()
        sock.setsockopt(zmq.RCVTIMEO, 50)
        received: list[tuple[str, dict[str, Any]]] = []
        for _ in range(100):  # resend until the reconnected subscription is live
            second.publish("misp_json_event", {"n": 2})
            try:
                received.append(split(sock.recv()))
            except zmq.Again:
                continue
            if received[-1][0] != HEARTBEAT:
                break
        assert received[-1] == ("misp_json_event", {"n": 2})
    finally:
        second.close()
