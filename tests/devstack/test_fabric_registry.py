"""The registry stand-in: its in-memory registry, and the process over real mosquitto with real dxlclients."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dxlbootstrap.app import Application
from dxlclient.callbacks import EventCallback, RequestCallback
from dxlclient.client import DxlClient
from dxlclient.message import ErrorResponse, Event, Message, Request, Response
from dxlclient.service import ServiceRegistrationInfo

from dxlmisp_devstack.fabric import registry
from dxlmisp_devstack.fabric.broker import stop_process
from dxlmisp_devstack.fabric.config import BROKER_ID
from dxlmisp_devstack.fabric.registry import BadRegistryRequest, ServiceRegistry, parse_payload

SERVICE_TYPE = "/devstack/test/echo"
ECHO_TOPIC = "/devstack/test/echo/ping"


def _registration(guid: str, service_type: str = SERVICE_TYPE, ttl: int = 60) -> dict[str, Any]:
    return {
        "serviceType": service_type,
        "serviceGuid": guid,
        "requestChannels": [f"{service_type}/ping"],
        "metaData": {"version": "1"},
        "ttlMins": ttl,
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# --- the in-memory registry, no DXL ---------------------------------------------------------------


def test_query_entry_has_the_real_brokers_fields() -> None:
    """A query answer is {"services": {guid: entry}} with the fields the OpenDXL broker writes."""
    reg = ServiceRegistry(BROKER_ID)
    reg.register(_registration("{a}"), "client-1")
    entry = reg.query()["services"]["{a}"]
    assert set(entry) >= {
        "serviceType", "serviceGuid", "clientGuid", "clientInstanceGuid", "brokerGuid", "ttlMins",
        "registrationTime", "requestChannels", "metaData", "certificates", "managed", "local",
        "unauthorizedChannels",
    }
    assert (entry["serviceType"], entry["brokerGuid"], entry["clientGuid"]) == (SERVICE_TYPE, BROKER_ID, "client-1")
    assert entry["requestChannels"] == [f"{SERVICE_TYPE}/ping"]
    assert entry["metaData"] == {"version": "1"}


def test_query_filters_by_guid_then_type() -> None:
    """serviceGuid picks one registration; serviceType picks all of that type; neither lists all."""
    reg = ServiceRegistry(BROKER_ID)
    reg.register(_registration("{a}"), "c")
    reg.register(_registration("{b}"), "c")
    reg.register(_registration("{c}", service_type="/other"), "c")
    assert set(reg.query(service_guid="{b}")["services"]) == {"{b}"}
    assert set(reg.query(service_type=SERVICE_TYPE)["services"]) == {"{a}", "{b}"}
    assert set(reg.query()["services"]) == {"{a}", "{b}", "{c}"}
    assert reg.query(service_guid="{zzz}") == {"services": {}}


def test_unregister_only_by_the_registering_client() -> None:
    """Another client cannot unregister a service; the registering client can."""
    reg = ServiceRegistry(BROKER_ID)
    reg.register(_registration("{a}"), "owner")
    assert reg.unregister("{a}", "someone-else") is False
    assert "{a}" in reg.query()["services"]
    assert reg.unregister("{a}", "owner") is True
    assert reg.query()["services"] == {}


def test_registration_expires_after_ttl_and_grace() -> None:
    """A registration not renewed within ttlMins plus the 10-minute grace period is dropped."""
    clock = _Clock()
    reg = ServiceRegistry(BROKER_ID, clock=clock)
    reg.register(_registration("{a}", ttl=1), "c")
    clock.now += (1 + registry.TTL_GRACE_MINUTES) * 60
    assert "{a}" in reg.query()["services"]
    clock.now += 1
    assert reg.query()["services"] == {}


def test_an_aged_registration_expires_as_an_unrenewed_one_does() -> None:
    """The dev-only age hook moves one registration back in time: past its TTL and grace it is gone, the
    others stay; an unknown guid is no registration."""
    reg = ServiceRegistry(BROKER_ID, clock=_Clock())
    reg.register(_registration("{a}", ttl=60), "c")
    reg.register(_registration("{b}", ttl=60), "c")
    assert reg.age("{a}", 60 + registry.TTL_GRACE_MINUTES) and "{a}" in reg.query()["services"]
    assert reg.age("{a}", 1) and list(reg.query()["services"]) == ["{b}"]
    assert not reg.age("{zz}", 1)


def test_reregistration_renews_the_entry() -> None:
    """Registering the same serviceGuid again replaces the entry and restarts its TTL."""
    clock = _Clock()
    reg = ServiceRegistry(BROKER_ID, clock=clock)
    reg.register(_registration("{a}", ttl=1), "c")
    clock.now += 600
    reg.register(_registration("{a}", ttl=1), "c")
    clock.now += 600
    assert reg.query()["services"]["{a}"]["registrationTime"] == int(clock.now - 600)


@pytest.mark.parametrize(
    "payload",
    [
        {"serviceType": SERVICE_TYPE},
        {"serviceGuid": "{a}"},
        dict(_registration("{a}"), requestChannels="not-a-list"),
        dict(_registration("{a}"), ttlMins=-1),
    ],
)
def test_malformed_registration_is_refused(payload: dict[str, Any]) -> None:
    """A registration without a guid or type, or with malformed fields, raises BadRegistryRequest."""
    with pytest.raises(BadRegistryRequest):
        ServiceRegistry(BROKER_ID).register(payload, "c")


def test_payload_parsing_accepts_trailing_nul_and_empty() -> None:
    """Payloads may end in NUL bytes (some DXL clients add one) and may be empty; non-objects are refused."""
    assert parse_payload(b'{"serviceType": "/x"}\0') == {"serviceType": "/x"}
    assert parse_payload(b"") == {}
    with pytest.raises(BadRegistryRequest):
        parse_payload(b"[1, 2]")
    with pytest.raises(BadRegistryRequest):
        parse_payload(b"{not json")


# --- the stand-in process over the real fabric ------------------------------------------------------


class _Echo(RequestCallback):
    def __init__(self, client: DxlClient) -> None:
        super().__init__()
        self._client = client

    def on_request(self, request: Request) -> None:
        response = Response(request)
        response.payload = b"echo:" + bytes(request.payload)
        self._client.send_response(response)


def _request(client: DxlClient, topic: str, payload: dict[str, Any] | bytes) -> Message:
    request = Request(topic)
    request.payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.sync_request(request, timeout=10)


def _query(client: DxlClient, **filters: str) -> dict[str, Any]:
    response = _request(client, registry.QUERY_TOPIC, filters)
    assert response.message_type == Message.MESSAGE_TYPE_RESPONSE
    return json.loads(response.payload.decode())["services"]


@pytest.fixture(scope="module")
def service(
    registry_process: subprocess.Popen[bytes], connect_client: Callable[[str], DxlClient]
) -> Iterator[ServiceRegistrationInfo]:
    """An echo service registered through the stand-in with register_service_sync."""
    client = connect_client("service")
    info = ServiceRegistrationInfo(client, SERVICE_TYPE)
    info.add_topic(ECHO_TOPIC, _Echo(client))
    info.metadata = {"purpose": "test"}
    client.register_service_sync(info, 10)  # raises on timeout
    yield info


@pytest.fixture(scope="module")
def requester(registry_process: subprocess.Popen[bytes], connect_client: Callable[[str], DxlClient]) -> DxlClient:
    return connect_client("requester")


def test_register_service_sync_succeeds(service: ServiceRegistrationInfo, requester: DxlClient) -> None:
    """register_service_sync returns, and the stand-in holds the registration dxlclient sent."""
    entry = _query(requester, serviceGuid=service.service_id)[service.service_id]
    assert entry["serviceType"] == SERVICE_TYPE
    assert entry["requestChannels"] == [ECHO_TOPIC]
    assert entry["metaData"] == {"purpose": "test"}


def test_sync_request_gets_the_services_response(service: ServiceRegistrationInfo, requester: DxlClient) -> None:
    """A requester's sync_request on the service's topic gets the service's own Response."""
    response = _request(requester, ECHO_TOPIC, b"hello")
    assert isinstance(response, Response) and not isinstance(response, ErrorResponse)
    assert bytes(response.payload) == b"echo:hello"


