"""Direct: PyMISP on the same dev MISP server, the baseline the bridge is held to.

The baseline is plain PyMISP as a user would make it (``PyMISP(url, key, ssl=...)``), one shared instance,
sequential and from 16 threads. For context, the 16-thread run is repeated with the session tuned the way
the service tunes its own (``trust_env`` off, a pool of 16 connections): ``threads16_tuned``.

Figures (``figures["direct"]``)::

    {"search"|"get_event": {"sequential": Latency, "threads16": Throughput, "threads16_latency": Latency,
                            "threads16_tuned": Throughput}}
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from requests.adapters import HTTPAdapter

from .env import BenchStack
from .stats import Latency, Throughput

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


def sequential(misp: Any, call: Callable[[Any], bool], n: int, warmup: int = 20) -> tuple[Latency, int]:
    """``n`` calls in a row: latencies, and how many answers were wrong."""
    for _ in range(warmup):
        call(misp)
    samples, errors = [], 0
    for _ in range(n):
        began = time.perf_counter()
        good = call(misp)
        samples.append(time.perf_counter() - began)
        errors += not good
    return Latency.of(samples), errors


def threaded(misp: Any, call: Callable[[Any], bool], n: int, threads: int = THREADS) -> tuple[Throughput, Latency]:
    """``n`` calls shared by ``threads`` threads on one PyMISP: throughput and per-call latency."""
    samples: list[float] = []
    errors = [0]
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
            samples.extend(mine)
            errors[0] += bad

    workers = [threading.Thread(target=work, args=(count,), daemon=True) for count in per_thread]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    return Throughput(requests=n, seconds=seconds, errors=errors[0], concurrency=threads), Latency.of(samples)


def tune(misp: Any, pool: int = THREADS) -> Any:
    """Tune a PyMISP's session as the service does: no environment scan, ``pool`` connections."""
    session = misp._PyMISP__session  # PyMISP keeps its requests session private
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False
    return misp


def run(bench: BenchStack, event_id: str, *, sequential_n: int, threaded_n: int) -> dict[str, Any]:
    """Both calls, sequential and from 16 threads, on plain PyMISP; the 16 threads again on a tuned one."""
    plain = bench.misp()
    tuned = tune(bench.misp())
    out: dict[str, Any] = {}
    for name, call in calls(event_id).items():
        latency, errors = sequential(plain, call, sequential_n)
        if errors:
            raise RuntimeError(f"direct {name}: {errors} wrong answers")
        threaded(plain, call, THREADS * 4)  # warm the pool
        throughput, latency16 = threaded(plain, call, threaded_n)
        threaded(tuned, call, THREADS * 4)
        tuned_throughput, _ = threaded(tuned, call, threaded_n)
        out[name] = {"sequential": latency.to_dict(), "threads16": throughput.to_dict(),
                     "threads16_latency": latency16.to_dict(), "threads16_tuned": tuned_throughput.to_dict()}
    return out
