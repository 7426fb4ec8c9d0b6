"""``python -m dxlmisp_devstack up``: the ready line, devstack.json, MISP and the fabric it starts, and a clean stop."""
from __future__ import annotations

import configparser
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dxlclient.callbacks import RequestCallback
from dxlclient.message import Request, Response
from dxlclient.service import ServiceRegistrationInfo

from dxlmisp_devstack.stack import ZMQ_TOPICS

CHECKOUT = Path(__file__).resolve().parents[2]
from dxlmisp_devstack.testing import StackHandle, read_service_config, running_stack, stop_process

REQUIRED_KEYS = {
    "dxlclient_config", "misp_url", "misp_api_key", "misp_readonly_api_key", "misp_zmq_port",
    "service_config_dir", "feed_state_file", "broker_port", "ca_cert", "client_configs", "pids",
}
SERVICE_TYPE = "/opendxl-misp/service/misp-api"
KEPT = "a file that was here before the stack\n"


@dataclass
class Up:
    """A ``python -m dxlmisp_devstack up`` child and what it printed."""

    process: subprocess.Popen[bytes]
    workdir: Path
    line: str


def start_up(workdir: Path, *extra: str) -> Up:
    """Run ``python -m dxlmisp_devstack up --workdir workdir`` and read its first stdout line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dxlmisp_devstack", "up", "--workdir", str(workdir), *extra],
        stdout=subprocess.PIPE, stderr=open(workdir.parent / f"{workdir.name}.stderr", "wb"), cwd=str(CHECKOUT),
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    return Up(process, workdir, line)


def stop_up(up: Up) -> None:
    """Stop the child by PID and close its pipe."""
    stop_process(up.process, timeout=30)
    if up.process.stdout is not None:
        up.process.stdout.close()


def alive(pid: int) -> bool:
    """Whether ``pid`` names a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One stack, with the service, for the module."""
    workdir = tmp_path_factory.mktemp("stack")
    running = start_up(workdir)
    try:
        yield running
    finally:
        stop_up(running)


@pytest.fixture(scope="module")
def handle(up: Up) -> Iterator[StackHandle]:
    """A StackHandle on the module's stack."""
    assert up.line.startswith("devstack ready "), up.line
    stack = StackHandle(up.line.split(" ", 2)[2].strip())
    yield stack
    stack.close()


def test_prints_one_ready_line_naming_devstack_json(up: Up) -> None:
    """The first stdout line is `devstack ready <DIR>/devstack.json`, and the file is there."""
    assert up.line == f"devstack ready {up.workdir.resolve() / 'devstack.json'}\n"
    assert (up.workdir / "devstack.json").is_file()


def test_devstack_json_has_every_key(handle: StackHandle) -> None:
    """devstack.json has every documented key, and the files and PIDs it names exist."""
    info = handle.info
    assert REQUIRED_KEYS <= set(info)
    assert {"requester", "service", "registry"} <= set(info["client_configs"])
    for path in [info["dxlclient_config"], info["ca_cert"], *info["client_configs"].values()]:
        assert Path(path).is_file(), path
    assert set(info["pids"]) == {"broker", "registry", "misp", "service"}
    assert all(alive(pid) for pid in info["pids"].values())
    assert info["misp_url"].startswith("http://127.0.0.1:")


def test_api_keys_are_made_per_run_and_stay_off_command_lines(handle: StackHandle) -> None:
    """Both MISP keys are 40 hex characters, differ, and appear on no child's command line."""
    admin, readonly = handle.info["misp_api_key"], handle.info["misp_readonly_api_key"]
    assert re.fullmatch(r"[0-9a-f]{40}", admin) and re.fullmatch(r"[0-9a-f]{40}", readonly)
    assert admin != readonly
    for pid in handle.info["pids"].values():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert admin not in cmdline and readonly not in cmdline


def test_pymisp_writes_with_the_admin_key(handle: StackHandle) -> None:
    """PyMISP with the admin key adds an event and reads it back."""
    misp = handle.misp()
    added = misp.add_event({"info": "devstack stack test", "distribution": 0}, pythonify=True)
    fetched = misp.get_event(added.id, pythonify=True)
    assert fetched.info == "devstack stack test"


def test_readonly_key_reads_but_is_refused_writing(handle: StackHandle) -> None:
    """PyMISP with the read-only key can search; adding an event gets MISP's 405 'no permission' and adds nothing."""
    misp = handle.misp(readonly=True)
    before = misp.search(controller="events", eventinfo="not allowed")
    refused = misp.add_event({"info": "not allowed"})
    assert refused["errors"][0] == 405
    assert "You do not have permission" in json.dumps(refused["errors"][1])
    assert misp.search(controller="events", eventinfo="not allowed") == before == []


class _Echo(RequestCallback):
    def __init__(self, client: object) -> None:
        super().__init__()
        self.client = client

    def on_request(self, request: Request) -> None:
        response = Response(request)
        response.payload = b"echo:" + request.payload
        self.client.send_response(response)  # type: ignore[attr-defined]


def test_fabric_registers_a_service_and_round_trips_a_request(handle: StackHandle) -> None:
    """A dxlclient service registers through the stand-in, and a requester gets its answer."""
    server = handle.requester("spare1")
    requester = handle.requester()
    info = ServiceRegistrationInfo(server.client, "/devstack/test/echo")
    info.add_topic("/devstack/test/echo/ping", _Echo(server.client))
    server.client.register_service_sync(info, 10)
    assert info.service_id in requester.services("/devstack/test/echo")
    reply = requester.request("/devstack/test/echo/ping", b"hello", timeout=10)
    assert reply.ok and reply.raw == b"echo:hello"