def test_unserved_topic_gets_the_brokers_0x80000001(service: ServiceRegistrationInfo, requester: DxlClient) -> None:
    """A request on a topic no registered service serves gets the real broker's 0x80000001 error."""
    response = _request(requester, "/devstack/test/nobody-serves-this", {})
    assert isinstance(response, ErrorResponse)
    assert (response.error_code, response.error_message) == (0x80000001, "unable to locate service for request")


class _Silent(RequestCallback):
    """Takes requests and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def on_request(self, request: Request) -> None:
        self.seen.set()


def test_subscribed_but_unregistered_topic_is_refused_too(
        service: ServiceRegistrationInfo, requester: DxlClient, connect_client: Callable[[str], DxlClient]) -> None:
    """A topic a client listens on without registering a service is unserved for the broker: 0x80000001."""
    listener, silent = connect_client("listener"), _Silent()
    listener.add_request_callback("/devstack/test/unregistered", silent)
    listener.subscribe("/devstack/test/unregistered")
    answer = _request(requester, "/devstack/test/unregistered", b"x")
    assert isinstance(answer, ErrorResponse) and answer.error_code == 0x80000001
    assert silent.seen.wait(5)  # mosquitto delivered it to the listener too: only the registry decides


def test_served_topic_never_gets_the_not_found_error(service: ServiceRegistrationInfo, requester: DxlClient) -> None:
    """On a registered service's topic only the service answers: 20 requests, 20 echoes, no 0x80000001."""
    answers = [_request(requester, ECHO_TOPIC, b"n%d" % i) for i in range(20)]
    assert [bytes(a.payload) for a in answers] == [b"echo:n%d" % i for i in range(20)]
    assert not any(isinstance(a, ErrorResponse) for a in answers)


