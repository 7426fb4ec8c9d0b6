"""MISP's ZeroMQ notifications, forwarded onto the DXL fabric as DXL events.

MISP publishes every change on a ZeroMQ PUB socket, one frame per change: ``<topic> <json>``
(``misp_json_event``, ``misp_json_attribute``, ``misp_json_sighting``, ... and the ``misp_json_self``
heartbeat). :class:`Forwarder` holds a SUB socket connected to that publisher and sends each frame
whose topic is configured as a DXL event on
``/opendxl-misp/event/zeromq-notifications[/<serviceUniqueId>]/<zmq topic>``, carrying MISP's JSON.

What it promises:

- **Exact topics.** A ZeroMQ subscription matches by prefix (``misp_json`` also receives
  ``misp_json_event``), so every frame is checked again against the configured topic names.
- **Heartbeats.** ``misp_json_self`` is always subscribed to, to see that MISP's publisher is alive,
  but it is forwarded only when it is configured. When nothing at all has arrived for
  ``silence_intervals`` heartbeat intervals a warning is logged, and an info line once frames come back.
- **Nothing over the fabric's limit.** A frame whose DXL event would be over the fabric's message limit
  is forwarded as a notice that fits (:func:`~dxlmispservice.events.envelope.frame_notice`: its topic, its
  size, ``complete: false`` and the event and attribute uuids it names), logged and counted.
- **One failure is one failure.** A frame that is not JSON is logged and dropped; a publish that raises
  is logged, and the next frame still goes out. The receive loop itself never dies of an exception.
- **Restarts of MISP.** ZeroMQ reconnects the SUB socket by itself, so forwarding resumes when MISP's
  publisher comes back on the same address. Frames published while no connection exists are lost:
  ZeroMQ pub/sub keeps no history (the event feed, ``feed.py``, is the path that loses nothing).
- **Clean shutdown.** The loop polls with a timeout, the socket has ``LINGER 0``, and :meth:`stop`
  joins the thread with a timeout: it returns within that timeout whatever the peer does.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import zmq

from dxlmispservice.events.worker import Worker
from dxlmispservice.events.envelope import frame_notice
from dxlmispservice.events.publisher import Publisher, PublishError, TooLarge
from dxlmispservice.names import notification_topic
from dxlmispservice.errors import ConfigError

logger = logging.getLogger(__name__)


#: The DXL event topics are this prefix, the optional serviceUniqueId, then the ZeroMQ topic.

#: MISP's heartbeat topic.
HEARTBEAT_TOPIC = "misp_json_self"




def parse_frame(frames: list[bytes]) -> tuple[str, bytes]:
    """Split one ZeroMQ message into ``(topic, payload bytes)``.

    MISP sends one frame, ``<topic> <json>``. A multipart message (``[topic, payload]``) is accepted too.
    A frame with no space is all topic and an empty payload.
    """
    if len(frames) > 1:
        return frames[0].decode("utf-8", errors="replace"), b"".join(frames[1:])
    topic, _, payload = frames[0].partition(b" ")
    return topic.decode("utf-8", errors="replace"), payload


class Forwarder:
    """ZeroMQ SUB -> DXL events, on one daemon thread: ``start()`` once, ``stop()`` once.

    ``settings`` is a ``ZmqSettings`` (``topics``, ``host``, ``port``, ``username``, ``password``).
    ``heartbeat_interval`` is MISP's heartbeat period in seconds; silence is reported after
    ``silence_intervals`` of them. ``poll_timeout`` bounds how long :meth:`stop` waits for the loop to
    notice, and ``stop_timeout`` how long :meth:`stop` waits for the thread.
    """

    def __init__(self, settings: Any, publisher: Publisher, *, service_unique_id: str = "",
                 heartbeat_interval: float = 10.0, silence_intervals: int = 3,
                 poll_timeout: float = 0.2, stop_timeout: float = 5.0) -> None:
        topics = tuple(t.strip() for t in settings.topics if t and t.strip())
        if not topics:
            raise ConfigError("zeroMqNotificationTopics: no topic is configured")
        bad = [t for t in topics if " " in t]
        if bad:
            raise ConfigError(f"zeroMqNotificationTopics: a topic cannot contain a space: {bad}")
        self._topics = frozenset(topics)
        self._endpoint = f"tcp://{_host_for_endpoint(settings.host)}:{int(settings.port)}"
        self._username = settings.username
        self._password = settings.password
        self._publisher = publisher
        self._service_unique_id = service_unique_id
        self._heartbeat_interval = heartbeat_interval
        self._silence_after = heartbeat_interval * silence_intervals
        self._poll_ms = max(1, int(poll_timeout * 1000))
        self._stop_timeout = stop_timeout
        self._worker = Worker("misp-zmq-forwarder", self._run, stop_timeout=stop_timeout,
                              description="The ZeroMQ forwarder thread", log=logger)
        self._stop = self._worker.stopping
        self._ready = threading.Event()
        self._context: zmq.Context | None = None
        self._last_frame = time.monotonic()
        self._silent = False
        self.forwarded = 0
        self.failed = 0
        self.dropped = 0
        self.notices = 0  # frames forwarded as notices: too big for the fabric
        self.last_heartbeat: float | None = None  # epoch seconds of MISP's last misp_json_self

    @property
    def endpoint(self) -> str:
        """The ZeroMQ address the SUB socket connects to (``tcp://host:port``)."""
        return self._endpoint

    @property
    def topics(self) -> frozenset[str]:
        """The ZeroMQ topics that are forwarded."""
        return self._topics

    def status(self) -> dict[str, Any]:
        """What the ``status`` topic reports of the forwarder."""
        return {"endpoint": self._endpoint, "topics": sorted(self._topics), "running": self._worker.running,
                "connected": self._worker.running and not self._silent, "silent": self._silent, "forwarded": self.forwarded, "failed": self.failed,
                "dropped": self.dropped, "notices": self.notices, "last_heartbeat": self.last_heartbeat}

    def start(self) -> None:
        """Create the socket, connect, and start the receive thread (returns once subscribed)."""
        if self._worker.thread is not None:
            raise RuntimeError("Forwarder.start() called twice")
        self._context = zmq.Context()
        self._ready.clear()
        self._worker.start()
        self._ready.wait(timeout=self._stop_timeout)
        logger.info("Forwarding MISP ZeroMQ topics %s from %s", sorted(self._topics), self._endpoint)

    def stop(self) -> None:
        """Stop the thread and close the socket; returns within about ``stop_timeout`` seconds."""
        if not self._worker.stop():
            return
        if self._context is not None:
            self._context.term()
            self._context = None

    # --- the receive thread ------------------------------------------------------------------------

    def _open_socket(self) -> zmq.Socket:
        assert self._context is not None
        sock = self._context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        if self._endpoint.startswith("tcp://["):
            sock.setsockopt(zmq.IPV6, 1)
        # Reconnect quickly after MISP restarts, backing off to at most 5 s while it stays down.
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        # ZMTP heartbeats find a half-open TCP connection (MISP's host gone without a FIN) and reconnect.
        sock.setsockopt(zmq.HEARTBEAT_IVL, 10_000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 30_000)
        if self._username is not None:
            sock.setsockopt(zmq.PLAIN_USERNAME, self._username.encode("utf-8"))
            sock.setsockopt(zmq.PLAIN_PASSWORD, (self._password or "").encode("utf-8"))
        for topic in sorted(self._topics | {HEARTBEAT_TOPIC}):
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        sock.connect(self._endpoint)
        return sock

    def _run(self) -> None:
        try:
            sock = self._open_socket()
        except zmq.ZMQError:
            logger.exception("Cannot open the ZeroMQ subscriber for %s", self._endpoint)
            self._ready.set()
            return
        self._last_frame = time.monotonic()
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                try:
                    if poller.poll(self._poll_ms):
                        self._receive_all(sock)
                    self._check_silence()
                except zmq.ContextTerminated:
                    return
                except Exception:  # the loop must outlive anything one frame does
                    logger.exception("Unexpected error in the ZeroMQ forwarder; continuing")
                    self._stop.wait(self._poll_ms / 1000)
        finally:
            sock.close(linger=0)

    def _receive_all(self, sock: zmq.Socket) -> None:
        """Handle every frame that is waiting, without blocking."""
        while not self._stop.is_set():
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self._note_frame()
            self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        topic, raw = parse_frame(frames)
        if topic == HEARTBEAT_TOPIC:
            self.last_heartbeat = time.time()
        if topic not in self._topics:
            return  # the heartbeat when it is not configured, or a longer topic a prefix let in
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.dropped += 1
            logger.warning("Dropped a ZeroMQ frame on %s: its payload is not JSON (%d bytes)", topic, len(raw))
            return
        if not isinstance(payload, dict):
            self.dropped += 1
            logger.warning("Dropped a ZeroMQ frame on %s: its JSON is a %s, not an object",
                           topic, type(payload).__name__)
            return
        dxl_topic = notification_topic(topic, self._service_unique_id)
        try:
            try:
                self._publisher(dxl_topic, payload)
            except TooLarge as exc:  # nothing was sent: a notice that fits goes in its place
                self.notices += 1
                logger.warning("The ZeroMQ notification %s is %d bytes on the fabric, over its limit of %d: "
                               "forwarded a notice instead (%d so far)", topic, exc.size, exc.limit, self.notices)
                self._publisher(dxl_topic, frame_notice(topic, exc.size, payload))
        except PublishError as exc:  # the fabric is away or slow: one line, no traceback per frame
            self.failed += 1
            logger.warning("Did not forward the ZeroMQ notification %s to DXL (%s): %s", topic, dxl_topic, exc)
            return
        except Exception:
            self.failed += 1
            logger.exception("Failed to publish the ZeroMQ notification %s as a DXL event on %s",
                             topic, dxl_topic)
            return
        self.forwarded += 1

    def _note_frame(self) -> None:
        self._last_frame = time.monotonic()
        if self._silent:
            self._silent = False
            logger.info("MISP's ZeroMQ publisher at %s is sending again", self._endpoint)

    def _check_silence(self) -> None:
        if self._silent or self._silence_after <= 0:
            return
        quiet = time.monotonic() - self._last_frame
        if quiet > self._silence_after:
            self._silent = True
            logger.warning("MISP's ZeroMQ publisher at %s has been silent for %.0f s "
                           "(no heartbeat for %d intervals of %.0f s)", self._endpoint, quiet,
                           round(self._silence_after / self._heartbeat_interval), self._heartbeat_interval)


def _host_for_endpoint(host: str) -> str:
    """``host`` as ZeroMQ wants it: no scheme, no port, brackets around an IPv6 address."""
    host = host.strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif host.count(":") > 1:
        host = f"[{host}]"
    return host
