"""dxlmisp_devstack.testing: config-dir variants, and running_stack, Requester and EventWaiter on a real stack."""
from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dxlclient.callbacks import RequestCallback
from dxlclient.message import ErrorResponse, Request, Response
from dxlclient.service import ServiceRegistrationInfo

from dxlmisp_devstack.testing import (
    Reply, Requester, StackHandle, dead_url, make_config_dir, read_service_config, running_stack, stop_process,
)

ECHO_TYPE = "/devstack/testing/echo"
ECHO_TOPIC = f"{ECHO_TYPE}/echo"


def write_config_dir(directory: Path) -> Path:
    """A minimal service config dir with a [Feed] state file."""
    directory.mkdir()
    (directory / "dxlclient.config").write_text("[Certs]\n")
    (directory / "logging.config").write_text("[loggers]\nkeys=root\n")
    (directory / "dxlmispservice.config").write_text(
        "[General]\nhost=http://127.0.0.1:1/\napiKey=env:KEY\nserviceUniqueId=\n\n"
        "[Feed]\nenabled=true\nstateFile=/elsewhere/state.json\n"
    )
    return directory


def test_make_config_dir_copies_and_overrides(tmp_path: Path) -> None:
    """A variant keeps every file, applies overrides with their case, drops None keys, adds sections."""
    source = write_config_dir(tmp_path / "source")
    target = make_config_dir(source, tmp_path / "variant", {
        "General": {"serviceUniqueId": "blue", "maxResponseSize": "2048", "apiKey": None},
        "Proxies": {"https": "http://127.0.0.1:3128"},
    })
    assert {p.name for p in target.iterdir()} == {"dxlclient.config", "logging.config", "dxlmispservice.config"}
    parser = read_service_config(target)
    assert parser["General"]["serviceUniqueId"] == "blue"
    assert parser["General"]["maxResponseSize"] == "2048"
    assert not parser.has_option("General", "apiKey")
    assert parser["Proxies"]["https"] == "http://127.0.0.1:3128"
    assert read_service_config(source)["General"]["serviceUniqueId"] == ""


def test_make_config_dir_moves_the_feed_state_into_the_variant(tmp_path: Path) -> None:
    """A variant's feed state file lies in the variant dir, never the original's."""
    target = make_config_dir(write_config_dir(tmp_path / "source"), tmp_path / "variant")
    assert read_service_config(target)["Feed"]["stateFile"] == str((tmp_path / "variant" / "feed-state.json").resolve())


def test_make_config_dir_leaves_live_state_and_logs_behind(tmp_path: Path) -> None:
    """A variant copies no feed state file, no half-written temp state and no log of the original."""
    source = write_config_dir(tmp_path / "source")
    for name in ("feed-state.json", ".feed-state-abc.tmp", "service.log"):
        (source / name).write_text("{}")
    target = make_config_dir(source, tmp_path / "variant")
    assert {p.name for p in target.iterdir()} == {"dxlclient.config", "logging.config", "dxlmispservice.config"}


def test_dead_url_refuses_connections() -> None:
    """dead_url names a local port where a connection is refused."""
    url = dead_url()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_stop_process_kills_what_ignores_sigterm() -> None:
    """stop_process SIGKILLs a child that ignores SIGTERM once the timeout has passed."""
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                              "print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"ok\n"
    stop_process(child, timeout=0.2)
    child.stdout.close()
    assert child.returncode == -9


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """running_stack without the service, for this module."""
    with running_stack(tmp_path_factory.mktemp("testing-stack"), service=False) as handle:
        yield handle


class _Echo(RequestCallback):
    """Answers with the request's payload, or an ErrorResponse (code 7) when the payload is b'fail'."""

    def __init__(self, requester: Requester) -> None:
        super().__init__()
        self.requester = requester

    def on_request(self, request: Request) -> None:
        if request.payload == b"fail":
            self.requester.client.send_response(ErrorResponse(request, error_code=7, error_message="failed"))
            return
        response = Response(request)
        response.payload = request.payload
        self.requester.client.send_response(response)


