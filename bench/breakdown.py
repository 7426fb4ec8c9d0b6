"""Breakdown: where the time of one bridged call goes, from timers inside the service (``bench/traced.py``).

A service is started under ``python -m bench.traced`` (the service's code unchanged, timers wrapped around
its stages in that process). For each call, ``n`` sequential requests are timed at the requester while
the service times its stages; SIGUSR1 makes it write and reset its figures between calls.

Figures (``figures["breakdown"]``)::

    {"search"|"get_event": {"bridge": Latency,
                            "stages": {"queue"|"message"|"callback"|"handler"|"misp": Latency}}}

Reading it (p50s): ``misp`` is PyMISP's call to MISP (what direct pays), ``handler - misp`` the service's
own work around it, ``callback - handler`` sending the answer, ``message - callback`` dxlclient's decode
and dispatch, ``queue`` the wait for an incoming-pool thread, and ``bridge - queue - message`` the fabric
(requester, broker, both ways) and paho's network thread.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dxlmisp_devstack.testing import stop_process

from . import dxl
from .bridge import calls
from .env import BenchStack
from .start import _services

CHECKOUT = str(Path(__file__).resolve().parent.parent)


def _dump(process: subprocess.Popen[bytes], out: str, number: int, timeout: float = 10.0) -> dict[str, Any]:
    os.kill(process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            document = json.loads(open(out).read())
        except (OSError, ValueError):
            document = {}
        if document.get("dump") == number:
            return dict(document.get("stages") or {})
        time.sleep(0.02)
    raise RuntimeError(f"the traced service wrote no figures in {timeout} s")


def run(bench: BenchStack, event_id: str, *, n: int) -> dict[str, Any]:
    """Sequential calls through a traced service; requester-side and in-service figures per call."""
    config = bench.service_config("service-traced")
    out = str(bench.workdir / "traced.json")
    client = dxl.connect(bench.client_config("requester"))
    before = _services(client)
    log = bench.workdir / "logs" / "traced.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **bench.handle.service_env())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH", "")) if p)
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "bench.traced", str(config), out], stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                   cwd=CHECKOUT)
    try:
        deadline = time.monotonic() + 30
        while not _services(client) - before:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the traced service did not register: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        figures: dict[str, Any] = {}
        number = 0
        for name, (topic, payload, check) in calls(event_id).items():
            dxl.sequential(client, topic, payload, 50, check=check, warmup=0)
            number += 1
            _dump(process, out, number)  # forget the warm-up
            latency, errors = dxl.sequential(client, topic, payload, n, check=check, warmup=0)
            if errors:
                raise RuntimeError(f"{name}: {errors} wrong answers")
            number += 1
            figures[name] = {"bridge": latency.to_dict(), "stages": _dump(process, out, number)}
        return figures
    finally:
        dxl.destroy_all([client])
        stop_process(process)
