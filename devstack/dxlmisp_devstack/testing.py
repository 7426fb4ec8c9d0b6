"""Helpers that tests and users share: a running dev stack, requests over the real fabric, an event waiter.

- :func:`running_stack` starts the dev stack (:class:`~dxlmisp_devstack.stack.Stack`, each part a child
  process) and yields a :class:`StackHandle`: devstack.json, clients, and the fault hooks (stop and start
  the dev MISP server, delay a route, read its request log, restart the broker).
- :class:`Requester` sends requests over the real DXL fabric: ``request(topic, payload) -> Reply``, where
  ``payload`` is a dict (sent as JSON) or raw ``str``/``bytes`` (sent as is, e.g. malformed JSON).
- :class:`EventWaiter` subscribes to a topic and collects the DXL events that arrive.
- :func:`run_service` starts ``python -m dxlmispservice CONFIGDIR`` and waits until the service is registered.
- :func:`make_config_dir` copies a service config dir and overrides keys of ``dxlmispservice.config``.

Every process these helpers start is stopped by its PID: SIGTERM, then SIGKILL after a timeout.
"""
from __future__ import annotations

import configparser
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from dxlclient.callbacks import EventCallback
from dxlclient.client import DxlClient
from dxlclient.client_config import DxlClientConfig
from dxlclient.exceptions import WaitTimeoutException
from dxlclient.message import Event, Message, Request
from pymisp import PyMISP

from dxlmispservice.compat.dxlclient import set_tcp_nodelay

from dxlmisp_devstack.fabric.registry import AGE_TOPIC
from dxlmisp_devstack.procs import stop_process
from dxlmisp_devstack.stack import API_KEY_ENV, Stack
from dxlmispservice.names import SERVICE_TYPE, service_type

REGISTRY_QUERY_TOPIC = "/mcafee/service/dxl/svcregistry/query"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    """A DXL answer: ``payload`` is the decoded JSON (None when the body is not JSON), ``raw`` the bytes."""

    ok: bool
    payload: Any
    error_code: int = 0
    error_message: str = ""
    raw: bytes = field(default=b"", repr=False)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8").rstrip("\0"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _encode(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload).encode("utf-8")


