"""The floor: a trivial DXL echo service, run as its own process like the real service.

``python -m bench.echo CONFIG TOPIC [THREADS]`` connects with TCP_NODELAY on its broker socket, registers a
service with two request topics, prints ``echo ready`` and runs until SIGTERM:

- ``TOPIC`` answers each request with its own payload (the floor);
- ``TOPIC/sized`` answers ``{"bytes": n}`` with an n-byte payload made once (the fabric's cost for an
  answer as large as the bridge's).
 Its incoming message pool has the service's default size (10 threads), so that the
floor and the bridge differ only by the work the bridge does.
"""
from __future__ import annotations

import json
import signal
import sys
import threading

from dxlclient.callbacks import RequestCallback
from dxlclient.client import DxlClient
from dxlclient.client_config import DxlClientConfig
from dxlclient.message import Request, Response
from dxlclient.service import ServiceRegistrationInfo

from dxlmispservice.compat.dxlclient import set_tcp_nodelay

READY = "echo ready"
SERVICE_TYPE = "/bench/service/echo"


class Sized(RequestCallback):
    """Answers ``{"bytes": n}`` with ``n`` bytes (cached per size)."""

    def __init__(self, client: DxlClient) -> None:
        super().__init__()
        self._client = client
        self._bodies: dict[int, bytes] = {}

    def on_request(self, request: Request) -> None:
        size = int(json.loads(request.payload or b"{}").get("bytes", 0))
        body = self._bodies.get(size)
        if body is None:
            body = self._bodies.setdefault(size, b"x" * size)
        response = Response(request)
        response.payload = body
        self._client.send_response(response)


class Echo(RequestCallback):
    """Answers a request with its own payload."""

    def __init__(self, client: DxlClient) -> None:
        super().__init__()
        self._client = client

    def on_request(self, request: Request) -> None:
        response = Response(request)
        response.payload = request.payload
        self._client.send_response(response)


def main(argv: list[str]) -> int:
    config_path, topic = argv[0], argv[1]
    threads = int(argv[2]) if len(argv) > 2 else 10
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = DxlClientConfig.create_dxl_config_from_file(config_path)
    config.incoming_message_thread_pool_size = threads
    client = DxlClient(config)
    set_tcp_nodelay(client)
    client.connect()
    service = ServiceRegistrationInfo(client, SERVICE_TYPE)
    service.add_topic(topic, Echo(client))
    service.add_topic(topic + "/sized", Sized(client))
    client.register_service_sync(service, 10)
    print(READY, flush=True)
    stop.wait()
    client.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
