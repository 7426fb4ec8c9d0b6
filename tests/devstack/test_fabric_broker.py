"""mosquitto over TLS: its process, its client-certificate check, dxlclient.config files, and events."""
from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from dxlclient.callbacks import EventCallback
from dxlclient.client import DxlClient
from dxlclient.client_config import DxlClientConfig
from dxlclient.message import Event

from dxlmisp_devstack.fabric.broker import Broker, BrokerError
from dxlmisp_devstack.fabric.config import BROKER_ID, write_dxlclient_config
from dxlmisp_devstack.fabric.pki import Pki, make_pki

# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "probe".
MQTT_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 5]) + b"probe"
CONNACK_ACCEPTED = bytes([0x20, 2, 0, 0])


def _mqtt_connect(port: int, context: ssl.SSLContext) -> bytes:
    """Open TLS to the broker, send CONNECT, return the first 4 bytes it answers (b"" when it hangs up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(MQTT_CONNECT)
            answer = b""
            while len(answer) < 4:
                chunk = tls.recv(4 - len(answer))
                if not chunk:
                    break
                answer += chunk
            return answer


def _client_context(pki: Pki, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def test_broker_runs_as_a_child_with_its_pid(broker: Broker) -> None:
    """The started broker is a live mosquitto process whose PID the Broker reports."""
    assert broker.running
    cmdline = Path(f"/proc/{broker.pid}/cmdline").read_bytes().split(b"\0")
    assert os.path.basename(cmdline[0]) == b"mosquitto"
    assert str(broker.config_file).encode() in cmdline


def test_broker_config_turns_nagle_off_and_requires_certs(broker: Broker) -> None:
    """The mosquitto.conf it runs on sets set_tcp_nodelay and require_certificate, with persistence off."""
    lines = broker.config_file.read_text().splitlines()
    for wanted in ("set_tcp_nodelay true", "require_certificate true", "persistence false"):
        assert wanted in lines
    assert f"listener {broker.port} 127.0.0.1" in lines


def test_client_with_ca_signed_cert_gets_connack(broker: Broker, fabric_pki: Pki) -> None:
    """A client presenting a certificate from the dev CA is accepted (CONNACK, return code 0)."""
    context = _client_context(fabric_pki, fabric_pki.client("requester"))
    assert _mqtt_connect(broker.port, context) == CONNACK_ACCEPTED


def test_client_without_cert_is_rejected(broker: Broker, fabric_pki: Pki) -> None:
    """A TLS client that presents no certificate is cut off by the broker before any CONNACK."""
    context = _client_context(fabric_pki, None)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # TLS 1.3: alert "certificate required"
        _mqtt_connect(broker.port, context)


def test_client_with_foreign_cert_is_rejected(
    broker: Broker, fabric_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A client certificate from another CA is refused by the broker before any CONNACK."""
    foreign = make_pki(tmp_path_factory.mktemp("foreign"), ["intruder"])
    context = _client_context(fabric_pki, foreign.client("intruder"))
    with pytest.raises((ssl.SSLError, ConnectionError)):  # alert "unknown ca"
        _mqtt_connect(broker.port, context)


def test_stop_ends_the_process_by_pid(tmp_path: Path, fabric_pki: Pki) -> None:
    """stop() ends the mosquitto process it started; its PID is gone and its port refuses."""
    own = Broker(tmp_path, fabric_pki)
    port = own.start()
    pid = own.pid
    own.stop()
    assert not own.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    own.stop()  # a second stop is harmless


def test_start_fails_loudly_without_mosquitto(tmp_path: Path, fabric_pki: Pki) -> None:
    """A broken mosquitto path raises BrokerError rather than hanging."""
    with pytest.raises((BrokerError, OSError)):
        Broker(tmp_path, fabric_pki, mosquitto=str(tmp_path / "no-such-mosquitto")).start()


def test_written_config_loads_in_dxlclient(dxl_config: Callable[[str], Path], broker: Broker) -> None:
    """write_dxlclient_config writes a file DxlClientConfig loads, with the broker line and the role's files."""
    path = dxl_config("service")
    config = DxlClientConfig.create_dxl_config_from_file(str(path))
    (only,) = config.brokers
    assert (only.unique_id, int(only.port), only.host_name, only.ip_address) == (
        BROKER_ID,
        broker.port,
        "127.0.0.1",
        "127.0.0.1",
    )
    assert config.cert_file.endswith("client-service.crt")
    assert config.private_key.endswith("client-service.key")
    assert config.broker_ca_bundle.endswith("ca.crt")
    text = path.read_text()
    assert "[BrokersWebSockets]" in text
    assert "ClientId" not in text


def test_config_has_no_fixed_client_id(fabric_pki: Pki, tmp_path: Path) -> None:
    """Two clients loaded from one written config get different client ids."""
    path = write_dxlclient_config(tmp_path / "dxlclient.config", fabric_pki, "requester", 8883, host="localhost")
    first = DxlClientConfig.create_dxl_config_from_file(str(path))
    second = DxlClientConfig.create_dxl_config_from_file(str(path))
    assert first._client_id != second._client_id
    (only,) = first.brokers
    assert (only.host_name, only.ip_address) == ("localhost", "127.0.0.1")


class _Collector(EventCallback):
    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[bytes] = []
        self.arrived = threading.Event()

    def on_event(self, event: Event) -> None:
        self.payloads.append(bytes(event.payload))
        self.arrived.set()


def test_event_from_one_client_reaches_another(connect_client: Callable[[str], DxlClient]) -> None:
    """An event sent by one dxlclient over TLS arrives at another dxlclient's event callback."""
    listener = connect_client("listener")
    sender = connect_client("service")
    collector = _Collector()
    listener.add_event_callback("/devstack/test/event", collector)  # subscribes, waiting for the SUBACK
    event = Event("/devstack/test/event")
    event.payload = b'{"hello": "fabric"}'
    sender.send_event(event)
    assert collector.arrived.wait(10)
    assert collector.payloads == [b'{"hello": "fabric"}']


def test_large_event_arrives_whole(connect_client: Callable[[str], DxlClient]) -> None:
    """A 512 KB event crosses the broker intact (mosquitto keeps its default message size limit)."""
    listener = connect_client("listener")
    sender = connect_client("requester")
    collector = _Collector()
    listener.add_event_callback("/devstack/test/large", collector)
    body = os.urandom(512 * 1024)
    event = Event("/devstack/test/large")
    event.payload = body
    sender.send_event(event)
    assert collector.arrived.wait(10)
    assert collector.payloads == [body]
