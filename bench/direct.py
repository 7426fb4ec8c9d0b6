"""Direct: PyMISP on the same dev MISP server, the baseline the bridge is held to.

The baseline is plain PyMISP as a user would make it (``PyMISP(url, key, ssl=...)``), one shared instance,
sequential and from 16 threads (``compare.py`` runs them). For context, :func:`tune` makes a PyMISP whose
session is tuned the way the service tunes its own (``trust_env`` off, a pool of 16 connections).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from requests.adapters import HTTPAdapter

from .stats import Latency, Samples, Throughput

THREADS = 16


def calls(event_id: str) -> dict[str, Callable[[Any], bool]]:
    """The two measured calls, each returning whether the answer is right."""
    def search(misp: Any) -> bool:
        result = misp.search(eventid=event_id)
        return isinstance(result, list) and len(result) == 1

    def get_event(misp: Any) -> bool:
        result = misp.get_event(event_id)
        return isinstance(result, dict) and "Event" in result

    return {"search": search, "get_event": get_event}


def sequential_samples(misp: Any, call: Callable[[Any], bool], n: int, warmup: int = 0) -> Samples:
    """``n`` calls in a row, each timed."""
    for _ in range(warmup):
        call(misp)
    out = Samples(requests=n)
    first = time.perf_counter()
    for _ in range(n):
        began = time.perf_counter()
        good = call(misp)
        out.latencies.append(time.perf_counter() - began)
        out.errors += not good
    out.seconds = time.perf_counter() - first
    return out


def sequential(misp: Any, call: Callable[[Any], bool], n: int, warmup: int = 20) -> tuple[Latency, int]:
    """``n`` calls in a row: latencies, and how many answers were wrong."""
    out = sequential_samples(misp, call, n, warmup)
    return out.latency(), out.errors


def threaded_samples(misp: Any, call: Callable[[Any], bool], n: int, threads: int = THREADS) -> Samples:
    """``n`` calls shared by ``threads`` threads on one PyMISP, from the start barrier to the last answer."""
    out = Samples(requests=n)
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    per_thread = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

    def work(count: int) -> None:
        mine, bad = [], 0
        start.wait()
        for _ in range(count):
            began = time.perf_counter()
            try:
                good = call(misp)
            except Exception:
                good = False
            mine.append(time.perf_counter() - began)
            bad += not good
        with lock:
            out.latencies.extend(mine)
            out.errors += bad

    workers = [threading.Thread(target=work, args=(count,), daemon=True) for count in per_thread]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    out.seconds = time.perf_counter() - began
    return out


def threaded(misp: Any, call: Callable[[Any], bool], n: int, threads: int = THREADS) -> tuple[Throughput, Latency]:
    """``n`` calls shared by ``threads`` threads on one PyMISP: throughput and per-call latency."""
    out = threaded_samples(misp, call, n, threads)
    return out.throughput(threads), out.latency()


def tune(misp: Any, pool: int = THREADS) -> Any:
    """Tune a PyMISP's session as the service does: no environment scan, ``pool`` connections."""
    session = misp._PyMISP__session  # PyMISP keeps its requests session private
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False
    return misp