def test_fabric_carries_events(handle: StackHandle) -> None:
    """An event published by one client reaches a subscriber on another."""
    with handle.requester().event_waiter("/devstack/test/event") as waiter:
        handle.requester("spare2").publish("/devstack/test/event", {"n": 1})
        assert waiter.wait_for(lambda event: event == {"n": 1}, timeout=10) == {"n": 1}


def test_service_config_dir_is_ready_to_run(handle: StackHandle) -> None:
    """service_config_dir holds the three config files; the key comes from the environment, not the file."""
    from dxlmispservice.settings import Settings

    directory = Path(handle.info["service_config_dir"])
    assert {"dxlclient.config", "dxlmispservice.config", "logging.config"} <= {p.name for p in directory.iterdir()}
    text = (directory / "dxlmispservice.config").read_text()
    assert handle.info["misp_api_key"] not in text
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    settings = Settings.from_parser(parser, environ=handle.service_env(), base_dir=str(directory))
    assert settings.misp_url.rstrip("/") == handle.info["misp_url"].rstrip("/")
    assert settings.api_key == handle.info["misp_api_key"]
    assert settings.zeromq is not None and set(settings.zeromq.topics) == set(ZMQ_TOPICS)
    assert settings.zeromq.port == handle.info["misp_zmq_port"]
    assert settings.feed is not None and settings.feed.interval <= 2
    assert settings.feed.state_file == handle.info["feed_state_file"]
    assert {"new_event", "add_internal_comment", "tag", "sighting", "search", "fetch_events"} <= set(settings.api_names)


def test_stack_service_answers_a_request(handle: StackHandle) -> None:
    """The service the stack started is registered and answers new_event over the fabric."""
    requester = handle.requester()
    assert requester.services(SERVICE_TYPE)
    reply = requester.request(f"{SERVICE_TYPE}/new_event",
                              {"distribution": 0, "info": "from the stack test", "analysis": 0, "threat_level_id": 3})
    assert reply.ok, reply
    assert reply.payload["Event"]["info"] == "from the stack test"


def test_sigterm_stops_every_pid_and_keeps_other_files(tmp_path: Path) -> None:
    """On SIGTERM the stack stops every PID it listed, exits 0 and leaves a pre-existing file alone."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "keep.txt").write_text(KEPT)
    up = start_up(workdir, "--no-service")
    try:
        assert up.line.startswith("devstack ready "), up.line
        pids = json.loads((workdir / "devstack.json").read_text())["pids"]
        assert pids and all(alive(pid) for pid in pids.values())
        os.kill(up.process.pid, signal.SIGTERM)
        assert up.process.wait(30) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [name for name, pid in pids.items() if alive(pid)] == []
        assert (workdir / "keep.txt").read_text() == KEPT
        assert up.process.stdout is not None and up.process.stdout.read() == b""  # exactly one line
    finally:
        stop_up(up)


def test_up_without_workdir_removes_the_temp_dir_it_made(tmp_path: Path) -> None:
    """`up` with no --workdir works in a temp dir of its own and removes it after SIGINT."""
    process = subprocess.Popen([sys.executable, "-m", "dxlmisp_devstack", "up", "--no-service"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, cwd=str(CHECKOUT))
    up = Up(process, tmp_path, process.stdout.readline().decode() if process.stdout else "")
    try:
        assert up.line.startswith("devstack ready "), up.line
        workdir = Path(up.line.split(" ", 2)[2].strip()).parent
        assert workdir.is_dir()
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(30) == 0
        assert not workdir.exists()
    finally:
        stop_up(up)


def test_demo_runs_the_update_event_sample_and_cleans_up() -> None:
    """`demo` prints the sample's five answers in order, exits with its status 0, and removes its temp dir."""
    done = subprocess.run([sys.executable, "-m", "dxlmisp_devstack", "demo"], capture_output=True, text=True,
                          cwd=str(CHECKOUT), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    headers = [line for line in done.stdout.splitlines() if line.startswith("Response to the ")]
    assert headers == [
        "Response to the new event request:", "Response to the add internal comment request:",
        "Response to the tag request:", "Response to the sighting request:",
        "Response to the search request for the new MISP event:",
    ]
    used = re.search(r"(/\S+)/clients/requester\.config", done.stderr)
    assert used is not None, done.stderr[-2000:]
    assert not Path(used.group(1)).exists()


def test_misp_tls_serves_https_that_verifies_against_the_stack_ca(tmp_path: Path) -> None:
    """With --misp-tls MISP is https, verifies with ca_cert only, and the stack's service reaches it so."""
    import requests
    from pymisp import PyMISP

    with running_stack(tmp_path / "tls", misp_tls=True) as stack:
        info = stack.info
        assert info["misp_url"].startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(info["misp_url"] + "/servers/getVersion", timeout=10,
                         headers={"Authorization": info["misp_api_key"], "Accept": "application/json"})
        added = PyMISP(info["misp_url"], info["misp_api_key"], ssl=info["ca_cert"]).add_event(
            {"info": "over https", "distribution": 0}, pythonify=True)
        general = read_service_config(info["service_config_dir"])["General"]
        assert (general["verifyCertificate"], general["verifyCertBundle"]) == ("true", info["ca_cert"])
        reply = stack.requester().request(f"{SERVICE_TYPE}/get_event", {"event_id": added.id}, timeout=30)
        assert reply.ok, reply
        assert reply.payload["Event"]["info"] == "over https"
