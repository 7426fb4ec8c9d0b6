"""dxlclient's private parts, and those of the paho client it vendors (``pahoproxy``), in one place.

Tested with dxlclient 5.7.0.1 (``setup.py`` bounds it below 5.8). What is used, and why:

- ``DxlClient._client``: the paho client. dxlclient has no accessor for it; TCP_NODELAY (below) and the
  confirmed publisher (:mod:`dxlmispservice.events.publisher`) need it.
- paho ``Client.on_socket_open`` (public in paho, reached through the private ``_client``): called with each
  new broker socket, so Nagle's algorithm is switched off on the first socket and on every reconnect.
- paho ``Client._packet_queue``: wrapped, so that a message's on-written hook is registered in the
  publishing thread just before paho puts the packet on its out-queue.
- paho ``Client._thread``: the network thread; a publish made from it must not wait for its own write.
- paho ``MQTTMessageInfo._condition``: the condition paho notifies when the message is written.
- ``Message._message_id``: dxlclient has no setter for the id a message is sent under.
- paho ``WebsocketWrapper._socket``: the TCP socket under a WebSocket connection.
- ``DxlClient._thread_pool`` and its ``_tasks`` queue: the incoming message pool. paho's network thread
  puts every message into it with a blocking ``put``; :func:`on_full_incoming_queue` makes that put
  non-blocking, so that a full queue never stops paho's thread (keepalives, answers, acknowledgements).
- ``Message._from_bytes``: unpacks a message that did not fit the queue, to answer it.
- ``Message._to_bytes``: the packed DXL envelope and payload, what dxlclient hands paho to publish; its size
  is what the broker's ``messageSizeLimit`` counts (:func:`packet_size`).
"""
from __future__ import annotations

import inspect
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

TESTED = "5.7.0.1"
_HOOK_MARK = "_dxlmispservice_nodelay"


def paho(dxl_client: Any) -> Any | None:
    """The paho client under ``dxl_client``, or None when it has none (a test double)."""
    return getattr(dxl_client, "_client", None)


def network_thread(dxl_client: Any) -> threading.Thread | None:
    """paho's network thread of ``dxl_client``, or None when it runs none."""
    return getattr(paho(dxl_client), "_thread", None)


