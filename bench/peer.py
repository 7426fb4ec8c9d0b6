"""Peer: the original dxlmispservice 0.1.5 from PyPI, on the same dev stack, timed on the same legacy call.

It lives in its own venv (``bench/.peer-venv``, git-ignored), made on first use with
``pip install 'setuptools<81' dxlmispservice==0.1.5`` (it pins pymisp 2.4.111.2, which still has the 2.4
methods it calls).

**MISP over HTTPS.** 0.1.5 always builds ``https://host:apiPort`` (its app.py has no scheme setting), so
it cannot talk to an HTTP MISP. When the bench's MISP is HTTP (the default), this section starts a second
dev MISP server with TLS (a certificate from a throwaway CA) on a snapshot of the first one's database
(SQLite's backup API: the same events and ids), and measures **both** services on it: ours from a
config variant pointed at it, and 0.1.5. The ratio is thus taken on one server, one scheme, one call.

0.1.5's config dir:

- ``dxlclient.config``: the stack's ``spare1`` client role;
- ``dxlmispservice.config``: ``host``/``apiPort``, ``apiKey``, ``verifyCertBundle`` (the CA),
  ``apiNames=search,get_event``, ``serviceUniqueId=orig`` (its topics do not collide with ours), no ZeroMQ
  topics, pools as ours;
- ``logging.config``: none, so that 0.1.5 copies its own default, as its users run it.

It is started as ``.peer-venv/bin/python -m dxlmispservice DIR`` and counts as up once its ``search``
topic answers. Then ``search`` (payload ``{"eventid": id}``) and ``get_event`` are timed sequentially and
at 1 and 16 in flight, for ours and for 0.1.5 alike (``bridge.measure``).

Figures (``figures["peer"]``)::

    {"version": "0.1.5", "pymisp": str, "misp_url": str,
     "orig": {"search"|"get_event": {"sequential": Latency, "throughput": {...}, "latency_at": {...}}},
     "ours": {"search"|"get_event": {... the same ...}}}
"""
from __future__ import annotations

import configparser
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dxlclient.exceptions import WaitTimeoutException

from dxlmisp_devstack.fabric.pki import make_pki, make_server_cert
from dxlmisp_devstack.testing import stop_process

from . import dxl
from .bridge import calls as bridge_calls, measure
from .env import BenchStack

VERSION = "0.1.5"
REQUIREMENTS = ("setuptools<81", f"dxlmispservice=={VERSION}")
VENV = Path(__file__).resolve().parent / ".peer-venv"
UNIQUE_ID = "orig"
OURS_ID = "ourstls"
LEVELS = ("1", "16")
MISP_READY = "misp ready "


def python() -> Path:
    """The peer venv's interpreter."""
    return VENV / "bin" / "python"


def isolated_env() -> dict[str, str]:
    """This environment without PYTHONPATH: the peer must import its own dxlmispservice, not this checkout's
    (every peer process also runs outside the checkout, in its venv's directory or its config dir)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ensure_venv(log: Path) -> str:
    """Make the peer venv if it lacks dxlmispservice 0.1.5; the pymisp version it has."""
    probe = [str(python()), "-c",
             "import dxlmispservice._version as v, pymisp; print(v.__version__, pymisp.__version__)"]
    if python().exists():
        found = subprocess.run(probe, capture_output=True, text=True, cwd=VENV, env=isolated_env())
        if found.returncode == 0 and found.stdout.split()[:1] == [VERSION]:
            return found.stdout.split()[1]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        base = getattr(sys, "_base_executable", "") or "python3"  # the interpreter .venv was made from
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True, stdout=out, stderr=subprocess.STDOUT)
        subprocess.run([str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True, stdout=out,
                       stderr=subprocess.STDOUT)
    found = subprocess.run(probe, capture_output=True, text=True, check=True, cwd=VENV, env=isolated_env())
    return found.stdout.split()[1]


@contextmanager
def https_misp(bench: BenchStack) -> Iterator[tuple[str, str]]:
    """``(url, ca_cert)`` of a MISP served over HTTPS with the bench's data: the stack's own when it is
    HTTPS, else a second dev server with TLS on a snapshot of its database (stopped at the end)."""
    if bench.tls:
        yield str(bench.info["misp_url"]), str(bench.info["ca_cert"])
        return
    directory = bench.workdir / "misp-tls"
    directory.mkdir(parents=True, exist_ok=True)
    snapshot = directory / "misp.sqlite"
    source = sqlite3.connect(bench.misp_db)
    target = sqlite3.connect(snapshot)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    pki = make_pki(directory / "pki", ())
    cert, key = make_server_cert(pki, "misp")
    child = bench.spawn("misp-tls", [sys.executable, "-m", "dxlmisp_devstack.misp.server", "--port", "0", "--db",
                                     str(snapshot), "--tls-cert", str(cert), "--tls-key", str(key)], MISP_READY,
                        env={"DEVSTACK_MISP_ADMIN_KEY": bench.info["misp_api_key"],
                             "DEVSTACK_MISP_READONLY_KEY": bench.info["misp_readonly_api_key"]})
    try:
        line = child.ready_line(MISP_READY) or ""
        yield line[len(MISP_READY):].strip(), str(pki.ca_cert)
    finally:
        child.stop()


def write_config(bench: BenchStack, directory: Path, misp_url: str, ca_cert: str) -> Path:
    """0.1.5's config dir (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dxlclient.config").write_text(Path(bench.client_config("spare1")).read_text())
    url = urlsplit(misp_url)
    general = {"host": url.hostname or "127.0.0.1", "apiPort": str(url.port or 443),
               "apiKey": bench.info["misp_api_key"], "apiNames": "search,get_event", "serviceUniqueId": UNIQUE_ID,
               "zeroMqNotificationTopics": "", "verifyCertificate": "yes", "verifyCertBundle": ca_cert}
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser["General"] = general
    parser["MessageCallbackPool"] = {"threadCount": "10", "queueSize": "1000"}
    parser["IncomingMessagePool"] = {"threadCount": "10", "queueSize": "1000"}
    with open(directory / "dxlmispservice.config", "w") as out:
        parser.write(out)
    return directory