class EventWaiter:
    """Collects the DXL events of one topic (wildcards allowed) from the moment it is subscribed."""

    def __init__(self, client: DxlClient, topic: str) -> None:
        self.topic = topic
        self._client = client
        self._condition = threading.Condition()
        self._events: list[Any] = []
        self._topics: list[str] = []
        self._callback = _Collect(self)
        client.add_event_callback(topic, self._callback)  # returns once the broker acknowledged

    def _add(self, event: Event) -> None:
        with self._condition:
            self._events.append(_decode(event.payload or b""))
            self._topics.append(event.destination_topic)
            self._condition.notify_all()

    @property
    def events(self) -> list[Any]:
        """The decoded payloads received so far, in arrival order."""
        with self._condition:
            return list(self._events)

    @property
    def topics(self) -> list[str]:
        """The topic of each received event, parallel to :attr:`events`."""
        with self._condition:
            return list(self._topics)

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """The first event (already received or yet to come) for which ``predicate`` holds; TimeoutError if none."""
        found = self.wait_until(lambda events: any(predicate(e) for e in events), timeout)
        return next(e for e in found if predicate(e))

    def wait_until(self, condition: Callable[[list[Any]], bool], timeout: float = 10.0) -> list[Any]:
        """Wait until ``condition(events so far)`` holds and return those events; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not condition(self._events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching event on {self.topic} within {timeout} s; "
                                       f"got {len(self._events)} events")
                self._condition.wait(remaining)
            return list(self._events)

    def clear(self) -> None:
        """Forget the events received so far."""
        with self._condition:
            self._events.clear()
            self._topics.clear()

    def close(self) -> None:
        """Stop collecting and unsubscribe."""
        self._client.remove_event_callback(self.topic, self._callback)

    def __enter__(self) -> EventWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Collect(EventCallback):
    def __init__(self, waiter: EventWaiter) -> None:
        super().__init__()
        self._waiter = waiter

    def on_event(self, event: Event) -> None:
        self._waiter._add(event)


class Requester:
    """A DxlClient connected over the real fabric with the dxlclient.config at ``config_path``."""

    def __init__(self, config_path: str | os.PathLike[str], *, connect_retries: int = 3) -> None:
        config = DxlClientConfig.create_dxl_config_from_file(os.fspath(config_path))
        config.connect_retries = connect_retries
        self.client = DxlClient(config)
        set_tcp_nodelay(self.client)  # before connect: the hook covers the first socket and every reconnect
        self.client.connect()

    def request(self, topic: str, payload: Any = None, timeout: float = 30.0) -> Reply:
        """Send a request and wait for its answer; ``payload`` is JSON-encoded unless str or bytes.

        Raises TimeoutError when no answer comes in ``timeout`` seconds. A topic that no registered service
        serves is answered by the broker (here its registry stand-in) with the error 0x80000001.
        """
        request = Request(topic)
        request.payload = _encode({} if payload is None else payload)
        try:
            response = self.client.sync_request(request, timeout=timeout)
        except WaitTimeoutException:
            raise TimeoutError(f"no answer on {topic} within {timeout} s") from None
        raw = response.payload or b""
        if response.message_type == Message.MESSAGE_TYPE_ERROR:
            return Reply(False, _decode(raw), int(response.error_code), response.error_message or "", raw)
        return Reply(True, _decode(raw), 0, "", raw)

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Wait until the client is connected (again, after a broker restart); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while not self.client.connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the DXL client did not reconnect within {timeout} s")
            time.sleep(0.05)

    def event_waiter(self, topic: str) -> EventWaiter:
        """A new :class:`EventWaiter` on ``topic``, subscribed before this returns."""
        return EventWaiter(self.client, topic)

    def publish(self, topic: str, payload: Any) -> None:
        """Send one DXL event (JSON-encoded unless str or bytes)."""
        event = Event(topic)
        event.payload = _encode(payload)
        self.client.send_event(event)

    def services(self, service_type: str = SERVICE_TYPE) -> dict[str, Any]:
        """The registry's ``{serviceGuid: registration}`` for ``service_type``."""
        reply = self.request(REGISTRY_QUERY_TOPIC, {"serviceType": service_type}, timeout=10)
        if not reply.ok or not isinstance(reply.payload, dict):
            raise RuntimeError(f"registry query failed: {reply.error_message or reply.raw!r}")
        return dict(reply.payload.get("services") or {})

    def close(self) -> None:
        """Disconnect and release the client."""
        self.client.destroy()

    def __enter__(self) -> Requester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ServiceProcess:
    """A running ``python -m dxlmispservice``: its process, log, service type and registry guid."""

    process: subprocess.Popen[bytes]
    log: Path
    service_type: str
    service_guid: str = ""

    @property
    def pid(self) -> int:
        """The service's process id."""
        return self.process.pid

    def log_text(self) -> str:
        """Everything the service wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Stop the service by PID (SIGTERM, then SIGKILL) and return its exit status."""
        stop_process(self.process, timeout)
        return int(self.process.returncode)


