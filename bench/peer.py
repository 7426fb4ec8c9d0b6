"""Peer: the original dxlmispservice 0.1.5 from PyPI, on the same dev stack, timed on the same legacy call.

It lives in its own venv (``bench/.peer-venv``, git-ignored), made on first use with
``pip install 'setuptools<81' dxlmispservice==0.1.5`` (it pins pymisp 2.4.111.2, which still has the 2.4
methods it calls). Its config dir is written by the bench:

- ``dxlclient.config``: the stack's ``spare1`` client role;
- ``dxlmispservice.config``: ``host``/``apiPort`` of the dev MISP server (0.1.5 always builds
  ``https://host:apiPort``, so the bench serves MISP over HTTPS), ``apiKey``, ``verifyCertBundle`` (the
  stack's CA), ``apiNames=search,get_event``, ``serviceUniqueId=orig`` (its topics do not collide with
  ours), no ZeroMQ topics, pools as ours;
- ``logging.config``: none, so that 0.1.5 copies its own default, as its users run it.

It is started as ``.peer-venv/bin/python -m dxlmispservice DIR`` and counts as up once its ``search``
topic answers. Then ``search`` (payload ``{"eventid": id}``) is timed sequentially and at 1 and 16 in
flight, exactly as ours is (``bridge.measure``).

Figures (``figures["peer"]``)::

    {"version": "0.1.5", "pymisp": str, "search": {"sequential": Latency, "throughput": {...},
     "latency_at": {...}}, "get_event": {...}}
"""
from __future__ import annotations

import configparser
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dxlclient.exceptions import WaitTimeoutException

from dxlmispservice.testing import stop_process

from . import dxl
from .bridge import calls as bridge_calls, measure
from .env import BenchStack

VERSION = "0.1.5"
REQUIREMENTS = ("setuptools<81", f"dxlmispservice=={VERSION}")
VENV = Path(__file__).resolve().parent / ".peer-venv"
UNIQUE_ID = "orig"
LEVELS = ("1", "16")


def python() -> Path:
    """The peer venv's interpreter."""
    return VENV / "bin" / "python"


def ensure_venv(log: Path) -> str:
    """Make the peer venv if it lacks dxlmispservice 0.1.5; the pymisp version it has."""
    probe = [str(python()), "-c", "import dxlmispservice._version as v, pymisp; print(v.__version__, pymisp.__version__)"]
    if python().exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.split()[:1] == [VERSION]:
            return found.stdout.split()[1]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True, stdout=out, stderr=subprocess.STDOUT)
        subprocess.run([str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True, stdout=out,
                       stderr=subprocess.STDOUT)
    found = subprocess.run(probe, capture_output=True, text=True, check=True)
    return found.stdout.split()[1]


def write_config(bench: BenchStack, directory: Path) -> Path:
    """The peer's config dir (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dxlclient.config").write_text(Path(bench.client_config("spare1")).read_text())
    url = urlsplit(bench.info["misp_url"])
    general = {"host": url.hostname or "127.0.0.1", "apiPort": str(url.port or 443),
               "apiKey": bench.info["misp_api_key"], "apiNames": "search,get_event", "serviceUniqueId": UNIQUE_ID,
               "zeroMqNotificationTopics": ""}
    if bench.tls:
        general.update(verifyCertificate="yes", verifyCertBundle=str(bench.info["ca_cert"]))
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser["General"] = general
    parser["MessageCallbackPool"] = {"threadCount": "10", "queueSize": "1000"}
    parser["IncomingMessagePool"] = {"threadCount": "10", "queueSize": "1000"}
    with open(directory / "dxlmispservice.config", "w") as out:
        parser.write(out)
    return directory


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


def run(bench: BenchStack, event_id: str, *, sequential_n: int, level_n: int) -> dict[str, Any]:
    """Run 0.1.5 on the stack and time its legacy search (and get_event) like ours."""
    if not bench.tls:
        raise RuntimeError(f"dxlmispservice {VERSION} only speaks https://host:apiPort to MISP; the bench "
                           "serves MISP over HTTP (BENCH_MISP_TLS=0)")
    log = bench.workdir / "logs" / "peer.log"
    pymisp_version = ensure_venv(bench.workdir / "logs" / "peer-venv.log")
    config = write_config(bench, bench.workdir / "service-peer")
    with open(log, "ab") as out:
        process = subprocess.Popen([str(python()), "-m", "dxlmispservice", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
    client = dxl.connect(bench.client_config("requester"))
    try:
        table = bridge_calls(event_id, UNIQUE_ID)
        topic, payload, check = table["search"]
        _wait_answering(client, topic, payload, process, log)
        out_figures: dict[str, Any] = {"version": VERSION, "pymisp": pymisp_version}
        for name, (topic, payload, check) in table.items():
            out_figures[name] = measure(client, topic, payload, check, sequential_n=sequential_n, level_n=level_n,
                                        levels=LEVELS)
        return out_figures
    finally:
        dxl.destroy_all([client])
        stop_process(process)
