"""``python -m dxlmisp_devstack.misp.server`` as a child process: ready line, clean stop, persistence, ZeroMQ."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import zmq

ADMIN_KEY = "cli-admin-key-" + "e" * 26
READONLY_KEY = "cli-readonly-key-" + "f" * 23


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """The server process, started with the keys in its environment; ``.url`` once it is ready."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        environment = dict(os.environ, DEVSTACK_MISP_ADMIN_KEY=ADMIN_KEY, DEVSTACK_MISP_READONLY_KEY=READONLY_KEY)
        environment.update(env or {})
        self.process = subprocess.Popen([sys.executable, "-m", "dxlmisp_devstack.misp.server", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, text=True)
        self.url = ""

    def ready(self) -> Child:
        """Wait for the one ready line and keep the URL it names."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("misp ready "), (line, self.stop())
        self.url = line[len("misp ready "):].strip()
        return self

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Signal the process by its PID; return its exit code and what it printed after the ready line."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            out, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err


@pytest.fixture()
def children() -> Iterator[list[Child]]:
    """Every server a test starts, stopped by PID afterwards."""
    started: list[Child] = []
    yield started
    for child in started:
        child.stop(signal.SIGKILL)


def start(children: list[Child], *args: str, env: dict[str, str] | None = None) -> Child:
    child = Child(*args, env=env)
    children.append(child)
    return child


def post(url: str, path: str, body: object, key: str = ADMIN_KEY) -> requests.Response:
    return requests.post(url + path, json=body, headers={"Authorization": key, "Accept": "application/json"},
                         timeout=5)


def test_ready_line_and_clean_stop_on_sigterm(children: list[Child]) -> None:
    """It prints exactly one 'misp ready <url>' line, serves, and exits 0 on SIGTERM printing nothing else."""
    child = start(children).ready()
    assert child.url.startswith("http://127.0.0.1:")
    assert post(child.url, "/events/add", {"info": "cli"}).json()["Event"]["info"] == "cli"
    code, out, _ = child.stop(signal.SIGTERM)
    assert (code, out) == (0, "")


def test_sigint_stops_cleanly(children: list[Child]) -> None:
    """SIGINT stops it as cleanly as SIGTERM."""
    child = start(children).ready()
    assert child.stop(signal.SIGINT)[0] == 0


def test_data_survives_a_restart(children: list[Child], tmp_path: Path) -> None:
    """With --db, what one run stored is served by the next run."""
    db = str(tmp_path / "misp.sqlite3")
    first = start(children, "--db", db).ready()
    event = post(first.url, "/events/add", {"info": "kept", "Tag": [{"name": "t"}]}).json()["Event"]
    assert first.stop()[0] == 0
    second = start(children, "--db", db).ready()
    view = requests.get(f"{second.url}/events/view/{event['uuid']}", headers={"Authorization": ADMIN_KEY}, timeout=5)
    assert view.json()["Event"]["Tag"][0]["name"] == "t"


def test_keys_from_the_environment(children: list[Child]) -> None:
    """The admin key writes, the read-only key reads but may not write; without an admin key it will not start."""
    child = start(children).ready()
    assert post(child.url, "/events/restSearch", {}, key=READONLY_KEY).status_code == 200
    assert post(child.url, "/events/add", {"info": "x"}, key=READONLY_KEY).status_code == 405
    keyless = start(children, env={"DEVSTACK_MISP_ADMIN_KEY": ""})
    out, err = keyless.process.communicate(timeout=10)
    assert keyless.process.returncode == 2 and "DEVSTACK_MISP_ADMIN_KEY" in err and out == ""


def test_zeromq_notifications(children: list[Child]) -> None:
    """With --zmq-port, a change arrives on a real ZeroMQ SUB socket as '<topic> <json>' with MISP's action."""
    port = free_port()
    child = start(children, "--zmq-port", str(port), "--zmq-heartbeat", "0.05").ready()
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, "misp_json")
    sub.connect(f"tcp://127.0.0.1:{port}")
    try:
        sub.recv_string()  # a heartbeat: the subscription is in place
        uuid = post(child.url, "/events/add", {"info": "zmq"}).json()["Event"]["uuid"]
        while True:
            topic, _, payload = sub.recv_string().partition(" ")
            if topic == "misp_json_event":
                break
        message = json.loads(payload)
        assert (message["action"], message["Event"]["uuid"]) == ("add", uuid)
    finally:
        sub.close()
        context.term()
