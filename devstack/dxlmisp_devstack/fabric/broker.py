"""mosquitto as the dev fabric's MQTT broker: its config file and its process.

The broker listens on 127.0.0.1 on a free port, with one TLS listener that requires a client certificate
signed by the dev CA, since dxlclient only connects over TLS with a client certificate. ``set_tcp_nodelay true``
turns Nagle's algorithm off on the broker's client sockets: without it, messages of 32 KB or more stall
40-130 ms. Debian bookworm's mosquitto 2.0.11 knows the option (it refuses unknown options at start). The
clients' own sockets need TCP_NODELAY too: see ``dxlmisp_devstack.fabric``'s docstring.

``max_packet_size 1048576`` holds every MQTT packet to the real OpenDXL broker's default ``messageSizeLimit``
(1,048,576 bytes): a client that sends a larger one is disconnected, as the real broker does, so a payload
too big for a production fabric fails here too. (``message_size_limit`` would only drop the message.)

The process is a child of the caller, stopped by its PID: SIGTERM, then SIGKILL after a timeout.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from dxlmisp_devstack.fabric.pki import Pki
from dxlmisp_devstack.procs import stop_process  # noqa: F401 - the one stop-by-PID, re-exported here

DEFAULT_MOSQUITTO = "/usr/sbin/mosquitto"
#: Names the mosquitto executable to use instead of the default.
MOSQUITTO_ENV = "DXLMISP_DEVSTACK_MOSQUITTO"
INSTALL_HINT = "install the Debian package 'mosquitto' (apt-get install mosquitto)"
#: The real OpenDXL broker's default ``messageSizeLimit``: mosquitto disconnects a client that sends a larger
#: packet, as that broker does (``message_size_limit`` would only drop the message).
MAX_PACKET_SIZE = 1_048_576
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3


class BrokerError(RuntimeError):
    """mosquitto is missing, would not start, or would not stop."""


def find_mosquitto() -> str:
    """Return the mosquitto executable: ``$DXLMISP_DEVSTACK_MOSQUITTO`` when set, else /usr/sbin/mosquitto,
    else the one on PATH; BrokerError saying how to install it when there is none."""
    wanted = os.environ.get(MOSQUITTO_ENV)
    if wanted:
        if os.access(wanted, os.X_OK):
            return wanted
        raise BrokerError(f"mosquitto not found at {wanted} ({MOSQUITTO_ENV}): {INSTALL_HINT}")
    if os.access(DEFAULT_MOSQUITTO, os.X_OK):
        return DEFAULT_MOSQUITTO
    found = shutil.which("mosquitto")
    if found is None:
        raise BrokerError(f"mosquitto not found: {INSTALL_HINT}")
    return found


def free_port(host: str = HOST) -> int:
    """Ask the kernel for a port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def render_config(pki: Pki, *, port: int, log_file: Path, use_identity_as_username: bool = True) -> str:
    """Return mosquitto.conf text for one TLS listener on 127.0.0.1:``port`` that requires client certs.

    With ``use_identity_as_username`` the certificate's CN becomes the MQTT user name and anonymous
    clients are refused; without it, certificate-holding clients connect anonymously, so
    ``allow_anonymous`` must be true (the certificate is still required by the listener).
    """
    lines = [
        "# written by devstack.fabric.broker: a throwaway dev broker",
        "per_listener_settings false",
        f"allow_anonymous {'false' if use_identity_as_username else 'true'}",
        "persistence false",
        "set_tcp_nodelay true",
        f"max_packet_size {MAX_PACKET_SIZE}",
        f"log_dest file {log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "",
        f"listener {port} {HOST}",
        f"cafile {pki.ca_cert}",
        f"certfile {pki.broker_cert}",
        f"keyfile {pki.broker_key}",
        "require_certificate true",
        f"use_identity_as_username {'true' if use_identity_as_username else 'false'}",
    ]
    if os.geteuid() == 0:
        # As root mosquitto would switch to the user 'mosquitto', who cannot read our 0600 keys.
        lines.insert(1, f"user {pwd.getpwuid(os.geteuid()).pw_name}")
    return "\n".join(lines) + "\n"


class Broker:
    """A mosquitto child process with a TLS listener on 127.0.0.1 on a free port."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        pki: Pki,
        *,
        use_identity_as_username: bool = True,
        mosquitto: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.pki = pki
        self.use_identity_as_username = use_identity_as_username
        self.mosquitto = mosquitto
        self.config_file = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"
        self.stderr_file = self.workdir / "mosquitto.stderr"
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TLS port, once started."""
        if self._port is None:
            raise BrokerError("broker not started")
        return self._port

    @property
    def pid(self) -> int:
        """The mosquitto process id, once started."""
        if self._process is None:
            raise BrokerError("broker not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the mosquitto child is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, port: int | None = None) -> int:
        """Write mosquitto.conf, start mosquitto and wait until its port accepts; return the port.

        ``port`` asks for that port (a restart keeps the clients' configs valid); by default a free one."""
        if self.running:
            raise BrokerError(f"broker already running (pid {self.pid})")
        executable = self.mosquitto or find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        failure = ""
        wanted = port
        for _ in range(_PORT_ATTEMPTS if wanted is None else 1):  # a free port may be taken before we bind it
            port = free_port() if wanted is None else wanted
            self.config_file.write_text(
                render_config(
                    self.pki, port=port, log_file=self.log_file, use_identity_as_username=self.use_identity_as_username
                )
            )
            with open(self.stderr_file, "wb") as stderr:
                process = subprocess.Popen(
                    [executable, "-c", str(self.config_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,
                )
            if _wait_for_port(process, port, START_TIMEOUT):
                self._process, self._port = process, port
                return port
            stop_process(process, STOP_TIMEOUT)
            output = f"{self._tail(self.stderr_file)} {self._tail(self.log_file)}"
            failure = f"mosquitto exited with {process.returncode}: {output}"
        raise BrokerError(f"mosquitto would not start on {HOST}: {failure}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop mosquitto by PID: SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        if self._process is None:
            return
        stop_process(self._process, timeout)
        self._process = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _tail(path: Path, lines: int = 5) -> str:
        try:
            return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False
