"""The bench's dev stack: the fabric and the dev MISP server (no service), plus helpers to run services on it.

The stack serves MISP over HTTP by default, as the issue's reference figures were taken; ``BENCH_MISP_TLS=1``
serves it over HTTPS instead (then every section, the peer included, runs on that one HTTPS server).
Direct PyMISP and our service always use the same server and scheme; see ``peer.py`` for 0.1.5, which
speaks HTTPS only.

The bench starts each service it measures itself, from a copy of the stack's service config dir with
the parts it does not measure switched off (no ZeroMQ forwarding, no feed), so that one measure does not
load the other.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dxlmisp_devstack.stack import Child, Stack, child_env
from dxlmisp_devstack.testing import StackHandle, make_config_dir, run_service, ServiceProcess

READY_TIMEOUT = 60.0

#: A service config with only the request topics on.
REQUESTS_ONLY: dict[str, dict[str, str | None]] = {
    "General": {"zeroMqNotificationTopics": None, "zeroMqPort": None},
    "Feed": {"enabled": "false"},
}


class BenchStack:
    """A running stack for the bench: ``info`` (devstack.json), PyMISP, service config variants."""

    def __init__(self, stack: Stack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.handle = StackHandle(stack.info_path)
        self.info: dict[str, Any] = self.handle.info
        self._children: list[Child] = []

    @property
    def misp_db(self) -> Path:
        """The dev MISP server's SQLite file (where ``dxlmisp_devstack.stack.Stack`` puts it)."""
        return self.workdir / "misp" / "misp.sqlite"

    @property
    def tls(self) -> bool:
        """Whether MISP is served over HTTPS."""
        return str(self.info["misp_url"]).startswith("https:")

    def misp(self) -> Any:
        """A new plain PyMISP (admin key), as a user calling MISP directly would make it."""
        return self.handle.misp()

    def verify(self) -> bool | str:
        """What ``requests`` needs to verify the server: the CA bundle over HTTPS, else False."""
        return self.info["ca_cert"] if self.tls else False

    def reset_misp(self) -> None:
        """Empty MISP's events, attributes, objects, sightings and tags."""
        self.handle.reset_misp()

    def client_config(self, role: str) -> str:
        """The dxlclient.config path of ``role`` (requester, service, spare1..3, ...)."""
        return str(self.info["client_configs"][role])

    def service_config(self, name: str, overrides: Mapping[str, Mapping[str, str | None]] | None = None,
                       role: str | None = None) -> Path:
        """A copy of the stack's service config dir under ``workdir/name``, with ``overrides`` applied.

        ``role`` swaps in another client role's dxlclient.config."""
        merged: dict[str, dict[str, str | None]] = {s: dict(v) for s, v in REQUESTS_ONLY.items()}
        for section, values in (overrides or {}).items():
            merged.setdefault(section, {}).update(values)
        target = make_config_dir(self.info["service_config_dir"], self.workdir / name, merged)
        if role is not None:
            (target / "dxlclient.config").write_text(Path(self.client_config(role)).read_text())
        return target

    @contextmanager
    def service(self, config_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[ServiceProcess]:
        """Run ``python -m dxlmispservice config_dir`` until the block ends (stopped by PID)."""
        with run_service(config_dir, env={**self.handle.service_env(), **(env or {})}, timeout=60) as service:
            yield service

    def spawn(self, name: str, command: list[str], ready: str, env: Mapping[str, str] | None = None,
              timeout: float = READY_TIMEOUT) -> Child:
        """Start a child (output to ``workdir/logs/name.log``), wait for its ``ready`` line; stopped at the end."""
        child = Child(name, command, self.workdir / "logs" / f"{name}.log", child_env(**dict(env or {})))
        self._children.append(child)
        deadline = time.monotonic() + timeout
        while child.ready_line(ready) is None:
            if time.monotonic() > deadline:
                child.stop()
                raise RuntimeError(f"{name} did not print {ready!r} in {timeout} s: {child.tail()}")
            time.sleep(0.02)
        return child

    def stop_children(self) -> None:
        """Stop every child started by :meth:`spawn`, by PID."""
        while self._children:
            self._children.pop().stop()


def misp_tls(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the bench serves MISP over HTTPS (``BENCH_MISP_TLS``, default off)."""
    return environ.get("BENCH_MISP_TLS", "0").strip().lower() in ("1", "true", "yes", "on")


@contextmanager
def bench_stack(workdir: Path, *, tls: bool = True) -> Iterator[BenchStack]:
    """The fabric and the dev MISP server in ``workdir``, no service; everything stopped by PID at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir, service=False, misp_tls=tls)
    stack.start()
    bench: BenchStack | None = None
    try:
        bench = BenchStack(stack, workdir)
        yield bench
    finally:
        if bench is not None:
            bench.stop_children()
            bench.handle.close()
        stack.stop()
