"""Resilience over the real stack: MISP going away and coming back under a running service, serviceUniqueId
keeping instances apart, and a concurrent burst of requests each answered with its own answer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dxlclient.message import Message, Request
from pymisp import PyMISP

from dxlmisp_devstack.testing import Requester, StackHandle, dead_url, stop_process
from dxlmispservice.names import SERVICE_TYPE, request_topic, service_type
from tests.e2e.helpers import Collect

CHECKOUT = Path(__file__).resolve().parents[2]
MISP_READY = "misp ready "
QUIET = {"zeroMqNotificationTopics": None, "zeroMqPort": None}


class MispServer:
    """``python -m dxlmisp_devstack.misp.server`` on its own SQLite file, started and stopped by PID on one port."""

    def __init__(self, devstack: StackHandle, db: Path, port: int = 0) -> None:
        self.stack, self.db, self.port = devstack, db, port
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        """Start it (on the port it had before, if any) and return its URL once it serves."""
        env = dict(os.environ, DEVSTACK_MISP_ADMIN_KEY=self.stack.info["misp_api_key"],
                   DEVSTACK_MISP_READONLY_KEY=self.stack.info["misp_readonly_api_key"],
                   PYTHONPATH=os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH", "")) if p))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dxlmisp_devstack.misp.server", "--port", str(self.port), "--db", str(self.db)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(MISP_READY):
            self.stop()
            raise RuntimeError(f"the MISP server did not start: {line!r}")
        self.url = line[len(MISP_READY):].strip()
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        return self.url

    def stop(self) -> None:
        """Stop it by PID."""
        if self.process is not None:
            stop_process(self.process)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def pymisp(self) -> PyMISP:
        """PyMISP straight on this server."""
        return PyMISP(self.url, self.stack.info["misp_api_key"], ssl=False)


@pytest.fixture
def own_misp(devstack: StackHandle, tmp_path: Path) -> Iterator[MispServer]:
    """A MISP server of this test's own (not the stack's), stopped at the end."""
    server = MispServer(devstack, tmp_path / "misp.sqlite")
    try:
        yield server
    finally:
        server.stop()


def variant_dir(devstack: StackHandle, directory: Path, unique_id: str, **general: str) -> Path:
    """A service config dir for the stack's fabric under ``unique_id``, without notifications or feed."""
    return devstack.config_dir(directory, {"General": {**QUIET, "serviceUniqueId": unique_id, **general},
                                        "Feed": {"enabled": "false"}})


# --- MISP down, then back -------------------------------------------------------------------------------------
def test_service_registers_while_misp_is_down_and_serves_once_it_is_up(
        devstack: StackHandle, dxl_requester: Requester, own_misp: MispServer, tmp_path: Path) -> None:
    """Started before its MISP, the service registers and answers misp_unavailable, then serves once MISP is up."""
    host = dead_url()  # nothing listens there yet: MISP starts on that port later
    own_misp.port = int(host.rstrip("/").rsplit(":", 1)[1])
    config = variant_dir(devstack, tmp_path / "config", "e2e-late-misp", host=host)
    topic = request_topic("new_event", "e2e-late-misp")
    with devstack.run_service(config) as service:
        down = dxl_requester.request(topic, {"info": "e2e while MISP is down"})
        assert (down.ok, down.error_code) == (False, 4)
        own_misp.start()
        up = dxl_requester.request(topic, {"info": "e2e once MISP is up"})
        assert up.ok, up.error_message
        assert own_misp.pymisp().get_event(up.payload["Event"]["id"])["Event"]["info"] == "e2e once MISP is up"
        assert service.process.poll() is None


def test_misp_going_away_and_back_needs_no_service_restart(
        devstack: StackHandle, dxl_requester: Requester, own_misp: MispServer, tmp_path: Path) -> None:
    """With MISP stopped a served request answers misp_unavailable; restarted on its port, MISP is served again."""
    own_misp.start()
    config = variant_dir(devstack, tmp_path / "config", "e2e-misp-back", host=own_misp.url)
    with devstack.run_service(config) as service:
        made = dxl_requester.request(request_topic("new_event", "e2e-misp-back"), {"info": "e2e before the outage"})
        assert made.ok, made.error_message
        get = {"event_id": made.payload["Event"]["id"]}
        own_misp.stop()
        down = dxl_requester.request(request_topic("get_event", "e2e-misp-back"), get)
        assert (down.ok, down.error_code, down.payload["error"]) == (False, 4, "misp_unavailable")
        own_misp.start()
        back = dxl_requester.request(request_topic("get_event", "e2e-misp-back"), get)
        assert back.ok, back.error_message
        assert back.payload["Event"]["uuid"] == made.payload["Event"]["uuid"]
        assert service.process.poll() is None


