"""MispService on dxlbootstrap with a fake DXL client: registration, forwarders, TCP_NODELAY, config files."""
from __future__ import annotations

import configparser
import filecmp
import json
import signal
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dxlbootstrap.app
import pytest
from dxlclient.message import ErrorResponse, Event, Request, Response
from pahoproxy.client import Client as PahoClient

from dxlmispservice import __main__ as service_main
from dxlmispservice.app import MispService
from dxlmispservice.compat.dxlclient import enable_tcp_nodelay, set_tcp_nodelay, tcp_nodelay_enabled
from dxlmispservice.events.publisher import dxl_publisher
from dxlmispservice.errors import ConfigError, MispRefused, MispUnavailable

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_CONFIG = ROOT / "dxlmispservice" / "_config" / "app"
KEY = "appKey0123456789abcdefghijklmnopqrstuvwxy"
SERVICE = "/opendxl-misp/service/misp-api"


@pytest.fixture()
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two ends of a real TCP connection on 127.0.0.1."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


class FakeDxlClient:
    """Takes DxlClient's place in dxlbootstrap: records registrations, answers and events."""

    instances: list[FakeDxlClient] = []
    socket: socket.socket | None = None

    def __init__(self, config: Any) -> None:
        self.config = config
        self._client = PahoClient()  # dxlclient's real vendored paho, never connected
        self._client._sock = FakeDxlClient.socket
        self.registered: list[Any] = []
        self.unregistered: list[Any] = []
        self.responses: list[Any] = []
        self.events: list[Event] = []
        self.log: list[str] = []
        FakeDxlClient.instances.append(self)

    def connect(self) -> None:
        self.log.append("connect")

    def register_service_sync(self, service: Any, timeout: float) -> None:
        self.registered.append(service)

    def unregister_service_sync(self, service: Any, timeout: float) -> None:
        self.unregistered.append(service)

    def send_response(self, response: Any) -> None:
        self.responses.append(response)

    def send_event(self, event: Event) -> None:
        self.events.append(event)

    def destroy(self) -> None:
        self.log.append("destroy")


class FakeForwarder:
    def __init__(self, name: str, publisher: Any, log: list[str]) -> None:
        self.name, self.publisher, self.log = name, publisher, log

    def start(self) -> None:
        self.log.append(f"start {self.name}")
        self.publisher(f"/test/{self.name}", {"from": self.name})

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


class FakeMisp:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.checks = 0

    def check(self) -> bool:
        self.checks += 1
        return True


def local_table(names: Any, **options: Any) -> dict[str, Any]:
    """A tiny topic table: every name echoes its payload with its own name."""
    return {name: (lambda misp, payload, name=name: {"api": name, **payload}) for name in names}


@pytest.fixture(autouse=True)
def fake_dxl(monkeypatch: pytest.MonkeyPatch, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    FakeDxlClient.instances = []
    FakeDxlClient.socket = tcp_pair[0]
    monkeypatch.setattr(dxlbootstrap.app, "DxlClient", FakeDxlClient)


def write_config(directory: Path, general: str = "apiNames=new_event,get_event", extra: str = "",
                 host: str = "http://127.0.0.1:9/") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dxlclient.config").write_text(
        "[Certs]\nBrokerCertChain=ca.pem\nCertFile=client.pem\nPrivateKey=client.key\n"
        "[Brokers]\nb1=b1;8883;localhost;127.0.0.1\n")
    (directory / "dxlmispservice.config").write_text(
        f"[General]\nhost={host}\napiKey=env:TEST_MISP_KEY\n{general}\n{extra}")
    return directory


def make_app(config_dir: Path, **overrides: Any) -> MispService:
    options: dict[str, Any] = {"misp_client_factory": FakeMisp, "table_builder": local_table,
                               "forwarders_factory": lambda settings, misp, publisher: [],
                               "environ": {"TEST_MISP_KEY": KEY}}
    options.update(overrides)
    return MispService(str(config_dir), **options)


def request(topic: str, payload: bytes) -> Request:
    req = Request(topic)
    req.payload = payload
    return req


def answer(app: MispService, topic: str, payload: bytes) -> Any:
    """Deliver a request to the callback registered for ``topic`` and return what was sent back."""
    client = FakeDxlClient.instances[-1]
    (callback,) = app.service._callbacks_by_topic[topic]  # type: ignore[union-attr]
    callback.on_request(request(topic, payload))
    return client.responses.pop()


