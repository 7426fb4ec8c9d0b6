"""Size: get_event on events of 10, 100 and 1,000 attributes, bridge against direct; the oversized answer;
paging a 10,000-attribute event.

- For each size, direct PyMISP ``get_event`` and the bridge's ``get_event`` topic are timed sequentially,
  interleaved in rounds (p50/p99), and the bridge's answer size is recorded.
- The 10,000-attribute event's ``get_event`` answer is larger than ``maxResponseSize``: the bridge must
  answer with the response_too_large error (code 5) rather than a timeout. It is timed.
- That event is then read back whole through the legacy ``search`` topic on the attributes controller
  with ``limit``/``page``; every attribute uuid must come back exactly once.

Figures (``figures["size"]``)::

    {"10"|"100"|"1000": {"attributes": int, "bytes": int, "direct": Latency, "bridge": Latency},
     "oversized": {"attributes": int, "error_code": int, "latency": Latency, "direct": Latency},
     "paging": {"attributes": int, "limit": int, "pages": int, "received": int, "unique": int,
                "whole": bool, "seconds": float}}
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from dxlclient.client import DxlClient

from dxlmispservice.errors import ResponseTooLarge
from dxlmispservice.names import request_topic

from . import direct, dxl
from .bridge import decoded, get_event_answer_ok
from .compare import rounds
from .stats import Latency, Samples

PAGE = 1000


def compare(misp: Any, client: DxlClient, events: dict[str, str], reps: dict[str, int],
            rounds_count: int = 5) -> dict[str, Any]:
    """``events`` maps a size ("10", ...) to an event id: direct and bridge get_event for each, interleaved
    in rounds."""
    out: dict[str, Any] = {}
    topic = request_topic("get_event")
    for size, event_id in events.items():
        call = direct.calls(event_id)["get_event"]
        payload = json.dumps({"event_id": event_id}).encode()
        answer = dxl.request_once(client, topic, payload)
        if not get_event_answer_ok(answer):
            raise RuntimeError(f"bridge get_event {event_id}: {answer.error_message or 'a wrong answer'}")
        steps: dict[str, Callable[[int], Samples]] = {
            "direct": lambda k, c=call: direct.sequential_samples(misp, c, k),
            "bridge": lambda k, p=payload: dxl.sequential_samples(client, topic, p, k, check=get_event_answer_ok)}
        for step in steps.values():
            step(2)
        pooled = rounds(steps, reps[size], min(rounds_count, reps[size]))
        for name, got in pooled.items():
            if got.errors:
                raise RuntimeError(f"{name} get_event {event_id}: {got.errors} wrong answers")
        out[size] = {"attributes": int(size), "bytes": len(answer.payload or b""),
                     "direct": pooled["direct"].latency().to_dict(), "bridge": pooled["bridge"].latency().to_dict()}
    return out


def oversized(misp: Any, client: DxlClient, event_id: str, attributes: int, reps: int) -> dict[str, Any]:
    """The bridge's get_event of a too-large event must be a quick response_too_large error."""
    payload = json.dumps({"event_id": event_id}).encode()
    topic = request_topic("get_event")
    samples, code = [], None
    for _ in range(reps):
        began = time.perf_counter()
        answer = dxl.request_once(client, topic, payload, timeout=60)
        samples.append(time.perf_counter() - began)
        if dxl.is_ok(answer):
            raise RuntimeError(f"get_event of {attributes} attributes was answered whole "
                               f"({len(answer.payload or b'')} bytes): no size limit")
        code = int(answer.error_code)
    if code != ResponseTooLarge.code:
        raise RuntimeError(f"the oversized answer came back as error {code}, not {ResponseTooLarge.code}")
    direct_latency, _ = direct.sequential(misp, direct.calls(event_id)["get_event"], reps, warmup=0)
    return {"attributes": attributes, "error_code": code, "latency": Latency.of(samples).to_dict(),
            "direct": direct_latency.to_dict()}


def paging(client: DxlClient, event_id: str, attributes: int, limit: int = PAGE) -> dict[str, Any]:
    """Read the event's attributes back through legacy search, page by page; check they are all there."""
    topic = request_topic("search")
    uuids: list[str] = []
    pages = 0
    began = time.perf_counter()
    while True:
        pages += 1
        payload = {"controller": "attributes", "eventid": event_id, "limit": limit, "page": pages}
        answer = dxl.request_once(client, topic, json.dumps(payload).encode(), timeout=60)
        body = decoded(answer)
        if body is None:
            raise RuntimeError(f"page {pages}: error {answer.error_code} {answer.error_message}")
        found = (body.get("response") or {}).get("Attribute") or [] if isinstance(body, dict) else []
        uuids.extend(str(a.get("uuid")) for a in found)
        if len(found) < limit or pages > attributes // limit + 2:
            break
    seconds = time.perf_counter() - began
    unique = len(set(uuids))
    return {"attributes": attributes, "limit": limit, "pages": pages, "received": len(uuids), "unique": unique,
            "whole": unique == attributes == len(uuids), "seconds": round(seconds, 3)}
