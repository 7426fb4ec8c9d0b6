"""Bridge: the same calls as ``direct.py`` through the service's request topics.

``search`` is the legacy topic (payload ``{"eventid": id}``, answer ``{"response": [{"Event": ...}]}``),
``get_event`` the modern one (``{"event_id": id}``, answer ``{"Event": ...}``); every answer is decoded and
checked. ``compare.py`` times them against direct and the floor; :func:`measure` times one call on its own
(sequential, then levels in flight), as ``peer.py`` does for ours and 0.1.5.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dxlclient.client import DxlClient
from dxlclient.message import Response

from dxlmispservice.names import request_topic

from . import dxl
from .report import LEVELS


def decoded(response: Response) -> Any:
    """The answer's JSON, or None when it is an error or not JSON."""
    if not dxl.is_ok(response):
        return None
    try:
        return json.loads((response.payload or b"").decode("utf-8").rstrip("\0"))
    except (UnicodeDecodeError, ValueError):
        return None


def search_answer_ok(response: Response) -> bool:
    """A legacy search answer holding exactly one event."""
    body = decoded(response)
    return isinstance(body, dict) and isinstance(body.get("response"), list) and len(body["response"]) == 1


def get_event_answer_ok(response: Response) -> bool:
    """A get_event answer: ``{"Event": {...}}``."""
    body = decoded(response)
    return isinstance(body, dict) and isinstance(body.get("Event"), dict)


def calls(event_id: str, service_unique_id: str = "") -> dict[str, tuple[str, bytes, Callable[[Response], bool]]]:
    """``{name: (topic, payload, check)}`` for the measured calls."""
    return {
        "search": (request_topic("search", service_unique_id), json.dumps({"eventid": event_id}).encode(),
                   search_answer_ok),
        "get_event": (request_topic("get_event", service_unique_id), json.dumps({"event_id": event_id}).encode(),
                      get_event_answer_ok),
    }


def measure(client: DxlClient, topic: str, payload: bytes, check: Callable[[Response], bool], *,
            sequential_n: int, level_n: int, levels: tuple[str, ...] = LEVELS) -> dict[str, Any]:
    """One call: sequential latency, and throughput/latency at each level."""
    latency, errors = dxl.sequential(client, topic, payload, sequential_n, check=check)
    if errors:
        raise RuntimeError(f"{topic}: {errors} wrong answers out of {sequential_n}")
    throughput: dict[str, Any] = {}
    latency_at: dict[str, Any] = {}
    for level in levels:
        tp, lat = dxl.in_flight(client, topic, payload, level_n, int(level), check=check, warmup=int(level) * 2)
        throughput[level] = tp.to_dict()
        latency_at[level] = lat.to_dict()
    return {"sequential": latency.to_dict(), "throughput": throughput, "latency_at": latency_at}