def test_registers_exactly_the_api_name_topics(tmp_path: Path) -> None:
    """One service of the service type, with one request topic per apiNames entry and nothing else."""
    app = make_app(write_config(tmp_path))
    try:
        app.run()
        (client,) = FakeDxlClient.instances
        (service,) = client.registered
        assert service.service_type == SERVICE
        assert set(service.topics) == {f"{SERVICE}/new_event", f"{SERVICE}/get_event"}
        assert app.settings is not None and app.settings.api_key == KEY
    finally:
        app.destroy()
    assert client.unregistered == [service]


def test_service_unique_id_in_type_and_topics(tmp_path: Path) -> None:
    """serviceUniqueId is appended to the service type and put in every topic."""
    app = make_app(write_config(tmp_path, "apiNames=search\nserviceUniqueId=east"))
    try:
        app.run()
        (service,) = FakeDxlClient.instances[0].registered
        assert service.service_type == f"{SERVICE}/east"
        assert set(service.topics) == {f"{SERVICE}/east/search"}
    finally:
        app.destroy()


def test_requests_answered_on_the_incoming_thread(tmp_path: Path) -> None:
    """A registered callback answers in the calling (incoming message) thread: no callback pool is made."""
    app = make_app(write_config(tmp_path))
    try:
        app.run()
        response = answer(app, f"{SERVICE}/get_event", b'{"id": 3}')
        assert type(response) is Response
        assert json.loads(response.payload) == {"api": "get_event", "id": 3}
        assert app._callbacks_pool is None
    finally:
        app.destroy()


def test_pool_sizes_come_from_checked_settings(tmp_path: Path) -> None:
    """The DXL client's incoming pool takes [IncomingMessagePool] from the checked settings."""
    app = make_app(write_config(tmp_path, extra="[IncomingMessagePool]\nthreadCount=3\nqueueSize=30\n"))
    try:
        app.run()
        config = FakeDxlClient.instances[0].config
        assert (config.incoming_message_thread_pool_size, config.incoming_message_queue_size) == (3, 30)
    finally:
        app.destroy()


def test_bad_api_name_stops_before_connecting(tmp_path: Path) -> None:
    """An unknown api name raises ConfigError naming it and pointing at the docs, before any DXL client exists."""
    from dxlmispservice.api import topics

    app = make_app(write_config(tmp_path, "apiNames=new_event,no_such_name"), table_builder=topics.build_table)
    try:
        with pytest.raises(ConfigError) as caught:
            app.run()
        assert "'no_such_name' is not an API name" in caught.value.message
        assert "docs/methods.rst" in caught.value.message
        assert FakeDxlClient.instances == []
    finally:
        app.destroy()


def test_empty_api_names_registers_nothing(tmp_path: Path) -> None:
    """With no apiNames, no service is registered."""
    app = make_app(write_config(tmp_path, ""))
    try:
        app.run()
        assert FakeDxlClient.instances[0].registered == []
    finally:
        app.destroy()


def test_starts_and_registers_with_misp_down(tmp_path: Path) -> None:
    """With the real MispConnection and MISP unreachable, the service registers and answers misp_unavailable."""
    def table(names: Any, **options: Any) -> dict[str, Any]:
        return {name: (lambda misp, payload: misp.call(lambda m: m.get_user())) for name in names}

    from dxlmispservice.misp import MispConnection

    app = make_app(write_config(tmp_path, "apiNames=get_user"), misp_client_factory=MispConnection,
                   table_builder=table)
    try:
        app.run()
        assert len(FakeDxlClient.instances[0].registered) == 1
        response = answer(app, f"{SERVICE}/get_user", b"{}")
        assert isinstance(response, ErrorResponse)
        assert response.error_code == MispUnavailable.code and KEY not in response.error_message
    finally:
        app.destroy()


def test_start_checks_misp_once_on_the_start_up_thread(tmp_path: Path) -> None:
    """The MISP check runs once, during run(), on the thread that starts the service."""
    app = make_app(write_config(tmp_path))
    try:
        assert app.misp is None or app.misp.checks == 0
        app.run()
        assert app.misp.checks == 1
    finally:
        app.destroy()


