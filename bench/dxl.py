"""DXL load: a connected client with Nagle off, sequential round trips, and N requests kept in flight.

- :func:`connect` makes a DxlClient from a dxlclient.config, installs the TCP_NODELAY socket hook before
  ``connect()`` (HACKING.md, Facts) and connects.
- :func:`sequential` sends ``n`` requests one after the other (``sync_request``) and times each.
- :func:`in_flight` keeps ``concurrency`` requests outstanding with ``async_request`` and a response
  callback (a semaphore counts what is in flight), times each request from send to answer, and the whole
  run from the first send to the last answer. A request unanswered by the deadline counts as lost.

A ``check(response) -> bool`` decides whether an answer is right (an ErrorResponse never is); wrong answers
count as errors. The check (which decodes the answer's JSON) is inside the timed span: a call ends when the
requester holds the decoded answer, as a direct PyMISP call ends when PyMISP has decoded MISP's.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from dxlclient.callbacks import ResponseCallback
from dxlclient.client import DxlClient
from dxlclient.client_config import DxlClientConfig
from dxlclient.message import Message, Request, Response

from dxlmispservice.compat.dxlclient import set_tcp_nodelay

from .stats import Latency, Samples, Throughput

Check = Callable[[Response], bool]


def connect(config_path: str | os.PathLike[str]) -> DxlClient:
    """A connected DxlClient with TCP_NODELAY on its broker socket (set on every socket it opens)."""
    config = DxlClientConfig.create_dxl_config_from_file(os.fspath(config_path))
    config.connect_retries = 3
    client = DxlClient(config)
    set_tcp_nodelay(client)  # installs the on_socket_open hook before the first socket exists
    client.connect()
    return client


def is_ok(response: Response) -> bool:
    """An answer that is not an ErrorResponse."""
    return response.message_type != Message.MESSAGE_TYPE_ERROR


def _request(topic: str, payload: bytes) -> Request:
    request = Request(topic)
    request.payload = payload
    return request


def sequential_samples(client: DxlClient, topic: str, payload: bytes, n: int, *, check: Check = is_ok,
                       warmup: int = 0, timeout: float = 30.0) -> Samples:
    """``n`` sync requests in a row, each timed until its answer is checked (decoded)."""
    for _ in range(warmup):
        client.sync_request(_request(topic, payload), timeout=timeout)
    out = Samples(requests=n)
    first = time.perf_counter()
    for _ in range(n):
        request = _request(topic, payload)
        began = time.perf_counter()
        response = client.sync_request(request, timeout=timeout)
        good = check(response)  # decoding the answer is part of the call, as PyMISP's is in direct
        out.latencies.append(time.perf_counter() - began)
        out.errors += not good
    out.seconds = time.perf_counter() - first
    return out


def sequential(client: DxlClient, topic: str, payload: bytes, n: int, *, check: Check = is_ok,
               warmup: int = 20, timeout: float = 30.0) -> tuple[Latency, int]:
    """``n`` sync requests in a row: their latencies, and how many answers failed ``check``."""
    out = sequential_samples(client, topic, payload, n, check=check, warmup=warmup, timeout=timeout)
    return out.latency(), out.errors


class _Run(ResponseCallback):
    """Bookkeeping of one in-flight run; ``on_response`` runs on the client's callback thread."""

    def __init__(self, concurrency: int, check: Check) -> None:
        super().__init__()
        self.slots = threading.Semaphore(concurrency)
        self.lock = threading.Lock()
        self.sent_at: dict[str, float] = {}
        self.samples: list[float] = []
        self.errors = 0
        self.last = 0.0
        self.done = threading.Condition(self.lock)
        self.check = check

    def on_response(self, response: Response) -> None:
        good = self.check(response)
        now = time.perf_counter()
        with self.lock:
            began = self.sent_at.pop(response.request_message_id, None)
            if began is not None:
                self.samples.append(now - began)
                self.last = now
                if not good:
                    self.errors += 1
            self.done.notify_all()
        self.slots.release()


def in_flight_samples(client: DxlClient, topic: str, payload: bytes, n: int, concurrency: int, *,
                      check: Check = is_ok, timeout: float = 60.0) -> Samples:
    """``n`` requests with ``concurrency`` in flight, from the first send to the last answer."""
    run = _Run(concurrency, check)
    deadline = time.monotonic() + timeout
    first = time.perf_counter()
    for _ in range(n):
        if not run.slots.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
            break
        request = _request(topic, payload)
        with run.lock:
            run.sent_at[request.message_id] = time.perf_counter()
        client.async_request(request, run)
    with run.lock:
        while len(run.samples) < n and time.monotonic() < deadline and run.sent_at:
            run.done.wait(max(deadline - time.monotonic(), 0.001))
        samples = list(run.samples)
        last = run.last or time.perf_counter()
        errors = run.errors
        run.sent_at.clear()  # late answers are no longer counted
    if not samples:
        raise RuntimeError(f"no answer at all on {topic} within {timeout} s")
    return Samples(latencies=samples, seconds=last - first, requests=n, errors=errors, lost=n - len(samples))


def in_flight(client: DxlClient, topic: str, payload: bytes, n: int, concurrency: int, *, check: Check = is_ok,
              warmup: int = 0, timeout: float = 60.0) -> tuple[Throughput, Latency]:
    """``n`` requests with ``concurrency`` in flight: throughput and per-request latency."""
    if warmup:
        in_flight_samples(client, topic, payload, warmup, concurrency, check=check, timeout=timeout)
    out = in_flight_samples(client, topic, payload, n, concurrency, check=check, timeout=timeout)
    return out.throughput(concurrency), out.latency()


def in_flight_for(client: DxlClient, topic: str, payload: bytes, seconds: float, concurrency: int, *,
                  check: Check = is_ok) -> Throughput:
    """Keep ``concurrency`` requests in flight for about ``seconds`` (a load to profile under)."""
    run = _Run(concurrency, check)
    first = time.perf_counter()
    stop = first + seconds
    sent = 0
    while time.perf_counter() < stop:
        if not run.slots.acquire(timeout=1.0):
            continue
        request = _request(topic, payload)
        with run.lock:
            run.sent_at[request.message_id] = time.perf_counter()
        client.async_request(request, run)
        sent += 1
    for _ in range(concurrency):  # wait for the tail
        run.slots.acquire(timeout=10.0)
    with run.lock:
        answered = len(run.samples)
        errors = run.errors
        last = run.last or time.perf_counter()
    return Throughput(requests=sent, seconds=last - first, errors=errors, lost=sent - answered,
                      concurrency=concurrency)


def request_once(client: DxlClient, topic: str, payload: bytes, timeout: float = 30.0) -> Response:
    """One sync request; its answer."""
    return client.sync_request(_request(topic, payload), timeout=timeout)


def destroy_all(clients: list[Any]) -> None:
    """Destroy DxlClients in parallel (each takes about a second)."""
    threads = [threading.Thread(target=c.destroy, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
