"""Notifications: ZeroMQ frames in, DXL events out; the forwarding rate, the latency and the count lost.

The bench owns the ZeroMQ publisher (``dxlmisp_devstack.misp.zmq.ZmqPublisher``, heartbeat off) and starts a
service whose forwarder subscribes to it (``zeroMqHost``/``zeroMqPort`` pointed at the bench's publisher,
``serviceUniqueId`` ``benchzmq``, one topic). Warm-up frames are sent until one arrives over DXL (ZeroMQ
drops what a subscriber has not joined for yet), then ``count`` numbered frames at ``rate`` per second,
paced. Each frame carries its sequence number and its send time; the bench's own DXL client receives the
events, so both times come from one clock.

Figures (``figures["notifications"]``)::

    {"sent", "received", "unique", "lost", "duplicates": int, "target_rate", "send_rate", "rate": float,
     "seconds": float, "latency": Latency, "frame_bytes": int}

``rate`` is the events received per second from the first send to the last arrival.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

from dxlclient.callbacks import EventCallback
from dxlclient.message import Event

from dxlmisp_devstack.misp.zmq import ZmqPublisher

from . import dxl
from .env import BenchStack
from .stats import Latency

UNIQUE_ID = "benchzmq"
ZMQ_TOPIC = "misp_json_event"
DXL_TOPIC = f"/opendxl-misp/event/zeromq-notifications/{UNIQUE_ID}/{ZMQ_TOPIC}"


class Arrivals(EventCallback):
    """Records ``(arrival time, payload)`` of each DXL event (decoded JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Condition()
        self.items: list[tuple[float, Any]] = []

    def on_event(self, event: Event) -> None:
        now = time.perf_counter()
        try:
            body = json.loads((event.payload or b"").decode("utf-8").rstrip("\0"))
        except (UnicodeDecodeError, ValueError):
            body = None
        with self.lock:
            self.items.append((now, body))
            self.lock.notify_all()

    def wait(self, condition: Any, timeout: float) -> bool:
        """Wait until ``condition(items)`` holds; whether it did."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not condition(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True


def frame(seq: int, sent: float, padding: str) -> dict[str, Any]:
    """A misp_json_event-like payload carrying the bench's sequence number and send time."""
    return {"Event": {"id": str(seq + 1), "info": "bench notification", "uuid": f"bench-{seq}",
                      "comment": padding}, "bench": {"seq": seq, "sent": sent}, "action": "add"}


def run(bench: BenchStack, *, count: int, rate: float, padding_bytes: int = 600) -> dict[str, Any]:
    """Forward ``count`` frames offered at ``rate`` per second; what arrived, how fast, how late."""
    publisher = ZmqPublisher("127.0.0.1", 0, heartbeat_interval=0)
    port = publisher.start()
    client = dxl.connect(bench.client_config("requester"))
    arrivals = Arrivals()
    client.add_event_callback(DXL_TOPIC, arrivals)
    config = bench.service_config("service-zmq", {"General": {
        "serviceUniqueId": UNIQUE_ID, "zeroMqNotificationTopics": ZMQ_TOPIC, "zeroMqHost": "127.0.0.1",
        "zeroMqPort": str(port)}})
    try:
        with bench.service(config):
            _warm_up(publisher, arrivals)
            with arrivals.lock:
                arrivals.items.clear()
            padding = "x" * padding_bytes
            first = time.perf_counter()
            for seq in range(count):
                due = first + seq / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                publisher.publish(ZMQ_TOPIC, frame(seq, time.perf_counter(), padding))
            send_seconds = time.perf_counter() - first
            arrivals.wait(lambda items: len(items) >= count, timeout=15)
            time.sleep(0.5)  # late duplicates, if any
            with arrivals.lock:
                items = list(arrivals.items)
    finally:
        dxl.destroy_all([client])
        publisher.close()
    return summarize(items, count, rate, first, send_seconds, len(json.dumps(frame(0, 0.0, padding))))


def _warm_up(publisher: ZmqPublisher, arrivals: Arrivals, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(ZMQ_TOPIC, {"bench": {"warmup": True}})
        if arrivals.wait(lambda items: bool(items), timeout=0.1):
            return
    raise RuntimeError(f"no forwarded event arrived within {timeout} s of warm-up")


def summarize(items: list[tuple[float, Any]], count: int, target_rate: float, first: float, send_seconds: float,
              frame_bytes: int) -> dict[str, Any]:
    """The figures from what arrived (``(arrival, payload)``), given ``count`` frames sent from ``first``."""
    seqs: list[int] = []
    latencies: list[float] = []
    last = first
    for arrived, body in items:
        bench = body.get("bench") if isinstance(body, dict) else None
        if not isinstance(bench, dict) or "seq" not in bench:
            continue
        seqs.append(int(bench["seq"]))
        latencies.append(arrived - float(bench["sent"]))
        last = max(last, arrived)
    unique = len(set(seqs))
    seconds = last - first
    return {
        "sent": count, "received": len(seqs), "unique": unique, "lost": count - unique,
        "duplicates": len(seqs) - unique, "target_rate": target_rate,
        "send_rate": round(count / send_seconds, 1) if send_seconds > 0 else 0.0,
        "rate": round(unique / seconds, 1) if seconds > 0 else 0.0, "seconds": round(seconds, 3),
        "latency": Latency.of(latencies).to_dict() if latencies else None, "frame_bytes": frame_bytes,
    }
