"""The whole dev stack, started and stopped in order, each part a child process stopped by its PID.

Start order: the PKI, then mosquitto (``fabric/broker.py``), then the registry stand-in
(``python -m dxlmisp_devstack.fabric.registry``), then the dev MISP server (``python -m dxlmisp_devstack.misp.server``), then,
optionally, the service (``python -m dxlmispservice``). Parts that do not depend on each other overlap: the
MISP server starts first (it needs no certificate unless it serves HTTPS) and boots while the PKI is made,
and the stack's own DXL client connects while the registry stand-in boots. The service starts once the
registry answers and MISP serves, and counts as ready once the registry lists it.

Stop is the reverse order: SIGTERM, then SIGKILL after a timeout, each by PID. The stack deletes nothing:
it writes only under its work directory, into its own sub-directories and ``devstack.json``.

The MISP API keys are made at run time (40 hex characters, like MISP's) and reach the children through
their environment, never their command line.
"""
from __future__ import annotations

import configparser
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dxlmisp_devstack.fabric.broker import Broker, free_port
from dxlmisp_devstack.fabric.config import write_dxlclient_config
from dxlmisp_devstack.fabric.pki import Pki, make_pki, make_server_cert
from dxlmisp_devstack.fabric.registry import QUERY_TOPIC, READY_LINE as REGISTRY_READY
from dxlmisp_devstack.procs import stop_process
from dxlmispservice.names import SERVICE_TYPE

HOST = "127.0.0.1"
INFO_FILE = "devstack.json"
MISP_READY = "misp ready "
API_KEY_ENV = "DXLMISPSERVICE_API_KEY"
ROLES = ("requester", "service", "registry", "stack", "spare1", "spare2", "spare3")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
POLL = 0.01

LEGACY_API_NAMES = (
    "new_event", "add_internal_comment", "add_named_attribute", "tag", "untag", "sighting",
    "search", "get_event", "update_event", "delete_event", "publish",
)
MODERN_API_NAMES = (
    "add_event", "add_attribute", "add_sighting", "add_object", "get_attribute", "update_attribute",
    "delete_attribute", "search_index", "unpublish", "tags", "fetch_events", "status", "export_event",
)
ZMQ_TOPICS = ("misp_json", "misp_json_event", "misp_json_attribute", "misp_json_object", "misp_json_sighting",
              "misp_json_tag")


class StackError(RuntimeError):
    """A part of the stack would not start; the message ends with the tail of its log."""


