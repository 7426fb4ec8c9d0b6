"""Floor: what the fabric itself costs, measured with a trivial echo service (``bench/echo.py``).

Figures (``figures["floor"]``)::

    {"sequential": Latency, "throughput": {"1"|"4"|"16"|"64": Throughput},
     "latency_at": {"1"|"4"|"16"|"64": Latency}, "payload_bytes": int,
     "sized": {"bytes": int, "sequential": Latency}}

The payload is the size of a typical bridge request (a legacy search by event id). ``sized`` is context,
not the floor: the same small request answered with as many bytes as the bridge's answers on the
measured event (``answer_bytes``), so that the fabric's share of a bridge call can be told apart.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from . import dxl
from .env import BenchStack
from .report import LEVELS

TOPIC = "/bench/service/echo/echo"
PAYLOAD = json.dumps({"eventid": "1"}).encode()


def run(bench: BenchStack, *, sequential_n: int, level_n: int, answer_bytes: int = 5000) -> dict[str, Any]:
    """Start the echo service, time it sequentially and at each concurrency level, stop it."""
    child = bench.spawn("echo", [sys.executable, "-m", "bench.echo", bench.client_config("spare3"), TOPIC],
                        "echo ready")
    client = dxl.connect(bench.client_config("requester"))
    try:
        latency, errors = dxl.sequential(client, TOPIC, PAYLOAD, sequential_n, warmup=50)
        if errors:
            raise RuntimeError(f"the echo service answered {errors} errors")
        throughput: dict[str, Any] = {}
        latency_at: dict[str, Any] = {}
        for level in LEVELS:
            tp, lat = dxl.in_flight(client, TOPIC, PAYLOAD, level_n, int(level), warmup=int(level) * 4)
            throughput[level] = tp.to_dict()
            latency_at[level] = lat.to_dict()
        sized, _ = dxl.sequential(client, TOPIC + "/sized", json.dumps({"bytes": answer_bytes}).encode(),
                                  sequential_n, warmup=50)
        return {"sequential": latency.to_dict(), "throughput": throughput, "latency_at": latency_at,
                "payload_bytes": len(PAYLOAD), "sized": {"bytes": answer_bytes, "sequential": sized.to_dict()}}
    finally:
        dxl.destroy_all([client])
        child.stop()