def test_a_refused_api_key_is_an_error_at_start_and_the_service_runs_on(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """With MISP up and refusing the key, the start logs one ERROR that says so (without the key), and the
    service registers and answers misp_refused."""
    from dxlmisp_devstack.misp.models import MispModels
    from dxlmisp_devstack.misp.server import serve as serve_misp
    from dxlmispservice.misp import MispConnection

    def table(names: Any, **options: Any) -> dict[str, Any]:
        return {name: (lambda misp, payload: misp.call(lambda m: m.get_user())) for name in names}

    with serve_misp(MispModels(), admin_key="a" * 40) as server:
        config = write_config(tmp_path, "apiNames=get_user", host=server.url)
        app = make_app(config, misp_client_factory=MispConnection, table_builder=table)
        try:
            with caplog.at_level(logging.INFO, logger="dxlmispservice"):
                app.run()
            errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "dxlmispservice.misp"]
            assert len(errors) == 1 and "refused the service's API key" in errors[0].getMessage()
            assert KEY not in caplog.text
            response = answer(app, f"{SERVICE}/get_user", b"{}")
            assert isinstance(response, ErrorResponse) and response.error_code == MispRefused.code
        finally:
            app.destroy()


def test_forwarders_start_after_connect_and_stop_first(tmp_path: Path) -> None:
    """Forwarders start once connected, publish DXL events as JSON, and stop before the client is destroyed."""
    log: list[str] = []

    def forwarders(settings: Any, misp: Any, publisher: Any) -> list[FakeForwarder]:
        return [FakeForwarder("zmq", publisher, log), FakeForwarder("feed", publisher, log)]

    app = make_app(write_config(tmp_path), forwarders_factory=forwarders)
    app.run()
    client = FakeDxlClient.instances[0]
    client.log = log
    assert log == ["start zmq", "start feed"]
    assert [(e.destination_topic, json.loads(e.payload)) for e in client.events] == [
        ("/test/zmq", {"from": "zmq"}), ("/test/feed", {"from": "feed"})]
    app.destroy()
    assert log == ["start zmq", "start feed", "stop feed", "stop zmq", "destroy"]


