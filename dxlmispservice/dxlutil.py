"""Small helpers on dxlclient: TCP_NODELAY on the broker connection, and a JSON event publisher.

**TCP_NODELAY.** dxlclient's MQTT client (its vendored paho, ``pahoproxy``) leaves Nagle's algorithm on.
A message of 32 KB or more then meets the broker's delayed ACK and stalls 40-130 ms. The service turns
Nagle off on its broker socket, and keeps it off across reconnects: paho calls ``on_socket_open`` with each
new socket (before the MQTT CONNECT goes out), so the option is set there too.
"""
from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

from dxlclient.message import Event

logger = logging.getLogger(__name__)

#: Publishing a DXL event: topic and JSON-able payload.
Publisher = Callable[[str, dict], None]

_HOOK_MARK = "_dxlmispservice_nodelay"


def enable_tcp_nodelay(sock: Any) -> bool:
    """Set TCP_NODELAY on ``sock`` (a socket, an SSL socket, or paho's WebSocket wrapper of one);
    False when it is not a TCP socket."""
    raw = getattr(sock, "_socket", sock)  # paho's WebsocketWrapper keeps the TCP socket in ``_socket``
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        return False
    return True


def tcp_nodelay_enabled(sock: Any) -> bool:
    """Whether TCP_NODELAY is on for ``sock``."""
    raw = getattr(sock, "_socket", sock)
    return bool(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def set_tcp_nodelay(dxl_client: Any) -> bool:
    """Turn Nagle off on ``dxl_client``'s broker socket now and on every reconnect.

    Returns whether the current socket got the option (False when not connected yet: the hook still
    sets it on the next connect)."""
    mqtt = getattr(dxl_client, "_client", None)  # dxlclient's paho client; private, pinned dxlclient
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


def dxl_publisher(dxl_client: Any, *, size_warning: int | None = None) -> Publisher:
    """A :data:`Publisher` sending compact JSON DXL events through ``dxl_client``.

    An event over ``size_warning`` bytes is still sent, with a warning: brokers drop messages over
    their ``messageSizeLimit`` (about 1 MiB by default) without a word."""
    def publish(topic: str, payload: dict) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if size_warning is not None and len(body) > size_warning:
            logger.warning("The DXL event on %s is %d bytes, over %d: a broker may drop it", topic, len(body),
                           size_warning)
        event = Event(topic)
        event.payload = body
        dxl_client.send_event(event)

    return publish