def test_query_lists_the_service_by_type(service: ServiceRegistrationInfo, requester: DxlClient) -> None:
    """The svcregistry query topic lists the registered service under its guid, filtered by serviceType."""
    assert service.service_id in _query(requester, serviceType=SERVICE_TYPE)
    assert service.service_id not in _query(requester, serviceType="/devstack/test/nothing-here")
    assert service.service_id in _query(requester)


def test_broker_registry_query_names_the_broker(broker: Any, requester: DxlClient, registry_process: Any) -> None:
    """The brokerregistry query answers {"brokers": {id: ...}} with the broker from the stand-in's config."""
    response = _request(requester, registry.BROKER_QUERY_TOPIC, {})
    brokers = json.loads(response.payload.decode())["brokers"]
    assert list(brokers) == [BROKER_ID]
    assert (brokers[BROKER_ID]["guid"], brokers[BROKER_ID]["port"]) == (BROKER_ID, broker.port)
    response = _request(requester, registry.BROKER_QUERY_TOPIC, {"brokerGuid": "{unknown}"})
    assert json.loads(response.payload.decode()) == {"brokers": {}}


def test_malformed_registry_request_gets_error_response(requester: DxlClient, registry_process: Any) -> None:
    """A register request without serviceGuid gets an ErrorResponse, not silence."""
    response = _request(requester, registry.REGISTER_TOPIC, {"serviceType": "/x"})
    assert response.message_type == Message.MESSAGE_TYPE_ERROR


class _Collector(EventCallback):
    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def on_event(self, event: Event) -> None:
        self.payloads.append(json.loads(event.payload.decode()))
        self.arrived.set()


def test_register_and_unregister_round_trip_with_events(
    connect_client: Callable[[str], DxlClient], requester: DxlClient, registry_process: Any
) -> None:
    """A second service registers and unregisters synchronously; the stand-in publishes both events."""
    listener = connect_client("listener")
    registered, unregistered = _Collector(), _Collector()
    listener.add_event_callback(registry.REGISTER_EVENT_TOPIC, registered)
    listener.add_event_callback(registry.UNREGISTER_EVENT_TOPIC, unregistered)
    client = connect_client("service")
    info = ServiceRegistrationInfo(client, "/devstack/test/short-lived")
    info.add_topic("/devstack/test/short-lived/ping", _Echo(client))
    client.register_service_sync(info, 10)
    assert registered.arrived.wait(10)
    assert info.service_id in {p["serviceGuid"] for p in registered.payloads}
    client.unregister_service_sync(info, 10)
    assert unregistered.arrived.wait(10)
    assert unregistered.payloads == [{"serviceGuid": info.service_id}]
    assert info.service_id not in _query(requester)


class _BootstrapApp(Application):
    """A minimal dxlbootstrap application exposing one service."""

    # dxlbootstrap asks pkg_resources about the subclass's module, which cannot answer for a module loaded
    # by pytest's assertion rewriter: name a plainly imported package (it has no _config directory).
    __module__ = "dxlmisp_devstack.fabric"

    def __init__(self, config_dir: str) -> None:
        super().__init__(config_dir, "app.config")
        self.info: ServiceRegistrationInfo | None = None

    def on_register_services(self) -> None:
        # dxlbootstrap 0.2.2 has no public accessor for its client: subclasses use _dxl_client.
        self.info = ServiceRegistrationInfo(self._dxl_client, "/devstack/test/bootstrap")
        self.add_request_callback(self.info, "/devstack/test/bootstrap/ping", _Echo(self._dxl_client), False)
        self.register_service(self.info)


def test_dxlbootstrap_application_starts_and_stops(
    dxl_config: Callable[[str], Path], requester: DxlClient, tmp_path: Path, registry_process: Any
) -> None:
    """A dxlbootstrap Application's run() registers its service, and destroy() unregisters it."""
    (tmp_path / "dxlclient.config").write_text(dxl_config("service").read_text())
    (tmp_path / "app.config").write_text("[General]\n")
    app = _BootstrapApp(str(tmp_path))
    try:
        app.run()  # registers with a 60 s timeout; raises if the registry does not answer
        assert app.info is not None
        guid = app.info.service_id
        assert guid in _query(requester, serviceType="/devstack/test/bootstrap")
        assert bytes(_request(requester, "/devstack/test/bootstrap/ping", b"x").payload) == b"echo:x"
    finally:
        app.destroy()
    assert guid not in _query(requester)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_standin_stops_cleanly_by_pid(dxl_config: Callable[[str], Path], tmp_path: Path, signum: int) -> None:
    """A stand-in process prints its ready line and exits with status 0 on SIGTERM or SIGINT to its PID."""
    process = registry.spawn(dxl_config("registry"), stderr_path=tmp_path / "stderr")
    try:
        assert process.poll() is None
        process.send_signal(signum)
        assert process.wait(15) == 0
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
