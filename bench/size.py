"""Size: get_event on events of 10, 100 and 1,000 attributes, bridge against direct; the oversized answer;
paging a 10,000-attribute event.

- For each size, direct PyMISP ``get_event`` and the bridge's ``get_event`` topic are timed in turn
  (sequential, p50/p99), and the bridge's answer size is recorded.
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
from typing import Any

from dxlclient.client import DxlClient

from dxlmispservice.errors import ResponseTooLarge
from dxlmispservice.topics import request_topic

from . import direct, dxl
from .bridge import decoded, get_event_answer_ok
from .stats import Latency

PAGE = 1000


def _bridge_get_event(client: DxlClient, event_id: str, n: int) -> tuple[Latency, int]:
    payload = json.dumps({"event_id": event_id}).encode()
    topic = request_topic("get_event")
    answer = dxl.request_once(client, topic, payload)
    if not get_event_answer_ok(answer):
        raise RuntimeError(f"bridge get_event {event_id}: {answer.error_message or 'a wrong answer'}")
    latency, errors = dxl.sequential(client, topic, payload, n, check=get_event_answer_ok, warmup=2)
    if errors:
        raise RuntimeError(f"bridge get_event {event_id}: {errors} wrong answers")
    return latency, len(answer.payload or b"")


def compare(misp: Any, client: DxlClient, events: dict[str, str], reps: dict[str, int]) -> dict[str, Any]:
    """``events`` maps a size ("10", ...) to an event id: direct and bridge get_event for each."""
    out: dict[str, Any] = {}
    for size, event_id in events.items():
        call = direct.calls(event_id)["get_event"]
        direct_latency, errors = direct.sequential(misp, call, reps[size], warmup=2)
        if errors:
            raise RuntimeError(f"direct get_event {event_id}: {errors} wrong answers")
        bridge_latency, size_bytes = _bridge_get_event(client, event_id, reps[size])
        out[size] = {"attributes": int(size), "bytes": size_bytes, "direct": direct_latency.to_dict(),
                     "bridge": bridge_latency.to_dict()}
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
