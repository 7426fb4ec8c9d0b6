"""dxl_publisher: returns once the event's bytes are in the broker socket, raises when they are not, and sends
an EventPayload under its own message id. A real (vendored) paho client writes to one end of a socket pair."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dxlclient.message import Event, Message
from pahoproxy.client import Client as PahoClient

from dxlmispservice.events.publisher import EventPayload, PublishError, TooLarge, dxl_publisher

TOPIC = "/opendxl-misp/event/feed/event"


class PahoDxlClient:
    """The part of DxlClient the publisher uses: ``send_event`` hands the event's bytes to paho's ``publish``
    with QoS 0, as dxlclient 5.7.0.1's ``_publish_message`` does. ``sent`` keeps each event."""

    def __init__(self, sock: socket.socket | None, *, network_thread: threading.Thread | None) -> None:
        self._client = PahoClient()
        self._client._sock = sock
        self._client._thread = network_thread  # with a network thread, publish only queues the packet
        self.sent: list[Event] = []

    def send_event(self, event: Event) -> None:
        self.sent.append(event)
        self._client.publish(topic=event.destination_topic, payload=event._to_bytes(), qos=0)


@pytest.fixture()
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair: (the client's end, the broker's end)."""
    client, broker = socket.socketpair()
    broker.setblocking(False)
    yield client, broker
    client.close()
    broker.close()


def received(broker: socket.socket) -> bytes:
    """Everything the broker's end can read right now."""
    try:
        return broker.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_publish_returns_only_once_the_network_thread_wrote_the_message(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """With the write left to another thread, publish waits for it: on return the bytes are in the socket."""
    client_end, broker_end = pair
    release = threading.Event()

    def network() -> None:  # paho's network thread, held back until the publisher is waiting
        release.wait(10)
        dxl._client.loop_write()

    writer = threading.Thread(target=network)
    dxl = PahoDxlClient(client_end, network_thread=writer)
    publish = dxl_publisher(dxl, write_timeout=10)
    writer.start()
    seen_before_write: list[bytes] = []

    def let_it_write() -> None:
        seen_before_write.append(received(broker_end))
        release.set()

    threading.Timer(0.2, let_it_write).start()
    publish(TOPIC, {"Event": {"uuid": "u"}})
    packet = received(broker_end)  # read before anything else can happen: the bytes must be there already
    writer.join(10)
    assert seen_before_write == [b""]
    assert TOPIC.encode() in packet and b'{"Event":{"uuid":"u"}}' in packet


def test_publish_that_never_reaches_the_socket_raises(pair: tuple[socket.socket, socket.socket]) -> None:
    """A message still queued when write_timeout passes is a PublishError (the caller treats it as not sent)."""
    client_end, broker_end = pair
    idle = threading.Thread(target=lambda: None)  # a network thread that never writes
    publish = dxl_publisher(PahoDxlClient(client_end, network_thread=idle), write_timeout=0.2)
    with pytest.raises(PublishError, match="did not reach the broker socket"):
        publish(TOPIC, {"Event": {}})
    assert received(broker_end) == b""


def test_publish_while_not_connected_raises_at_once() -> None:
    """paho refuses a publish with no socket (MQTT_ERR_NO_CONN): a PublishError, not a silent drop."""
    publish = dxl_publisher(PahoDxlClient(None, network_thread=None), write_timeout=30)
    with pytest.raises(PublishError, match="not currently connected"):
        publish(TOPIC, {"Event": {}})


def test_publish_without_a_network_thread_writes_in_the_call(pair: tuple[socket.socket, socket.socket]) -> None:
    """With no network thread paho writes inside publish; the publisher returns with the bytes sent."""
    client_end, broker_end = pair
    dxl_publisher(PahoDxlClient(client_end, network_thread=None))(TOPIC, {"a": 1})
    assert b'{"a":1}' in received(broker_end)


def test_event_payload_is_sent_under_its_message_id(pair: tuple[socket.socket, socket.socket]) -> None:
    """An EventPayload goes out with its message_id and the plain JSON body; a dict gets a random id."""
    client_end, broker_end = pair
    dxl = PahoDxlClient(client_end, network_thread=None)
    publish = dxl_publisher(dxl)
    publish(TOPIC, EventPayload({"Event": {"uuid": "u"}}, "{00000000-0000-5000-8000-000000000001}"))
    publish(TOPIC, {"Event": {"uuid": "u"}})
    wire = received(broker_end)
    named, plain = dxl.sent
    assert named.message_id == "{00000000-0000-5000-8000-000000000001}"
    assert plain.message_id != named.message_id
    assert named.payload == plain.payload == b'{"Event":{"uuid":"u"}}'
    parsed = Message._from_bytes(named._to_bytes())
    assert parsed.message_id == named.message_id and named.message_id.encode() in wire


def test_a_client_without_paho_is_sent_to_without_waiting() -> None:
    """A DxlClient stand-in whose send_event never reaches paho is still sent to (nothing to wait for)."""
    class Recorder:
        def __init__(self) -> None:
            self.events: list[Any] = []

        def send_event(self, event: Event) -> None:
            self.events.append(event)

    client = Recorder()
    dxl_publisher(client)(TOPIC, {"x": 1})
    assert [e.payload for e in client.events] == [b'{"x":1}']


def test_on_written_runs_in_the_network_thread_right_after_the_write(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """An EventPayload's on_written runs in paho's network thread once the bytes are in the socket, before
    publish returns."""
    client_end, broker_end = pair
    writer = threading.Thread(target=lambda: dxl._client.loop_write())
    dxl = PahoDxlClient(client_end, network_thread=writer)
    publish = dxl_publisher(dxl, write_timeout=10)
    seen: list[tuple[str, bytes]] = []
    threading.Timer(0.1, writer.start).start()
    publish(TOPIC, EventPayload({"n": 1}, "{00000000-0000-5000-8000-000000000002}",
                                on_written=lambda: seen.append((threading.current_thread().name,
                                                                received(broker_end)))))
    writer.join(10)
    assert len(seen) == 1 and seen[0][0] == writer.name and b'{"n":1}' in seen[0][1]


def test_on_written_runs_in_the_caller_when_the_caller_writes(pair: tuple[socket.socket, socket.socket]) -> None:
    """With no network thread paho writes inside publish, in the caller's thread: the hook runs there, once."""
    client_end, broker_end = pair
    calls: list[str] = []
    dxl_publisher(PahoDxlClient(client_end, network_thread=None))(
        TOPIC, EventPayload({}, "{00000000-0000-5000-8000-000000000003}",
                            on_written=lambda: calls.append(threading.current_thread().name)))
    assert calls == [threading.current_thread().name] and b"{}" in received(broker_end)


def test_on_written_registered_late_still_runs_once(pair: tuple[socket.socket, socket.socket]) -> None:
    """Without the _packet_queue seam the hook is registered after paho wrote the message: it runs at once."""
    client_end, broker_end = pair
    dxl = PahoDxlClient(client_end, network_thread=None)
    publish = dxl_publisher(dxl)
    del dxl._client._packet_queue  # paho's own method again: no registration before the write
    calls: list[int] = []
    publish(TOPIC, EventPayload({}, "{00000000-0000-5000-8000-000000000006}", on_written=lambda: calls.append(1)))
    publish(TOPIC, {"plain": True})
    assert calls == [1] and b'{"plain":true}' in received(broker_end)


def test_on_written_never_runs_for_a_publish_that_failed(pair: tuple[socket.socket, socket.socket]) -> None:
    """A publish that timed out cancels its hook: a write that comes later does not run it."""
    client_end, broker_end = pair
    idle = threading.Thread(target=lambda: None)
    dxl = PahoDxlClient(client_end, network_thread=idle)
    calls: list[int] = []
    with pytest.raises(PublishError):
        dxl_publisher(dxl, write_timeout=0.2)(
            TOPIC, EventPayload({}, "{00000000-0000-5000-8000-000000000004}", on_written=lambda: calls.append(1)))
    dxl._client.loop_write()  # the queued message goes out after all
    assert b"{}" in received(broker_end) and calls == []


def test_an_error_in_on_written_is_raised_by_the_publish(pair: tuple[socket.socket, socket.socket]) -> None:
    """on_written's error (say the state file's rename failed) comes out of the publish call."""
    client_end, _ = pair

    def fail() -> None:
        raise OSError("rename failed")

    with pytest.raises(OSError, match="rename failed"):
        dxl_publisher(PahoDxlClient(client_end, network_thread=None))(
            TOPIC, EventPayload({}, "{00000000-0000-5000-8000-000000000005}", on_written=fail))


def test_an_event_over_the_fabric_limit_is_refused_before_anything_is_sent(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """An event whose MQTT packet would be over ``limit`` raises TooLarge naming both sizes; nothing reaches
    dxlclient or the socket, and an event that fits goes out on the same publisher."""
    client_end, broker_end = pair
    dxl = PahoDxlClient(client_end, network_thread=None)
    publish = dxl_publisher(dxl, limit=2000, write_timeout=5)
    with pytest.raises(TooLarge) as refused:
        publish(TOPIC, {"Event": {"info": "x" * 2000}})
    assert refused.value.limit == 2000 and refused.value.size > 2000 and "over fabricMessageLimit 2000" in str(refused.value)
    assert dxl.sent == [] and received(broker_end) == b""
    publish(TOPIC, {"Event": {"info": "x" * 1500}})
    packet = received(broker_end)
    assert len(dxl.sent) == 1 and len(packet) <= 2000 and b"x" * 1500 in packet


def test_the_api_key_is_cut_out_of_an_event(pair: tuple[socket.socket, socket.socket]) -> None:
    """An event whose JSON holds the API key (a forwarded user notification, say) goes out without it."""
    client_end, broker_end = pair
    dxl = PahoDxlClient(client_end, network_thread=None)
    key = "k3y" * 13
    dxl_publisher(dxl, secret=key, write_timeout=5)(TOPIC, {"User": {"authkey": key}})
    packet = received(broker_end)
    assert key.encode() not in packet and b'{"User":{"authkey":"<redacted>"}}' in packet