# --- serviceUniqueId ----------------------------------------------------------------------------------------
def test_service_unique_id_names_the_service_type_and_every_topic(
        devstack: StackHandle, dxl_requester: Requester, tmp_path: Path) -> None:
    """With serviceUniqueId the instance registers <type>/<id> with only <type>/<id>/<name> topics and answers
    there; the plain topic of a name only it serves gets no answer."""
    unique_id = "e2e-unique"
    config = variant_dir(devstack, tmp_path / "config", unique_id, apiNames="new_event,get_object")
    with devstack.run_service(config) as service:
        registered = dxl_requester.services(service_type(unique_id))
        assert sorted(registered[service.service_guid]["requestChannels"]) == \
            sorted(request_topic(name, unique_id) for name in ("new_event", "get_object"))
        assert service.service_guid not in dxl_requester.services(SERVICE_TYPE)
        made = dxl_requester.request(request_topic("new_event", unique_id), {"info": "e2e unique id"})
        assert made.ok and devstack.misp().get_event(made.payload["Event"]["id"])["Event"]["info"] == "e2e unique id"
        missing = dxl_requester.request(request_topic("get_object", unique_id), {"misp_object": 424242})
        assert (missing.ok, missing.error_code) == (False, 3)
        unserved = dxl_requester.request(request_topic("get_object"), {"misp_object": 424242}, timeout=10)
        assert (unserved.ok, unserved.error_code) == (False, 0x80000001)  # no service serves the plain topic


# --- a concurrent burst ---------------------------------------------------------------------------------------
@pytest.fixture
def spare_requesters(devstack: StackHandle) -> Iterator[list[Requester]]:
    """Three more DXL clients, each with its own connection; destroyed in parallel (each takes ~1 s)."""
    roles = ("spare1", "spare2", "spare3")
    made: dict[str, Requester] = {}

    def connect(role: str) -> None:
        made[role] = Requester(devstack.info["client_configs"][role])

    run_parallel(connect, roles)
    try:
        yield [made[role] for role in roles]
    finally:
        run_parallel(lambda role: made[role].close(), [role for role in roles if role in made])


def run_parallel(fn: Any, items: Any) -> None:
    """``fn(item)`` for each item, each on its own thread; waits for all."""
    threads = [threading.Thread(target=fn, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_concurrent_burst_gets_each_request_its_own_answer(
        devstack: StackHandle, dxl_requester: Requester, spare_requesters: list[Requester]) -> None:
    """64 asynchronous requests (writes and reads) from 4 clients on 4 threads each get the answer to their own
    payload, and MISP holds exactly the events the writes asked for."""
    misp = devstack.misp()
    existing = [misp.add_event({"info": f"e2e burst seed {n}", "distribution": 0})["Event"] for n in range(8)]
    clients = [dxl_requester, *spare_requesters]
    per_client = 16
    expected: dict[str, tuple[str, Any]] = {}  # request message id -> (what, expected value)
    callbacks = [Collect(per_client) for _ in clients]
    lock = threading.Lock()

    def send(number: int, client: Requester, callback: Collect) -> None:
        for index in range(per_client):
            if index % 2:
                target = existing[(number * per_client + index) % len(existing)]
                request = Request(request_topic("get_event"))
                request.payload = json.dumps({"event_id": target["id"]}).encode()
                check = ("uuid", target["uuid"])
            else:
                info = f"e2e burst {number}-{index}"
                request = Request(request_topic("new_event"))
                request.payload = json.dumps({"info": info, "distribution": 0}).encode()
                check = ("info", info)
            with lock:
                expected[request.message_id] = check
            client.client.async_request(request, callback)

    run_parallel(lambda n: send(n, clients[n], callbacks[n]), range(len(clients)))
    for callback in callbacks:
        assert callback.done.wait(60), f"{len(callback.responses)} of {per_client} answers"
    answers = {mid: r for callback in callbacks for mid, r in callback.responses.items()}
    assert set(answers) == set(expected) and len(expected) == len(clients) * per_client
    for message_id, (field, value) in expected.items():
        response = answers[message_id]
        assert response.message_type == Message.MESSAGE_TYPE_RESPONSE, response.error_message
        assert json.loads(response.payload)["Event"][field] == value
    seeded = {event["uuid"] for event in existing}
    written = sorted(e["info"] for e in misp.search_index() if e["uuid"] not in seeded)
    assert written == sorted(value for field, value in expected.values() if field == "info")
