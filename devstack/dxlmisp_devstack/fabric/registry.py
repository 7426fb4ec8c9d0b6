"""A STAND-IN for the broker-side DXL registry services, which mosquitto does not have.

``python -m dxlmisp_devstack.fabric.registry CONFIG`` runs a dxlclient (on the dxlclient.config ``CONFIG``) that
answers, from an in-memory registry:

- ``/mcafee/service/dxl/svcregistry/register``: records ``{serviceType, serviceGuid, requestChannels,
  metaData, ttlMins}`` as dxlclient sends it, answers an empty Response (what dxlclient's
  ``register_service_sync`` and dxlbootstrap's ``Application`` wait for) and publishes the
  ``/mcafee/event/dxl/svcregistry/register`` event;
- ``/mcafee/service/dxl/svcregistry/unregister``: drops ``serviceGuid`` (only for the client that
  registered it), answers an empty Response and publishes ``/mcafee/event/dxl/svcregistry/unregister``;
- ``/mcafee/service/dxl/svcregistry/query``: ``{"services": {serviceGuid: {...}}}`` in the real broker's shape,
  filtered by ``serviceGuid`` if given, else by ``serviceType`` if given, else all; registrations past
  their TTL (plus the broker's 10-minute grace period) are dropped;
- ``/devstack/registry/age`` (dev only, a fault hook): ``{"serviceGuid", "minutes"}`` moves that
  registration's time back by ``minutes``, as if its client had stopped renewing it that long ago (what a
  ``kill -9`` leaves, seen after the TTL passes without waiting the TTL); answers ``{"aged": true|false}``;
- ``/mcafee/service/dxl/brokerregistry/query``: ``{"brokers": {id: {...}}}`` for the brokers listed in CONFIG,
  filtered by ``brokerGuid``;
- any other request topic (it subscribes to ``#``) that no registered service lists among its
  ``requestChannels``: an ErrorResponse ``0x80000001`` "unable to locate service for request", as the real
  broker answers.

It prints ``registry ready`` on stdout once its callbacks are subscribed, and exits with status 0 on
SIGTERM or SIGINT.

What the real OpenDXL broker does and this fabric does NOT (tests must not pretend otherwise):

- it routes each request to ONE registered service instance (round robin, or the instance named by
  the request's service id); mosquitto hands a request to every subscriber of its topic;
- it authorizes publishing and subscribing per topic by client certificate (``unauthorizedChannels`` is
  always empty here); mosquitto only checks that the certificate is signed by the dev CA;
- it supports tenants (source and destination tenant GUIDs, per-tenant limits); here they are ignored;
- it fills in the source client and broker ids of each message, and ``clientGuid`` from the certificate.
  Here ``clientGuid`` and ``clientInstanceGuid`` are the requester's MQTT client id (from its reply-to
  topic), ``certificates`` is empty, and the broker-registry fields this stand-in cannot know
  (``version``, ``policy*``, ``connectionLimit``) are placeholders.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import IO, Any

from dxlclient.callbacks import RequestCallback
from dxlclient.client import DxlClient
from dxlclient.client_config import DxlClientConfig
from dxlclient.message import ErrorResponse, Event, Request, Response
from dxlmispservice.compat.dxlclient import set_tcp_nodelay

from dxlmisp_devstack.fabric.broker import stop_process

REGISTER_TOPIC = "/mcafee/service/dxl/svcregistry/register"
UNREGISTER_TOPIC = "/mcafee/service/dxl/svcregistry/unregister"
QUERY_TOPIC = "/mcafee/service/dxl/svcregistry/query"
BROKER_QUERY_TOPIC = "/mcafee/service/dxl/brokerregistry/query"
AGE_TOPIC = "/devstack/registry/age"
REGISTER_EVENT_TOPIC = "/mcafee/event/dxl/svcregistry/register"
UNREGISTER_EVENT_TOPIC = "/mcafee/event/dxl/svcregistry/unregister"
REPLY_TO_PREFIX = "/mcafee/client/"
TTL_GRACE_MINUTES = 10  # the real broker's default grace period past a registration's TTL
READY_LINE = "registry ready"
#: The real broker's answer to a request on a topic that no registered service serves.
SERVICE_NOT_FOUND = 0x80000001
SERVICE_NOT_FOUND_MESSAGE = "unable to locate service for request"
STANDIN_VERSION = "devstack-standin"

logger = logging.getLogger(__name__)


class BadRegistryRequest(ValueError):
    """A registry request whose payload is not a JSON object of the expected shape."""


def parse_payload(payload: bytes | str | None) -> dict[str, Any]:
    """Decode a registry request payload: JSON object, trailing NULs allowed, empty means ``{}``."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else (payload or "")
    text = text.rstrip("\0").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRegistryRequest(f"payload is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRegistryRequest("payload is not a JSON object")
    return value


class ServiceRegistry:
    """The in-memory, thread-safe registry of DXL service registrations (no DXL here)."""

    def __init__(self, broker_guid: str, *, clock: Callable[[], float] = time.time) -> None:
        self.broker_guid = broker_guid
        self._clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, dict[str, Any]] = {}

    def register(self, payload: Mapping[str, Any], client_id: str) -> dict[str, Any]:
        """Record (or renew) a registration as dxlclient sends it; return the stored entry."""
        guid = payload.get("serviceGuid")
        service_type = payload.get("serviceType")
        if not isinstance(guid, str) or not guid:
            raise BadRegistryRequest("serviceGuid missing")
        if not isinstance(service_type, str) or not service_type:
            raise BadRegistryRequest("serviceType missing")
        channels = payload.get("requestChannels") or []
        metadata = payload.get("metaData") or {}
        ttl = payload.get("ttlMins", 60)
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise BadRegistryRequest("requestChannels must be a list of strings")
        if not isinstance(metadata, dict):
            raise BadRegistryRequest("metaData must be an object")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise BadRegistryRequest("ttlMins must be a non-negative integer")
        entry = {
            "serviceType": service_type,
            "serviceGuid": guid,
            "clientGuid": client_id,
            "clientInstanceGuid": client_id,
            "brokerGuid": self.broker_guid,
            "ttlMins": ttl,
            "registrationTime": int(self._clock()),
            "requestChannels": list(dict.fromkeys(channels)),
            "metaData": {str(k): str(v) for k, v in metadata.items()},
            "certificates": [],
            "managed": False,
        }
        with self._lock:
            self._services[guid] = entry
        return dict(entry)

    def unregister(self, service_guid: str, client_id: str) -> bool:
        """Drop a registration made by ``client_id``; return whether one was dropped."""
        with self._lock:
            entry = self._services.get(service_guid)
            if entry is None or entry["clientGuid"] != client_id:
                return False
            del self._services[service_guid]
            return True

    def age(self, service_guid: str, minutes: float) -> bool:
        """Move a registration's time back by ``minutes`` (dev only); return whether there was one."""
        with self._lock:
            entry = self._services.get(service_guid)
            if entry is None:
                return False
            entry["registrationTime"] -= int(minutes * 60)
            return True

    def query(self, service_guid: str = "", service_type: str = "") -> dict[str, Any]:
        """Answer a svcregistry query: by guid if given, else by type if given, else everything."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if service_guid:
                found = [self._services[service_guid]] if service_guid in self._services else []
            elif service_type:
                found = [e for e in self._services.values() if e["serviceType"] == service_type]
            else:
                found = list(self._services.values())
            return {"services": {e["serviceGuid"]: self._query_entry(e, now) for e in found}}

    def serves(self, topic: str) -> bool:
        """Whether a live registration lists ``topic`` among its request channels."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            return any(topic in entry["requestChannels"] for entry in self._services.values())

    def _expire(self, now: float) -> None:
        for guid, entry in list(self._services.items()):
            if now - entry["registrationTime"] > (entry["ttlMins"] + TTL_GRACE_MINUTES) * 60:
                del self._services[guid]

    @staticmethod
    def _query_entry(entry: Mapping[str, Any], now: float) -> dict[str, Any]:
        elapsed_minutes = int((now - entry["registrationTime"] + 30) // 60)
        out = dict(entry, requestChannels=list(entry["requestChannels"]), metaData=dict(entry["metaData"]))
        out["ttlMins"] = max(entry["ttlMins"] - elapsed_minutes, 0)
        out["local"] = True
        out["unauthorizedChannels"] = []
        return out


def broker_entries(config: DxlClientConfig, start_time: int) -> dict[str, dict[str, Any]]:
    """The brokerregistry entries for the brokers named in a dxlclient config, keyed by broker id."""
    entries: dict[str, dict[str, Any]] = {}
    for broker in config.brokers:
        guid = broker.unique_id or f"{broker.host_name}:{broker.port}"
        entries[guid] = {
            "guid": guid,
            "hostname": broker.host_name,
            "port": int(broker.port),
            "ttlMins": 60,
            "version": STANDIN_VERSION,
            "startTime": start_time,
            "policyHostname": broker.host_name,
            "policyIpAddress": broker.ip_address or "",
            "policyHub": "",
            "policyPort": int(broker.port),
            "connectionLimit": 0,
            "topicRouting": False,
            "bridges": [],
            "bridgeChildren": [],
        }
    return entries


def client_id_of(request: Request) -> str:
    """The requester's MQTT client id, read from its reply-to topic (mosquitto fills no source id)."""
    reply_to = request.reply_to_topic or ""
    if reply_to.startswith(REPLY_TO_PREFIX):
        return reply_to[len(REPLY_TO_PREFIX):]
    return request.source_client_id or ""


class _Handler(RequestCallback):
    """Adapts one registry operation (payload dict in, JSON-able answer out) to a dxlclient callback."""

    def __init__(self, client: DxlClient, operation: Callable[[Request, dict[str, Any]], Any]) -> None:
        super().__init__()
        self._client = client
        self._operation = operation

    def on_request(self, request: Request) -> None:
        try:
            result = self._operation(request, parse_payload(request.payload))
        except BadRegistryRequest as exc:
            logger.warning("bad registry request on %s: %s", request.destination_topic, exc)
            self._client.send_response(ErrorResponse(request, error_code=0, error_message=str(exc)))
            return
        response = Response(request)
        response.payload = b"" if result is None else json.dumps(result).encode("utf-8")
        self._client.send_response(response)


class _Unserved(RequestCallback):
    """The catch-all: answers a request that no registered service serves with the broker's 0x80000001."""

    def __init__(self, stand_in: RegistryStandIn) -> None:
        super().__init__()
        self._stand_in = stand_in

    def on_request(self, request: Request) -> None:
        if self._stand_in.answers_unserved(request):
            self._stand_in.client.send_response(
                ErrorResponse(request, error_code=SERVICE_NOT_FOUND, error_message=SERVICE_NOT_FOUND_MESSAGE))


class RegistryStandIn:
    """Wires a ServiceRegistry to a connected DxlClient: the four registry topics and the two events."""

    def __init__(self, client: DxlClient, registry: ServiceRegistry, brokers: Mapping[str, Mapping[str, Any]]):
        self.client = client
        self.registry = registry
        self.brokers = dict(brokers)

    def topics(self) -> dict[str, Callable[[Request, dict[str, Any]], Any]]:
        """The request topics this stand-in answers, with their operations."""
        return {
            REGISTER_TOPIC: self._register,
            UNREGISTER_TOPIC: self._unregister,
            QUERY_TOPIC: self._query,
            BROKER_QUERY_TOPIC: self._query_brokers,
            AGE_TOPIC: self._age,
        }

    def subscribe(self) -> None:
        """Add the request callbacks and subscribe (dxlclient waits for each SUBACK), the catch-all last."""
        for topic, operation in self.topics().items():
            self.client.add_request_callback(topic, _Handler(self.client, operation))
            self.client.subscribe(topic)
        self.client.add_request_callback("#", _Unserved(self))
        self.client.subscribe("#")

    def answers_unserved(self, request: Request) -> bool:
        """Whether ``request`` is one the real broker would refuse: no registered service serves its topic."""
        topic = request.destination_topic or ""
        return topic not in self.topics() and not self.registry.serves(topic)

    def _register(self, request: Request, payload: dict[str, Any]) -> None:
        entry = self.registry.register(payload, client_id_of(request))
        self._publish(REGISTER_EVENT_TOPIC, entry)

    def _unregister(self, request: Request, payload: dict[str, Any]) -> None:
        guid = payload.get("serviceGuid")
        if not isinstance(guid, str) or not guid:
            raise BadRegistryRequest("serviceGuid missing")
        if self.registry.unregister(guid, client_id_of(request)):
            self._publish(UNREGISTER_EVENT_TOPIC, {"serviceGuid": guid})

    def _query(self, request: Request, payload: dict[str, Any]) -> dict[str, Any]:
        return self.registry.query(str(payload.get("serviceGuid") or ""), str(payload.get("serviceType") or ""))

    def _age(self, request: Request, payload: dict[str, Any]) -> dict[str, Any]:
        guid, minutes = payload.get("serviceGuid"), payload.get("minutes")
        if not isinstance(guid, str) or not guid:
            raise BadRegistryRequest("serviceGuid missing")
        if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes < 0:
            raise BadRegistryRequest("minutes must be a non-negative number")
        return {"aged": self.registry.age(guid, minutes)}

    def _query_brokers(self, request: Request, payload: dict[str, Any]) -> dict[str, Any]:
        guid = str(payload.get("brokerGuid") or "")
        chosen = {g: b for g, b in self.brokers.items() if not guid or g == guid}
        return {"brokers": chosen}

    def _publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        event = Event(topic)
        event.payload = json.dumps(payload).encode("utf-8")
        self.client.send_event(event)


def spawn(
    config: str | os.PathLike[str], *, stderr_path: str | os.PathLike[str] | None = None, timeout: float = 15.0
) -> subprocess.Popen[bytes]:
    """Start ``python -m dxlmisp_devstack.fabric.registry CONFIG`` as a child; return it once it prints its ready line.

    Stop it with ``dxlmisp_devstack.fabric.broker.stop_process(process)`` (by PID), then close ``process.stdout``.
    Raises ``RegistryStartError`` (and stops the child) if it exits or stays silent for ``timeout`` seconds.
    """
    command = [sys.executable, "-m", "dxlmisp_devstack.fabric.registry", os.fspath(config)]
    env = dict(os.environ)
    stderr = open(stderr_path, "ab") if stderr_path is not None else None
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
    finally:
        if stderr is not None:
            stderr.close()
    assert process.stdout is not None
    line = _read_line(process.stdout, timeout)
    if line.strip() != READY_LINE:
        stop_process(process)
        process.stdout.close()
        raise RegistryStartError(f"registry stand-in did not get ready (exit {process.returncode}, said {line!r})")
    return process


class RegistryStartError(RuntimeError):
    """The registry stand-in exited or did not print its ready line in time."""


def _read_line(stream: IO[bytes], timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        buffer = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode(errors="replace")


class _Stop(Exception):
    """Raised by the signal handler while the client is still connecting."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in until SIGTERM or SIGINT; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dxlmisp_devstack.fabric.registry", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the stand-in's own dxlclient.config")
    parser.add_argument("--connect-retries", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s registry %(levelname)s %(message)s")

    stop = threading.Event()
    ready = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if not ready.is_set():
            raise _Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    config = DxlClientConfig.create_dxl_config_from_file(args.config)
    config.connect_retries = args.connect_retries
    brokers = broker_entries(config, int(time.time()))
    broker_guid = next(iter(brokers), "")
    client = DxlClient(config)
    set_tcp_nodelay(client)  # dxlclient keeps Nagle on: off on this socket and every new one
    try:
        try:
            client.connect()
            RegistryStandIn(client, ServiceRegistry(broker_guid), brokers).subscribe()
            ready.set()
        except _Stop:
            return 0
        print(READY_LINE, flush=True)
        stop.wait()
        return 0
    finally:
        client.destroy()


if __name__ == "__main__":
    sys.exit(main())