#: The broker's error code for a request no registered service takes ("unable to locate service").
NO_SERVICE = 0x80000001


def _wait_answering(client: Any, topic: str, payload: bytes, process: subprocess.Popen[bytes], log: Path,
                    timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dxlmispservice {VERSION} exited with {process.returncode}: {_tail(log)}")
        try:
            answer = dxl.request_once(client, topic, payload, timeout=1.0)
        except WaitTimeoutException:
            continue
        if not dxl.is_ok(answer) and int(answer.error_code) & 0xFFFFFFFF == NO_SERVICE:
            time.sleep(0.2)  # the broker (here the registry stand-in) has no registration for it yet
            continue
        if not dxl.is_ok(answer):
            raise RuntimeError(f"dxlmispservice {VERSION} answered search with an error: "
                               f"{answer.error_message!r}; its log: {_tail(log)}")
        return
    raise RuntimeError(f"dxlmispservice {VERSION} did not answer in {timeout} s: {_tail(log)}")


def _tail(log: Path, lines: int = 12) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _measure_all(client: Any, event_id: str, unique_id: str, sequential_n: int, level_n: int) -> dict[str, Any]:
    return {name: measure(client, topic, payload, check, sequential_n=sequential_n, level_n=level_n, levels=LEVELS)
            for name, (topic, payload, check) in bridge_calls(event_id, unique_id).items()}


def run(bench: BenchStack, event_id: str, *, sequential_n: int, level_n: int) -> dict[str, Any]:
    """0.1.5 and ours on one HTTPS MISP, the same calls timed the same way."""
    pymisp_version = ensure_venv(bench.workdir / "logs" / "peer-venv.log")
    client = dxl.connect(bench.client_config("requester"))
    try:
        with https_misp(bench) as (misp_url, ca_cert):
            figures: dict[str, Any] = {"version": VERSION, "pymisp": pymisp_version, "misp_url": misp_url}
            ours = bench.service_config("service-ours-tls", {"General": {
                "host": misp_url, "apiPort": None, "serviceUniqueId": OURS_ID, "verifyCertificate": "true",
                "verifyCertBundle": ca_cert}})
            with bench.service(ours):
                figures["ours"] = _measure_all(client, event_id, OURS_ID, sequential_n, level_n)
            log = bench.workdir / "logs" / "peer.log"
            config = write_config(bench, bench.workdir / "service-peer", misp_url, ca_cert)
            with open(log, "ab") as out:
                process = subprocess.Popen([str(python()), "-m", "dxlmispservice", str(config)],
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True, cwd=config, env=isolated_env())
            try:
                topic, payload, _ = bridge_calls(event_id, UNIQUE_ID)["search"]
                _wait_answering(client, topic, payload, process, log)
                figures["orig"] = _measure_all(client, event_id, UNIQUE_ID, sequential_n, level_n)
            finally:
                stop_process(process)
            return figures
    finally:
        dxl.destroy_all([client])