def read_service_config(config_dir: str | os.PathLike[str]) -> configparser.ConfigParser:
    """The ``dxlmispservice.config`` of a config dir, with key case kept."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(Path(config_dir) / "dxlmispservice.config")
    return parser


def make_config_dir(source: str | os.PathLike[str], target: str | os.PathLike[str],
                    overrides: Mapping[str, Mapping[str, str | None]] | None = None) -> Path:
    """Copy the config dir ``source`` to ``target`` and apply ``{section: {key: value}}`` (None drops a key).

    A ``[Feed]`` stateFile is moved into ``target``, so that a variant never shares the original's state;
    the original's live state files and logs are not copied (a variant's feed starts with a first run).
    """
    destination = Path(target)
    shutil.copytree(source, destination, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*state*.json", "*state*.json.*", "*.tmp", "*.log"))
    parser = read_service_config(destination)
    if parser.has_option("Feed", "stateFile"):
        parser["Feed"]["stateFile"] = str(destination.resolve() / "feed-state.json")
    for section, values in (overrides or {}).items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in values.items():
            if value is None:
                parser.remove_option(section, key)
            else:
                parser[section][key] = value
    with open(destination / "dxlmispservice.config", "w") as out:
        parser.write(out)
    return destination


def dead_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _service_type_of(config_dir: str | os.PathLike[str]) -> str:
    unique_id = read_service_config(config_dir).get("General", "serviceUniqueId", fallback="").strip()
    return service_type(unique_id)


@contextmanager
def run_service(config_dir: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                timeout: float = 30.0, wait_registered: bool = True) -> Iterator[ServiceProcess]:
    """Run ``python -m dxlmispservice config_dir``; yield once a new instance of its service is registered.

    ``env`` is added to this process's environment. The registry is queried with the config dir's own
    dxlclient.config. The service is stopped by PID on exit.
    """
    config_dir = Path(config_dir)
    wanted = _service_type_of(config_dir)
    log = config_dir / f"service-{time.time_ns()}.log"
    with Requester(config_dir / "dxlclient.config") as watcher:
        before = set(watcher.services(wanted)) if wait_registered else set()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "dxlmispservice", str(config_dir)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
                start_new_session=True,
            )
        service = ServiceProcess(process, log, wanted)
        try:
            deadline = time.monotonic() + timeout
            while wait_registered and not service.service_guid:
                fresh = set(watcher.services(wanted)) - before
                if fresh:
                    service.service_guid = fresh.pop()
                elif process.poll() is not None:
                    raise RuntimeError(f"the service exited with {process.returncode}:\n{service.log_text()[-3000:]}")
                elif time.monotonic() > deadline:
                    raise TimeoutError(f"the service did not register in {timeout} s:\n{service.log_text()[-3000:]}")
                else:
                    time.sleep(0.02)
        except BaseException:
            service.stop()
            raise
    try:
        yield service
    finally:
        service.stop()


class StackHandle:
    """A running dev stack: ``info`` is its devstack.json."""

    def __init__(self, info_path: str | os.PathLike[str], stack: Stack | None = None) -> None:
        self.info_path = Path(info_path)
        self.info: dict[str, Any] = json.loads(self.info_path.read_text())
        self._stack = stack
        self._requesters: list[Requester] = []

    def misp(self, readonly: bool = False) -> Any:
        """A PyMISP client on the dev MISP server, with the admin key or the read-only one."""
        key = self.info["misp_readonly_api_key" if readonly else "misp_api_key"]
        return PyMISP(self.info["misp_url"], key, ssl=self._verify())

    def _verify(self) -> bool | str:
        return self.info["ca_cert"] if self.info["misp_url"].startswith("https:") else False

    def _dev_route(self, method: str, route: str, body: Any = None) -> Any:
        """Call one of the dev MISP server's ``/devstack/`` routes with the admin key; its JSON answer."""
        response = requests.request(
            method, self.info["misp_url"].rstrip("/") + "/devstack/" + route, json=body, verify=self._verify(),
            timeout=10, headers={"Authorization": self.info["misp_api_key"], "Accept": "application/json"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"devstack/{route} failed: {response.status_code} {response.text[:200]}")
        return response.json()

    def reset_misp(self) -> None:
        """Empty the dev MISP server's events, attributes, objects, sightings and tags, its request log and
        its route delays."""
        self._dev_route("POST", "reset")

    # --- fault hooks ----------------------------------------------------------------------------
    def misp_requests(self) -> list[dict[str, Any]]:
        """The dev MISP server's request log since the last reset: ``[{"method", "path", "status"}]``, oldest
        first (the ``/devstack/`` routes are not logged)."""
        return list(self._dev_route("GET", "requests")["requests"])

    def delay_route(self, path: str, seconds: float) -> None:
        """Delay every dev MISP request whose path starts with ``path`` by ``seconds`` (0 removes the delay;
        a reset removes them all)."""
        self._dev_route("POST", "delay", {"path": path, "seconds": seconds})

    def answer_route(self, path: str, body: Any, status: int = 200) -> None:
        """Make the dev MISP server answer every request for ``path`` with ``status`` and the JSON ``body``
        instead of handling it (status 0 removes it; a reset removes them all)."""
        self._dev_route("POST", "answer", {"path": path, "status": status, "body": body})

    def age_registration(self, service_guid: str, minutes: float) -> bool:
        """Make the registry see ``service_guid``'s registration as ``minutes`` older, as if its client had
        stopped renewing it (past its TTL and 10 minutes' grace it is gone); whether the registry held it."""
        with Requester(self.info["client_configs"]["requester"]) as requester:
            reply = requester.request(AGE_TOPIC, {"serviceGuid": service_guid, "minutes": minutes})
        if not reply.ok:
            raise RuntimeError(f"the registry refused the age hook: {reply.error_message}")
        return bool(reply.payload["aged"])

    def stop_misp(self) -> None:
        """Stop the dev MISP server by PID (its port and SQLite database are kept for :meth:`start_misp`)."""
        self._own_stack().stop_misp()
        self.info = self._own_stack().info

    def start_misp(self) -> None:
        """Start the dev MISP server again on the same port and database; returns once it serves."""
        self._own_stack().start_misp()
        self.info = self._own_stack().info

    def restart_broker(self) -> None:
        """Restart mosquitto on the same port: every DXL client is cut off and must reconnect."""
        self._own_stack().restart_broker()
        self.info = self._own_stack().info

    def _own_stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("this fault hook needs the stack object: use a handle from running_stack()")
        return self._stack

    def requester(self, role: str = "requester") -> Requester:
        """A new connected :class:`Requester` with ``role``'s client config; closed when the stack stops."""
        requester = Requester(self.info["client_configs"][role])
        self._requesters.append(requester)
        return requester

    def service_env(self) -> dict[str, str]:
        """The environment a service started on this stack's config dir needs (the MISP API key)."""
        return {API_KEY_ENV: self.info["misp_api_key"]}

    def config_dir(self, target: str | os.PathLike[str],
                   overrides: Mapping[str, Mapping[str, str | None]] | None = None) -> Path:
        """A copy of the stack's service config dir in ``target``, with ``overrides`` applied."""
        return make_config_dir(self.info["service_config_dir"], target, overrides)

    @contextmanager
    def run_service(self, config_dir: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                    timeout: float = 30.0, wait_registered: bool = True) -> Iterator[ServiceProcess]:
        """:func:`run_service` with this stack's MISP API key in the environment."""
        with run_service(config_dir, env={**self.service_env(), **(env or {})}, timeout=timeout,
                         wait_registered=wait_registered) as service:
            yield service

    def close(self) -> None:
        """Close every requester made by :meth:`requester`, in parallel (a disconnect takes about 1 s)."""
        threads = [threading.Thread(target=r.close, daemon=True) for r in self._requesters]
        self._requesters.clear()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(STOP_TIMEOUT)




@contextmanager
def running_stack(workdir: str | os.PathLike[str] | None = None, *, service: bool = True, misp_tls: bool = False,
                  timeout: float = START_TIMEOUT) -> Iterator[StackHandle]:
    """Start the dev stack in ``workdir`` (a temp dir if None, removed afterwards) and yield its handle.

    The stack runs in this process as :class:`~dxlmisp_devstack.stack.Stack` (each part a child process,
    stopped by PID on exit), so the handle's fault hooks reach it. ``misp_tls`` serves MISP over HTTPS with a
    certificate from the stack's CA (``info["ca_cert"]``).
    """
    made = None if workdir is not None else tempfile.mkdtemp(prefix="devstack-")
    directory = Path(workdir if workdir is not None else made)  # type: ignore[arg-type]
    stack = Stack(directory, service=service, misp_tls=misp_tls, start_timeout=timeout)
    handle: StackHandle | None = None
    try:
        stack.start()
        handle = StackHandle(stack.info_path, stack)
        yield handle
    finally:
        if handle is not None:
            handle.close()
        stack.stop()
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
