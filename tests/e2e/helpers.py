"""Small helpers the end-to-end tests share: a request that must succeed, an event made in MISP directly, and a
collector of asynchronous answers."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dxlclient.callbacks import ResponseCallback
from dxlclient.message import Message, Response

from dxlmisp_devstack.testing import Requester, StackHandle
from dxlmispservice.names import request_topic


def call(requester: Requester, api_name: str, payload: dict[str, Any]) -> Any:
    """The decoded answer of a request that must succeed."""
    reply = requester.request(request_topic(api_name), payload)
    assert reply.ok, f"{api_name} failed: {reply.error_code} {reply.error_message}"
    return reply.payload


def make_event(misp: Any, info: str) -> dict[str, Any]:
    """An event made directly in MISP (not through the service)."""
    return misp.add_event({"info": info, "distribution": 0, "threat_level_id": 3, "analysis": 0})["Event"]


@contextmanager
def limited_service(devstack: StackHandle, directory: Path, unique_id: str, max_response_size: int) -> Iterator[str]:
    """A service variant under ``unique_id`` with ``maxResponseSize`` set (feed and ZeroMQ forwarding off),
    running while the block runs; yields its serviceUniqueId."""
    config = devstack.config_dir(directory / "config", {
        "General": {"serviceUniqueId": unique_id, "maxResponseSize": str(max_response_size),
                    "zeroMqNotificationTopics": None, "zeroMqPort": None},
        "Feed": {"enabled": "false"}})
    with devstack.run_service(config):
        yield unique_id


class Collect(ResponseCallback):
    """Every answer, by the message id of the request it answers; ``done`` once ``expected`` came."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.responses: dict[str, Response] = {}
        self.expected = expected
        self.done = threading.Event()
        self._lock = threading.Lock()

    def on_response(self, response: Response) -> None:
        with self._lock:
            self.responses[response.request_message_id] = response
            if len(self.responses) >= self.expected:
                self.done.set()

    def codes(self) -> list[int]:
        """0 for each answer, the error code for each error."""
        return sorted(int(r.error_code) if r.message_type == Message.MESSAGE_TYPE_ERROR else 0
                      for r in self.responses.values())
