"""``python -m bench.traced CONFIGDIR OUT.json``: the service, unchanged, with timers around its stages.

A bench-only wrapper (the service's code is not touched): before ``dxlmispservice.__main__.main`` runs,
it wraps, in this process only,

- dxlclient's ``_on_message`` (paho's network thread) to note when a request arrived, and the task it
  queues to the incoming message pool, to time the wait in that queue (``queue``) and the whole
  message handling on the pool thread (``message``: decode + dispatch + callback);
- ``DxlRequestCallback.on_request`` (``callback``: handler + send_response);
- ``RequestHandler.handle`` (``handler``: payload decode, checks, the MISP call, shaping, JSON encode);
- ``MispConnection.call`` (``misp``: PyMISP's request to MISP and its decoding of the answer).

Only messages on the service's request topics count. On SIGUSR1, and at exit, it writes the median and p99
of each stage, in ms, to ``OUT.json`` (atomically, with a running ``dump`` number) and starts afresh.
Derived: ``handler - misp`` is the service's own work around the MISP
call; ``callback - handler`` is sending the answer; ``message - callback`` is dxlclient's decode and
dispatch.
"""
from __future__ import annotations

import atexit
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

SERVICE_PREFIX = "/opendxl-misp/service/"
STAGES = ("queue", "message", "callback", "handler", "misp")
_samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
_lock = threading.Lock()


def _record(stage: str, seconds: float) -> None:
    with _lock:
        _samples[stage].append(seconds)


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(stage, time.perf_counter() - began)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def install() -> None:
    """Wrap the stages (see the module docstring)."""
    import dxlclient.client as dxl_client_module

    from dxlmispservice.api import handler

    from dxlmispservice import misp

    original_on_message = dxl_client_module._on_message

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if not str(msg.topic).startswith(SERVICE_PREFIX):
            original_on_message(client, userdata, msg)
            return
        queued = time.perf_counter()

        def task(channel: str, payload: bytes) -> None:
            started = time.perf_counter()
            _record("queue", started - queued)
            try:
                userdata._handle_message(channel, payload)
            finally:
                _record("message", time.perf_counter() - started)

        userdata._thread_pool.add_task(task, channel=msg.topic, payload=msg.payload)

    dxl_client_module._on_message = on_message
    handler.DxlRequestCallback.on_request = _timed("callback", handler.DxlRequestCallback.on_request)
    handler.RequestHandler.handle = _timed("handler", handler.RequestHandler.handle)
    misp.MispConnection.call = _timed("misp", misp.MispConnection.call)


def summary() -> dict[str, Any]:
    """``{stage: {"n", "p50_ms", "p99_ms", "mean_ms"}}`` of the stages seen so far."""
    from .stats import Latency

    with _lock:
        return {stage: Latency.of(values).to_dict() for stage, values in _samples.items() if values}


def dump(out: str, number: int) -> None:
    """Write the summary (and ``number``) to ``out`` atomically, then clear the samples."""
    document = {"dump": number, "stages": summary()}
    with _lock:
        for values in _samples.values():
            values.clear()
    tmp = out + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(json.dumps(document, indent=2))
    os.replace(tmp, out)


def main(argv: list[str]) -> int:
    config_dir, out = argv[0], argv[1]
    install()
    dumps = itertools.count(1)
    signal.signal(signal.SIGUSR1, lambda *_: dump(out, next(dumps)))
    atexit.register(lambda: dump(out, next(dumps)))
    from dxlmispservice.__main__ import main as service_main

    return service_main([config_dir])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