def wrap_packet_queue(mqtt: Any, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> bool:
    """Replace paho's ``_packet_queue`` by ``wrap(original)``; False when this paho has none."""
    original = getattr(mqtt, "_packet_queue", None)
    if not callable(original):
        return False
    mqtt._packet_queue = wrap(original)
    return True


def published_condition(info: Any) -> threading.Condition | None:
    """The condition paho notifies when the message of ``info`` (an ``MQTTMessageInfo``) is written."""
    condition = getattr(info, "_condition", None)
    return condition if isinstance(condition, threading.Condition) else None


def set_message_id(message: Any, message_id: str) -> None:
    """Send ``message`` under ``message_id``."""
    message._message_id = message_id


def tcp_socket(sock: Any) -> Any:
    """The TCP socket of ``sock``: itself, or the one paho's WebSocket wrapper keeps."""
    return getattr(sock, "_socket", sock)


def enable_tcp_nodelay(sock: Any) -> bool:
    """Set TCP_NODELAY on ``sock`` (a socket, an SSL socket, or paho's WebSocket wrapper of one);
    False when it is not a TCP socket."""
    try:
        tcp_socket(sock).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        return False
    return True


def tcp_nodelay_enabled(sock: Any) -> bool:
    """Whether TCP_NODELAY is on for ``sock``."""
    return bool(tcp_socket(sock).getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def set_tcp_nodelay(dxl_client: Any) -> bool:
    """Turn Nagle off on ``dxl_client``'s broker socket now and on every reconnect.

    Returns whether the current socket got the option (False when not connected yet: the hook still
    sets it on the next connect)."""
    mqtt = paho(dxl_client)
    if mqtt is None:
        logger.warning("TCP_NODELAY: this dxlclient has no MQTT client to set it on")
        return False
    previous = mqtt.on_socket_open
    if not getattr(previous, _HOOK_MARK, False):
        def on_socket_open(client: Any, userdata: Any, sock: Any) -> None:
            if not enable_tcp_nodelay(sock):
                logger.debug("TCP_NODELAY: the new broker socket is not a TCP socket")
            if previous is not None:
                previous(client, userdata, sock)

        setattr(on_socket_open, _HOOK_MARK, True)
        mqtt.on_socket_open = on_socket_open
    sock = mqtt.socket()
    return sock is not None and enable_tcp_nodelay(sock)


#: The bytes of an MQTT PUBLISH around its payload, beside the topic: the fixed header (1), the
#: remaining length (at most 4), the topic's length (2) and, above QoS 0, the packet id (2).
MQTT_OVERHEAD = 9
#: The most bytes msgpack puts in front of a payload of up to 4 GiB (bin 32: type byte and length).
_MSGPACK_BIN_HEADER = 5


#: A bound on the DXL envelope of a message beside its payload and error message (measured: about 220 bytes).
ENVELOPE_BOUND = 2048


def surely_fits(message: Any, limit: int) -> bool:
    """True when ``message`` fits ``limit`` by a quick bound, without packing it (the usual case)."""
    payload = message._payload or b""
    words = len(getattr(message, "error_message", "") or "") * 4  # UTF-8 at most 4 bytes a character
    topic = len(message.destination_topic or "") * 4
    return len(payload) + words + topic + ENVELOPE_BOUND + MQTT_OVERHEAD + _MSGPACK_BIN_HEADER <= limit


def packet_size(message: Any) -> int:
    """The size of the MQTT packet that would carry ``message`` (a dxlclient Message): its packed DXL
    envelope and payload, the topic and MQTT's headers. The payload is not copied to work it out."""
    payload = message._payload
    message._payload = b""
    try:
        envelope = len(message._to_bytes())
    finally:
        message._payload = payload
    topic = len((message.destination_topic or "").encode("utf-8"))
    return envelope + len(payload or b"") + _MSGPACK_BIN_HEADER + topic + MQTT_OVERHEAD


def on_full_incoming_queue(dxl_client: Any, handle: Callable[[str, bytes], bool]) -> bool:
    """Make paho's put into ``dxl_client``'s incoming queue non-blocking: a message that does not fit goes to
    ``handle(topic, payload)`` (on paho's network thread; it must be quick), which answers it and returns
    True, or returns False to wait for room as dxlclient does. False when this dxlclient has no such pool."""
    pool = getattr(dxl_client, "_thread_pool", None)
    tasks = getattr(pool, "_tasks", None)
    if pool is None or not isinstance(tasks, queue.Queue):
        return False

    def add_task(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            tasks.put_nowait((func, args, kwargs))
        except queue.Full:
            if not handle(str(kwargs.get("channel") or ""), kwargs.get("payload") or b""):
                tasks.put((func, args, kwargs))

    pool.add_task = add_task
    return True


def incoming_unfinished(dxl_client: Any) -> int:
    """How many messages ``dxl_client``'s incoming pool holds, queued or being handled (0 without a pool)."""
    tasks = getattr(getattr(dxl_client, "_thread_pool", None), "_tasks", None)
    return int(getattr(tasks, "unfinished_tasks", 0))


def unpack(payload: bytes) -> Any:
    """The dxlclient Message packed in ``payload``."""
    from dxlclient.message import Message

    return Message._from_bytes(payload)


def missing() -> list[str]:
    """The private parts above that the installed dxlclient no longer has (empty when all are there)."""
    from dxlclient.client import DxlClient
    from dxlclient.message import Event
    from pahoproxy.client import Client, MQTTMessageInfo, WebsocketWrapper

    problems = []
    if "self._client =" not in inspect.getsource(DxlClient.__init__):
        problems.append("DxlClient._client (the paho client)")
    client = Client()
    for name in ("_packet_queue", "_thread", "on_socket_open", "socket"):
        if not hasattr(client, name):
            problems.append(f"paho Client.{name}")
    if published_condition(MQTTMessageInfo(1)) is None:
        problems.append("paho MQTTMessageInfo._condition")
    if not hasattr(Event("/compat"), "_message_id"):
        problems.append("Message._message_id")
    if not hasattr(Event("/compat"), "_payload") or not callable(getattr(Event("/compat"), "_to_bytes", None)):
        problems.append("Message._payload and Message._to_bytes")
    from dxlclient._thread_pool import ThreadPool
    from dxlclient.message import Message

    if "self._thread_pool = ThreadPool(" not in inspect.getsource(DxlClient) or \
            "self._tasks = Queue(" not in inspect.getsource(ThreadPool.__init__):
        problems.append("DxlClient._thread_pool._tasks (the incoming message queue)")
    if not callable(getattr(Message, "_from_bytes", None)):
        problems.append("Message._from_bytes")
    if "self._socket =" not in inspect.getsource(WebsocketWrapper.__init__):
        problems.append("paho WebsocketWrapper._socket")
    return problems