@pytest.fixture(scope="module")
def requester(stack: StackHandle) -> Requester:
    """One requester for the module."""
    return stack.requester()


@pytest.fixture(scope="module")
def echo(stack: StackHandle) -> Requester:
    """A registered echo service on the stack's fabric."""
    server = stack.requester("spare1")
    info = ServiceRegistrationInfo(server.client, ECHO_TYPE)
    info.add_topic(ECHO_TOPIC, _Echo(server))
    server.client.register_service_sync(info, 10)
    return server


def test_running_stack_yields_a_live_stack(stack: StackHandle) -> None:
    """running_stack's handle reads devstack.json, whose processes are alive, and its MISP resets."""
    assert stack.info_path.name == "devstack.json"
    for pid in stack.info["pids"].values():
        os.kill(pid, 0)
    stack.misp().add_event({"info": "to be reset", "distribution": 0})
    stack.reset_misp()
    assert stack.misp().search(controller="events") == []


def test_request_sends_a_dict_as_json(requester: Requester, echo: Requester) -> None:
    """A dict payload goes out as JSON, and the JSON answer is decoded."""
    reply = requester.request(ECHO_TOPIC, {"a": [1, "b"]}, timeout=10)
    assert reply == Reply(True, {"a": [1, "b"]}, 0, "", b'{"a": [1, "b"]}')


def test_request_sends_raw_text_unchanged(requester: Requester, echo: Requester) -> None:
    """A str payload goes out as is, and a non-JSON answer has payload None and its raw bytes."""
    reply = requester.request(ECHO_TOPIC, "{not json", timeout=10)
    assert reply.ok and reply.payload is None and reply.raw == b"{not json"


def test_request_reports_an_error_response(requester: Requester, echo: Requester) -> None:
    """An ErrorResponse becomes a Reply with ok False, its code and its message."""
    reply = requester.request(ECHO_TOPIC, b"fail", timeout=10)
    assert (reply.ok, reply.error_code, reply.error_message) == (False, 7, "failed")


def test_request_without_a_service_gets_unable_to_locate(requester: Requester) -> None:
    """With no service on a topic, the reply is the broker's 0x80000001 error, as on a real fabric."""
    reply = requester.request("/devstack/testing/nobody", {}, timeout=10)
    assert (reply.ok, reply.error_code, reply.error_message) == (False, 0x80000001, "unable to locate service for request")


def test_services_lists_a_registered_service(requester: Requester, echo: Requester) -> None:
    """Requester.services returns the registry's entry for a registered service type, and none for another."""
    services = requester.services(ECHO_TYPE)
    assert [entry["serviceType"] for entry in services.values()] == [ECHO_TYPE]
    assert requester.services("/devstack/testing/absent") == {}


def test_event_waiter_collects_in_order_and_waits(requester: Requester, echo: Requester) -> None:
    """An EventWaiter on a wildcard topic keeps events in order with their topics; wait_for finds one."""
    with requester.event_waiter("/devstack/testing/events/#") as waiter:
        publisher = echo
        for n in range(3):
            publisher.publish(f"/devstack/testing/events/{n}", {"n": n})
        assert waiter.wait_for(lambda e: e["n"] == 2, timeout=10) == {"n": 2}
        assert waiter.events == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert waiter.topics == [f"/devstack/testing/events/{n}" for n in range(3)]


def test_event_waiter_times_out(requester: Requester) -> None:
    """wait_for raises TimeoutError when no event matches."""
    with requester.event_waiter("/devstack/testing/silent") as waiter:
        with pytest.raises(TimeoutError):
            waiter.wait_for(lambda e: True, timeout=0.2)


def test_config_dir_variant_of_the_stack(stack: StackHandle, tmp_path: Path) -> None:
    """StackHandle.config_dir copies the stack's service config dir with overrides, e.g. MISP on a dead port."""
    url = dead_url()
    variant = stack.config_dir(tmp_path / "variant", {"General": {"host": url}})
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(variant / "dxlmispservice.config")
    assert parser["General"]["host"] == url
    assert (variant / "dxlclient.config").read_text() == (
        Path(stack.info["service_config_dir"]) / "dxlclient.config").read_text()
