"""Floor: what the fabric itself costs, measured with a trivial echo service (``bench/echo.py``).

The echo service runs as its own process with the spare3 client role. ``compare.py`` times it
sequentially, interleaved with the direct and bridge calls, and at 1, 4, 16 and 64 requests in flight.
``sized`` (context, not the floor) times the same small request answered with as many bytes as the
bridge's answer on the measured event, so that the fabric's share of a bridge call can be told apart.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .env import BenchStack

TOPIC = "/bench/service/echo/echo"
SIZED_TOPIC = TOPIC + "/sized"
PAYLOAD = json.dumps({"eventid": "1"}).encode()


def sized_payload(answer_bytes: int) -> bytes:
    """The request for an ``answer_bytes``-byte answer on :data:`SIZED_TOPIC`."""
    return json.dumps({"bytes": answer_bytes}).encode()


@contextmanager
def echo_service(bench: BenchStack) -> Iterator[int]:
    """Run the echo service until the block ends (stopped by PID); yields its PID."""
    child = bench.spawn("echo", [sys.executable, "-m", "bench.echo", bench.client_config("spare3"), TOPIC],
                        "echo ready")
    try:
        yield child.pid
    finally:
        child.stop()
