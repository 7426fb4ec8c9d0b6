"""The dev MISP server's ZeroMQ publisher: single frames ``<topic> <json>``, as MISP's pub/sub sends them.

MISP publishes on a PUB socket. Each message is one frame: the topic, a space, then the JSON payload
(``misp_json``, ``misp_json_event``, ``misp_json_attribute``, ``misp_json_sighting``, ``misp_json_tag``,
and the ``misp_json_self`` heartbeat). The models layer builds the payloads and calls :meth:`publish`.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import zmq


class ZmqPublisher:
    """A PUB socket bound on ``host:port`` with a heartbeat thread; ``publish`` is thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, heartbeat_interval: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = time.time()

    def start(self) -> int:
        """Bind the socket (a free port when ``port`` is 0), start the heartbeat, and return the port."""
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        # Hold at most this many unsent frames per subscriber before dropping (MISP's default is 1000).
        self._socket.setsockopt(zmq.SNDHWM, 100_000)
        if self.port:
            self._socket.bind(f"tcp://{self.host}:{self.port}")
        else:
            self.port = self._socket.bind_to_random_port(f"tcp://{self.host}")
        self._started_at = time.time()
        if self.heartbeat_interval > 0:
            self._thread = threading.Thread(target=self._heartbeat, name="zmq-heartbeat", daemon=True)
            self._thread.start()
        return self.port

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Send one frame ``<topic> <json>``; a no-op once closed."""
        frame = f"{topic} {json.dumps(payload, separators=(',', ':'))}".encode("utf-8")
        with self._lock:
            if self._socket is not None:
                self._socket.send(frame)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            uptime = int(time.time() - self._started_at)
            self.publish("misp_json_self", {"status": "ok", "uptime": uptime})

    def close(self) -> None:
        """Stop the heartbeat and close the socket; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None
            if self._context is not None:
                self._context.term()
                self._context = None

    def __enter__(self) -> ZmqPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