def test_tcp_nodelay_set_on_connect_and_reconnect(tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """The broker socket gets TCP_NODELAY at connect, and a new socket gets it on reconnect."""
    app = make_app(write_config(tmp_path))
    try:
        app.run()
        assert tcp_nodelay_enabled(tcp_pair[0])
        paho = FakeDxlClient.instances[0]._client
        with socket.create_server(("127.0.0.1", 0)) as listener:
            fresh = socket.create_connection(listener.getsockname())
            try:
                assert not tcp_nodelay_enabled(fresh)
                paho._sock = fresh
                paho._call_socket_open()  # what paho does on every reconnect
                assert tcp_nodelay_enabled(fresh)
            finally:
                fresh.close()
    finally:
        app.destroy()


def test_enable_tcp_nodelay_on_tcp_and_non_tcp(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """enable_tcp_nodelay sets the option on a TCP socket and reports False on a Unix socket."""
    client, _server = tcp_pair
    assert enable_tcp_nodelay(client) and tcp_nodelay_enabled(client)
    left, right = socket.socketpair()
    with left, right:
        assert enable_tcp_nodelay(left) is False


def test_set_tcp_nodelay_hook_chains_and_is_installed_once() -> None:
    """The reconnect hook keeps an earlier on_socket_open and is not stacked when set again."""
    seen: list[Any] = []

    class Client:
        _client = PahoClient()

    Client._client.on_socket_open = lambda client, userdata, sock: seen.append(sock)
    assert set_tcp_nodelay(Client) is False  # not connected yet
    hook = Client._client.on_socket_open
    set_tcp_nodelay(Client)
    assert Client._client.on_socket_open is hook
    left, right = socket.socketpair()
    with left, right:
        hook(Client._client, None, left)
    assert seen == [left]


def test_publisher_sends_compact_json_event() -> None:
    """dxl_publisher sends one DXL event with the payload as compact JSON."""
    client = FakeDxlClient(None)
    dxl_publisher(client)("/t", {"a": [1, 2], "b": "é"})
    (event,) = client.events
    assert (event.destination_topic, event.payload) == ("/t", '{"a":[1,2],"b":"é"}'.encode())


def test_missing_config_files_are_copied_from_package(tmp_path: Path) -> None:
    """An empty config dir gets the package's default files; the start then stops on the missing host."""
    target = tmp_path / "fresh"
    app = make_app(target)
    try:
        with pytest.raises(ConfigError) as caught:
            app.run()
        assert "[General] host" in caught.value.message
    finally:
        app.destroy()
    for name in ("dxlclient.config", "dxlmispservice.config", "logging.config"):
        assert filecmp.cmp(target / name, PACKAGE_CONFIG / name, shallow=False)


def test_repo_config_templates_match_package_defaults() -> None:
    """config/ holds the same templates as the package's _config/app."""
    for name in ("dxlclient.config", "dxlmispservice.config", "logging.config"):
        assert filecmp.cmp(ROOT / "config" / name, PACKAGE_CONFIG / name, shallow=False), name


def test_signal_while_starting_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM during the start aborts it; serve returns 0 and destroys the app."""
    class App:
        destroyed = False
        _app_config_path = "x"

        def run(self) -> None:
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("the signal did not interrupt the start")

        def destroy(self) -> None:
            App.destroyed = True

    stopper = service_main.Stopper()
    restore = stopper.install()
    try:
        assert service_main.serve(App(), stopper) == service_main.EXIT_OK  # type: ignore[arg-type]
    finally:
        restore()
    assert App.destroyed and stopper.event.is_set()


def test_signal_while_running_stops_cleanly() -> None:
    """SIGTERM once running sets the stop event; serve returns 0 and destroys the app."""
    class App:
        destroyed = False
        _app_config_path = "x"

        def run(self) -> None:
            pass

        def destroy(self) -> None:
            App.destroyed = True

    stopper = service_main.Stopper()
    restore = stopper.install()
    try:
        original_wait = stopper.event.wait

        def wait(timeout: float | None = None) -> bool:
            signal.raise_signal(signal.SIGTERM)
            return original_wait(timeout)

        stopper.event.wait = wait  # type: ignore[method-assign]
        assert service_main.serve(App(), stopper) == service_main.EXIT_OK  # type: ignore[arg-type]
    finally:
        restore()
    assert App.destroyed


def test_main_exits_2_on_config_error(tmp_path: Path) -> None:
    """python -m dxlmispservice with a bad config exits 2 and logs the section and key."""
    write_config(tmp_path, "apiNames=new_event\nrequestTimeout=soon")
    done = subprocess.run([sys.executable, "-m", "dxlmispservice", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={"TEST_MISP_KEY": KEY, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "[General] requestTimeout" in done.stdout + done.stderr


def test_admin_method_is_refused_unless_allowed_and_then_warned(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """get_sync_config stops the start by default; with allowAdminApis=true the start warns naming it."""
    from dxlmispservice.api import topics

    app = make_app(write_config(tmp_path / "off", "apiNames=add_event,get_sync_config"),
                   table_builder=topics.build_table)
    try:
        with pytest.raises(ConfigError, match="allowAdminApis=true"):
            app.run()
    finally:
        app.destroy()
    caplog.set_level(logging.WARNING, logger="dxlmispservice.app")
    app = make_app(write_config(tmp_path / "on", "apiNames=add_event,get_sync_config\nallowAdminApis=true"),
                   table_builder=topics.build_table)
    try:
        app.run()
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("admin method get_sync_config" in m for m in warned)
        assert not any("add_event" in m for m in warned)
    finally:
        app.destroy()


def test_a_config_dir_that_does_not_exist_is_refused_not_created(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """python -m dxlmispservice on a missing directory exits with the config status, says so, creates nothing."""
    missing = tmp_path / "no-such-dir"
    assert service_main.main([str(missing)]) == service_main.EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err and not missing.exists()


@pytest.mark.parametrize("bad, words", [
    (f"\n{KEY}\n", "line(s) 6 are neither 'key = value' nor a [section] header"),
    (f"[Other]\napiKey={KEY}\n[Other]\n", "section 'Other' already exists"),
    (f"\n[Proxies]\nhttp={KEY}\n", "[Proxies] http: '<redacted>' is not a proxy URL"),
])
def test_a_broken_config_line_is_named_by_number_never_quoted(tmp_path: Path, bad: str, words: str) -> None:
    """python -m dxlmispservice with a line that holds the key but breaks the file names the line or key,
    exits 2, and prints no part of the key."""
    write_config(tmp_path, "apiNames=new_event", extra=bad)
    done = subprocess.run([sys.executable, "-m", "dxlmispservice", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={"TEST_MISP_KEY": KEY, "PATH": "/usr/bin:/bin"})
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert words in output and KEY not in output and KEY[:12] not in output


def test_config_error_text_says_where_without_the_line() -> None:
    """A line before any section is named by file and number only."""
    exc = configparser.MissingSectionHeaderError("f.config", 1, f"{KEY}\n")
    assert service_main.config_error_text(exc) == "f.config line 1 comes before any [section] header"