class Child:
    """One child process: its output goes to a log file, which is read for its ready line."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self._offset = out.tell()
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # a Ctrl-C on the terminal reaches the stack, which stops us in order
            )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def ready_line(self, prefix: str) -> str | None:
        """The first new log line that starts with ``prefix``, or None; raises StackError if the child exited."""
        with open(self.log, "rb") as log:
            log.seek(self._offset)
            text = log.read().decode("utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith(prefix):
                return line.strip()
        if self.process.poll() is not None:
            raise StackError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
        return None

    def tail(self, lines: int = 15) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; by PID, and only if still running."""
        stop_process(self.process, timeout)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a Python child: this one, unbuffered, with ``extra`` added."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Stack:
    """The dev stack in ``workdir``: ``start()`` returns the devstack.json contents, ``stop()`` ends it."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        service: bool = True,
        misp_tls: bool = False,
        feed_interval: float = 1.0,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.service = service
        self.misp_tls = misp_tls
        self.feed_interval = feed_interval
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.info_path = self.workdir / INFO_FILE
        self.info: dict[str, Any] = {}
        self.admin_key = secrets.token_hex(20)
        self.readonly_key = secrets.token_hex(20)
        self._broker: Broker | None = None
        self._children: list[Child] = []
        self._connector: _Connector | None = None
        self._deadline = 0.0
        self._pki: Pki | None = None
        self._zmq_port = 0

    # --- start ----------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start every part in order, write devstack.json and return its contents; stop all on failure."""
        self._deadline = time.monotonic() + self.start_timeout
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        zmq_port = self._zmq_port = free_port()
        misp = None if self.misp_tls else self._start_misp(None, zmq_port)
        pki = self._pki = make_pki(self.workdir / "pki", ROLES)
        if misp is None:
            misp = self._start_misp(pki, zmq_port)
        self._broker = Broker(self.workdir / "broker", pki)
        broker_port = self._broker.start()
        configs = {role: write_dxlclient_config(self.workdir / "clients" / f"{role}.config", pki, role, broker_port)
                   for role in ROLES}
        registry = self._spawn("registry", [sys.executable, "-m", "dxlmisp_devstack.fabric.registry", str(configs["registry"])])
        if self.service:
            self._connector = _Connector(configs["stack"])
        misp_url = self._wait(misp, MISP_READY)[len(MISP_READY):].strip()
        self._wait(registry, REGISTRY_READY)
        service_dir = self.workdir / "service"
        feed_state = service_dir / "feed-state.json"
        write_service_config(service_dir, configs["service"], misp_url=misp_url, zmq_port=zmq_port,
                             feed_state=feed_state, feed_interval=self.feed_interval,
                             ca_cert=pki.ca_cert if self.misp_tls else None)
        if self._connector is not None:
            service = self._spawn("service", [sys.executable, "-m", "dxlmispservice", str(service_dir)],
                                  **{API_KEY_ENV: self.admin_key})
            self._wait_registered(self._connector, service)
            self._connector.close_in_background()  # a disconnect takes ~1 s: keep it off the way to ready
        self.info = {
            "workdir": str(self.workdir),
            "dxlclient_config": str(configs["requester"]),
            "misp_url": misp_url,
            "misp_api_key": self.admin_key,
            "misp_readonly_api_key": self.readonly_key,
            "misp_zmq_port": zmq_port,
            "service_config_dir": str(service_dir),
            "service_api_key_env": API_KEY_ENV,
            "feed_state_file": str(feed_state),
            "broker_port": broker_port,
            "ca_cert": str(pki.ca_cert),
            "client_configs": {role: str(path) for role, path in configs.items()},
            "pids": self.pids(),
            "logs": {child.name: str(child.log) for child in self._children},
        }
        self._write_info()
        return self.info

    def _write_info(self) -> None:
        tmp = self.info_path.with_name(INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info, indent=2) + "\n")
        os.replace(tmp, self.info_path)

    def _start_misp(self, pki: Pki | None, zmq_port: int, port: int = 0) -> Child:
        command = [sys.executable, "-m", "dxlmisp_devstack.misp.server", "--port", str(port),
                   "--db", str(self.workdir / "misp" / "misp.sqlite"), "--zmq-port", str(zmq_port)]
        if pki is not None:
            cert, key = make_server_cert(pki, "misp")
            command += ["--tls-cert", str(cert), "--tls-key", str(key)]
        (self.workdir / "misp").mkdir(parents=True, exist_ok=True)
        return self._spawn("misp", command, DEVSTACK_MISP_ADMIN_KEY=self.admin_key,
                           DEVSTACK_MISP_READONLY_KEY=self.readonly_key)

    def _spawn(self, name: str, command: list[str], **env: str) -> Child:
        child = Child(name, command, self.workdir / "logs" / f"{name}.log", child_env(**env))
        self._children.append(child)
        return child

    def _wait(self, child: Child, prefix: str) -> str:
        while True:
            line = child.ready_line(prefix)
            if line is not None:
                return line
            if time.monotonic() > self._deadline:
                raise StackError(f"{child.name} did not print {prefix.strip()!r} in time: {child.tail()}")
            time.sleep(POLL)

    def _wait_registered(self, connector: _Connector, service: Child) -> None:
        client = connector.result(self._deadline)
        while not _registered(client, SERVICE_TYPE):
            if service.process.poll() is not None:
                raise StackError(f"service exited with {service.process.returncode}: {service.tail()}")
            if time.monotonic() > self._deadline:
                raise StackError(f"service did not register in time: {service.tail()}")
            time.sleep(POLL * 2)

    # --- fault hooks ----------------------------------------------------------------------------
    def stop_misp(self) -> None:
        """Stop the dev MISP server by PID; :meth:`start_misp` brings it back on the same port and database."""
        self._child("misp").stop(self.stop_timeout)

    def start_misp(self) -> None:
        """Start the dev MISP server again, on the port and the SQLite database it had; wait until it serves."""
        old = self._child("misp")
        if old.process.poll() is None:
            raise StackError("the dev MISP server is still running: stop_misp() first")
        port = int(self.info["misp_url"].rsplit(":", 1)[1].strip("/"))
        self._deadline = time.monotonic() + self.start_timeout
        fresh = self._start_misp(self._pki if self.misp_tls else None, self._zmq_port, port)
        self._children.remove(fresh)
        self._children[self._children.index(old)] = fresh
        self._wait(fresh, MISP_READY)
        self.info["pids"] = self.pids()
        self._write_info()

    def restart_broker(self) -> None:
        """Stop mosquitto by PID and start it again on the same port: every client must reconnect."""
        if self._broker is None:
            raise StackError("the stack is not running")
        self._broker.stop(self.stop_timeout)
        self._broker.start(port=int(self.info["broker_port"]))
        self.info["pids"] = self.pids()
        self._write_info()

    def _child(self, name: str) -> Child:
        for child in self._children:
            if child.name == name:
                return child
        raise StackError(f"the stack has no {name} part")

    # --- run and stop ---------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """``{name: pid}`` of every part started so far."""
        pids = {"broker": self._broker.pid} if self._broker is not None and self._broker.running else {}
        pids.update({child.name: child.pid for child in self._children})
        return pids

    def exited(self) -> list[str]:
        """Names of the parts that have exited on their own."""
        gone = [c.name for c in self._children if c.process.poll() is not None]
        if self._broker is not None and not self._broker.running:
            gone.insert(0, "broker")
        return gone

    def stop(self) -> None:
        """Stop every part in the reverse order of start, by PID. Safe to call twice."""
        if self._connector is not None:
            self._connector.close()
            self._connector = None
        service = [c for c in self._children if c.name == "service"]
        for child in service:  # first, while the registry and the broker can still take its unregistration
            child.stop(self.stop_timeout)
        for child in reversed(self._children):  # the rest depend on each other no more: SIGTERM them together
            if child.process.poll() is None:
                os.kill(child.pid, signal.SIGTERM)
        while self._children:
            self._children.pop().stop(self.stop_timeout)
        if self._broker is not None:
            self._broker.stop(self.stop_timeout)
            self._broker = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Connector:
    """Connects a DxlClient on a thread, so that the connection overlaps the registry's start."""

    def __init__(self, config: Path) -> None:
        self._config = config
        self._client: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="devstack-connect", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from dxlclient.client import DxlClient
        from dxlclient.client_config import DxlClientConfig

        try:
            config = DxlClientConfig.create_dxl_config_from_file(str(self._config))
            config.connect_retries = 3
            client = DxlClient(config)
            client.connect()
            self._client = client
        except BaseException as exc:  # reported by result()
            self._error = exc

    def close(self) -> None:
        """Disconnect the client, waiting briefly for a connect (or a background close) still under way."""
        self._thread.join(STOP_TIMEOUT)
        self._destroy()

    def _destroy(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.destroy()

    def close_in_background(self) -> None:
        """Disconnect on a thread; :meth:`close` waits for it."""
        self._thread.join(STOP_TIMEOUT)
        self._thread = threading.Thread(target=self._destroy, name="devstack-disconnect", daemon=True)
        self._thread.start()

    def result(self, deadline: float) -> Any:
        """The connected DxlClient; raises StackError if it failed or took past ``deadline``."""
        self._thread.join(max(deadline - time.monotonic(), 0))
        if self._client is None:
            raise StackError(f"the stack's DXL client could not connect: {self._error!r}")
        return self._client


def _registered(client: Any, service_type: str) -> bool:
    from dxlclient.message import Message, Request

    request = Request(QUERY_TOPIC)
    request.payload = json.dumps({"serviceType": service_type}).encode()
    response = client.sync_request(request, timeout=5)
    if response.message_type == Message.MESSAGE_TYPE_ERROR:
        return False
    return bool(json.loads(response.payload.decode() or "{}").get("services"))


def write_service_config(
    directory: Path, dxlclient_config: Path, *, misp_url: str, zmq_port: int, feed_state: Path,
    feed_interval: float, ca_cert: Path | None = None,
) -> Path:
    """Write a config dir for ``python -m dxlmispservice``: dxlclient.config, dxlmispservice.config, logging.config.

    The MISP API key is not in the files: ``apiKey=env:DXLMISPSERVICE_API_KEY`` reads it from the service's
    environment.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dxlclient.config").write_text(dxlclient_config.read_text())
    general = {
        "host": misp_url,
        "apiKey": f"env:{API_KEY_ENV}",
        "apiNames": ",".join(dict.fromkeys(LEGACY_API_NAMES + MODERN_API_NAMES)),
        "verifyCertificate": "true" if ca_cert is not None else "false",
        "zeroMqNotificationTopics": ",".join(ZMQ_TOPICS),
        "zeroMqPort": str(zmq_port),
    }
    if ca_cert is not None:
        general["verifyCertBundle"] = str(ca_cert)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser["General"] = general
    parser["IncomingMessagePool"] = {"threadCount": "10", "queueSize": "1000"}
    parser["MessageCallbackPool"] = {"threadCount": "10", "queueSize": "1000"}
    parser["Feed"] = {"enabled": "true", "interval": f"{feed_interval:g}", "stateFile": str(feed_state)}
    with open(directory / "dxlmispservice.config", "w") as out:
        parser.write(out)
    (directory / "logging.config").write_text(LOGGING_CONFIG)
    return directory


LOGGING_CONFIG = """\
[loggers]
keys=root

[handlers]
keys=stdout

[formatters]
keys=plain

[logger_root]
level=INFO
handlers=stdout

[handler_stdout]
class=StreamHandler
level=NOTSET
formatter=plain
args=(sys.stdout,)

[formatter_plain]
format=%(asctime)s %(levelname)s %(name)s: %(message)s
"""
