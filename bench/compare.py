"""Floor, direct and bridge, measured side by side so that each figure has its baseline from the same time.

The machine is shared (2 cores; other work may run beside the bench), so the figures that the targets
compare are taken **interleaved in rounds**: each round runs a slice of every contender in turn, and the
samples of all rounds are pooled. Background load thus falls on baseline and bridge alike.

- sequential latency (``rounds_sequential`` rounds): the echo floor, direct PyMISP ``search(eventid)``
  and ``get_event``, and the bridge's legacy ``search`` and modern ``get_event`` topics;
- throughput at 16 (``rounds_throughput`` rounds): direct from 16 threads on one plain PyMISP, and the
  bridge with 16 requests in flight.

Then, not interleaved (context): the floor at 1, 4, 16 and 64 in flight, a 16-thread direct run on a PyMISP
tuned like the service's (``threads16_tuned``), the bridge at 1, 4 and 64 in flight, and the fabric with
an answer-sized echo.

Figures: ``figures["floor"]``::

    {"sequential": Latency, "throughput": {level: Throughput}, "latency_at": {level: Latency},
     "payload_bytes": int, "sized": {"bytes": int, "sequential": Latency}}

``figures["direct"]``: ``{call: {"sequential", "threads16", "threads16_latency", "threads16_tuned"}}``;
``figures["bridge"]``: ``{call: {"sequential", "throughput": {level: ...}, "latency_at": {level: ...}}}``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dxlclient.client import DxlClient

from . import bridge, direct, dxl, floor
from .report import CALLS, LEVELS
from .stats import Samples

CONCURRENCY = 16


@dataclass(frozen=True)
class Plan:
    """Request counts (each split over the rounds)."""

    sequential: int
    rounds_sequential: int
    throughput: int
    rounds_throughput: int
    level: int
    floor_level: int


def rounds(steps: dict[str, Callable[[int], Samples]], n: int, count: int) -> dict[str, Samples]:
    """Run every step for ``n // count`` requests, ``count`` times in turn; the pooled samples per step."""
    pooled = {name: Samples() for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            pooled[name].add(step(max(n // count, 1)))
    return pooled


def _checked(samples: dict[str, Samples]) -> dict[str, Samples]:
    for name, got in samples.items():
        if got.errors or got.lost:
            raise RuntimeError(f"{name}: {got.errors} wrong answers and {got.lost} lost of {got.requests}")
    return samples


def run(client: DxlClient, plain: Any, tuned: Any, event_id: str, answer_bytes: int, plan: Plan) -> dict[str, Any]:
    """The floor/direct/bridge figures (see the module docstring)."""
    dcalls = direct.calls(event_id)
    bcalls = bridge.calls(event_id)
    seq: dict[str, Callable[[int], Samples]] = {
        "floor": lambda k: dxl.sequential_samples(client, floor.TOPIC, floor.PAYLOAD, k)}
    for call in CALLS:
        topic, payload, check = bcalls[call]
        seq[f"direct {call}"] = lambda k, c=dcalls[call]: direct.sequential_samples(plain, c, k)
        seq[f"bridge {call}"] = lambda k, t=topic, p=payload, c=check: dxl.sequential_samples(client, t, p, k, check=c)
    for step in seq.values():  # warm every path: connections, PyMISP's build, caches
        step(30)
    sequential = _checked(rounds(seq, plan.sequential, plan.rounds_sequential))

    par: dict[str, Callable[[int], Samples]] = {}
    for call in CALLS:
        topic, payload, check = bcalls[call]
        par[f"direct {call}"] = lambda k, c=dcalls[call]: direct.threaded_samples(plain, c, k, CONCURRENCY)
        par[f"bridge {call}"] = lambda k, t=topic, p=payload, c=check: dxl.in_flight_samples(
            client, t, p, k, CONCURRENCY, check=c)
    for step in par.values():
        step(CONCURRENCY * 4)
    parallel = _checked(rounds(par, plan.throughput, plan.rounds_throughput))

    floor_figures: dict[str, Any] = {"sequential": sequential["floor"].latency().to_dict(), "throughput": {},
                                     "latency_at": {}, "payload_bytes": len(floor.PAYLOAD)}
    for level in LEVELS:
        throughput, latency = dxl.in_flight(client, floor.TOPIC, floor.PAYLOAD, plan.floor_level, int(level),
                                            warmup=int(level) * 4)
        floor_figures["throughput"][level] = throughput.to_dict()
        floor_figures["latency_at"][level] = latency.to_dict()
    sized, _ = dxl.sequential(client, floor.SIZED_TOPIC, floor.sized_payload(answer_bytes), plan.sequential // 2)
    floor_figures["sized"] = {"bytes": answer_bytes, "sequential": sized.to_dict()}

    direct_figures: dict[str, Any] = {}
    bridge_figures: dict[str, Any] = {}
    for call in CALLS:
        threads16 = parallel[f"direct {call}"]
        direct.threaded(tuned, dcalls[call], CONCURRENCY * 4)
        tuned_throughput, _ = direct.threaded(tuned, dcalls[call], plan.throughput // plan.rounds_throughput)
        direct_figures[call] = {"sequential": sequential[f"direct {call}"].latency().to_dict(),
                                "threads16": threads16.throughput(CONCURRENCY).to_dict(),
                                "threads16_latency": threads16.latency().to_dict(),
                                "threads16_tuned": tuned_throughput.to_dict()}
        in16 = parallel[f"bridge {call}"]
        figures: dict[str, Any] = {"sequential": sequential[f"bridge {call}"].latency().to_dict(),
                                   "throughput": {"16": in16.throughput(CONCURRENCY).to_dict()},
                                   "latency_at": {"16": in16.latency().to_dict()}}
        topic, payload, check = bcalls[call]
        for level in ("1", "4", "64"):
            throughput, latency = dxl.in_flight(client, topic, payload, plan.level, int(level), check=check,
                                                warmup=int(level) * 2)
            figures["throughput"][level] = throughput.to_dict()
            figures["latency_at"][level] = latency.to_dict()
        figures["throughput"] = {level: figures["throughput"][level] for level in LEVELS}
        figures["latency_at"] = {level: figures["latency_at"][level] for level in LEVELS}
        bridge_figures[call] = figures
    rounds_info = {"sequential": plan.rounds_sequential, "throughput_16": plan.rounds_throughput}
    return {"floor": floor_figures, "direct": direct_figures, "bridge": bridge_figures, "rounds": rounds_info}
