"""Small helpers the end-to-end tests share: a request that must succeed, and an event made in MISP directly."""
from __future__ import annotations

from typing import Any

from dxlmisp_devstack.testing import Requester
from dxlmispservice.names import request_topic


def call(requester: Requester, api_name: str, payload: dict[str, Any]) -> Any:
    """The decoded answer of a request that must succeed."""
    reply = requester.request(request_topic(api_name), payload)
    assert reply.ok, f"{api_name} failed: {reply.error_code} {reply.error_message}"
    return reply.payload


def make_event(misp: Any, info: str) -> dict[str, Any]:
    """An event made directly in MISP (not through the service)."""
    return misp.add_event({"info": info, "distribution": 0, "threat_level_id": 3, "analysis": 0})["Event"]
