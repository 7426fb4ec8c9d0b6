"""Start: ``python -m dxlmispservice DIR`` from spawn to registered and answering.

The clock starts just before the process is spawned. The bench then asks the registry (every 10 ms)
until a new instance of the service is listed, sends one ``get_event`` request, and stops the clock when
the right answer arrives. That first request also builds the service's PyMISP client (which talks to MISP),
so the figure covers everything a first user waits for. Each run stops the service by PID.

Figures (``figures["start"]``)::

    {"runs": [seconds, ...], "registered": [seconds, ...], "median_s": float}
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from dxlmisp_devstack.testing import stop_process
from dxlmispservice.names import request_topic

from . import dxl
from .bridge import get_event_answer_ok
from .env import BenchStack
from .stats import percentile

REGISTRY_QUERY = "/mcafee/service/dxl/svcregistry/query"
SERVICE_TYPE = "/opendxl-misp/service/misp-api"


def _services(client: Any) -> set[str]:
    answer = dxl.request_once(client, REGISTRY_QUERY, json.dumps({"serviceType": SERVICE_TYPE}).encode(), 5)
    body = json.loads((answer.payload or b"{}").decode()) if dxl.is_ok(answer) else {}
    return set((body.get("services") or {}).keys())


def once(bench: BenchStack, client: Any, event_id: str, index: int, timeout: float = 30.0) -> tuple[float, float]:
    """One start: (seconds to registered, seconds to the first right answer)."""
    config = bench.service_config(f"service-start-{index}")
    before = _services(client)
    log = bench.workdir / "logs" / f"start-{index}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **bench.handle.service_env())
    payload = json.dumps({"event_id": event_id}).encode()
    with open(log, "ab") as out:
        began = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "dxlmispservice", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _services(client) - before:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not register (exit {process.poll()}): "
                                   f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.01)
        registered = time.perf_counter() - began
        answer = dxl.request_once(client, request_topic("get_event"), payload, timeout=timeout)
        answered = time.perf_counter() - began
        if not get_event_answer_ok(answer):
            raise RuntimeError(f"the first get_event failed: {answer.error_message}")
        return registered, answered
    finally:
        stop_process(process)


def run(bench: BenchStack, event_id: str, *, runs: int) -> dict[str, Any]:
    """``runs`` starts in a row; the median time to answering."""
    client = dxl.connect(bench.client_config("requester"))
    try:
        results = [once(bench, client, event_id, i) for i in range(runs)]
    finally:
        dxl.destroy_all([client])
    answered = [a for _, a in results]
    return {"runs": [round(a, 3) for a in answered], "registered": [round(r, 3) for r, _ in results],
            "median_s": round(percentile(answered, 50), 3)}
