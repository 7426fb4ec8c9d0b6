"""``python -m dxlmisp_devstack up [--workdir DIR] [--no-service] [--misp-tls]`` and ``python -m dxlmisp_devstack demo``.

``up`` starts the stack, prints exactly one line ``devstack ready <DIR>/devstack.json`` on stdout, and runs
until SIGINT or SIGTERM; then it stops every part by PID. Without ``--workdir`` it works in a new temporary
directory and removes that directory at the end (it deletes nothing it did not create).

``demo`` starts the stack with the service, runs ``sample/basic/basic_update_event_example.py`` unmodified
against it (``DXLCLIENT_CONFIG`` names the requester's config), and stops everything. Its exit status is
the sample's.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from dxlmisp_devstack.stack import Stack, StackError

#: The sample ``demo`` runs, relative to the directory it is run from (a dxlmispservice checkout).
DEMO_SAMPLE = Path("sample") / "basic" / "basic_update_event_example.py"
DEMO_TIMEOUT = 120.0


class _Stop(Exception):
    """Raised by the signal handler to cut a start short."""


@contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    """The given directory, or a temporary one that is removed afterwards."""
    if path is not None:
        yield Path(path)
        return
    made = Path(tempfile.mkdtemp(prefix="devstack-"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _say(message: str) -> None:
    print(f"devstack: {message}", file=sys.stderr, flush=True)


def up(workdir: str | None, *, service: bool, misp_tls: bool = False) -> int:
    """Run the stack until SIGINT or SIGTERM; return the exit status."""
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if starting:
            raise _Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with _workdir(workdir) as directory:
        stack = Stack(directory, service=service, misp_tls=misp_tls)
        try:
            began = time.monotonic()
            try:
                stack.start()
            except _Stop:
                return 0
            starting = False
            _say(f"started in {time.monotonic() - began:.2f} s: {stack.pids()}")
            print(f"devstack ready {stack.info_path}", flush=True)
            reported: set[str] = set()
            while not stop.wait(0.5):
                for name in set(stack.exited()) - reported:
                    _say(f"{name} exited on its own; see {stack.info.get('logs', {}).get(name, 'its log')}")
                    reported.add(name)
            return 0
        except StackError as exc:
            _say(f"could not start: {exc}")
            return 1
        finally:
            starting = False
            stack.stop()


def demo(sample_path: Path = DEMO_SAMPLE) -> int:
    """Bring the stack up with the service, run the update-event sample, stop; return the sample's status."""
    sample_path = sample_path.resolve()
    if not sample_path.is_file():
        _say(f"no sample at {sample_path}: run demo from a dxlmispservice checkout, or pass --sample PATH")
        return 1

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_sigterm)
    with _workdir(None) as directory:
        began = time.monotonic()
        try:
            with Stack(directory, service=True) as stack:
                _say(f"stack ready in {time.monotonic() - began:.2f} s; running {sample_path}")
                env = dict(os.environ, DXLCLIENT_CONFIG=stack.info["dxlclient_config"])
                sample = subprocess.Popen([sys.executable, str(sample_path)], env=env, cwd=str(sample_path.parent))
                try:
                    status = sample.wait(DEMO_TIMEOUT)
                except BaseException:
                    sample.kill()
                    sample.wait()
                    raise
                _say(f"sample exited with {status}; stopping the stack")
                return status
        except StackError as exc:
            _say(f"could not start: {exc}")
            return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run ``up`` or ``demo``."""
    parser = argparse.ArgumentParser(prog="python -m dxlmisp_devstack", description="The dxlmispservice dev stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("up", help="start the stack and run until SIGINT or SIGTERM")
    run.add_argument("--workdir", help="where to write devstack.json and the stack's files (default: a temp dir)")
    run.add_argument("--no-service", action="store_true", help="start the fabric and MISP only")
    run.add_argument("--misp-tls", action="store_true",
                     help="serve MISP over HTTPS with a certificate from the stack's CA (ca_cert in devstack.json)")
    demo_args = commands.add_parser("demo", help="run the update-event sample against a fresh stack")
    demo_args.add_argument("--sample", type=Path, default=DEMO_SAMPLE,
                           help=f"the sample to run (default: {DEMO_SAMPLE}, from a dxlmispservice checkout)")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.workdir, service=not args.no_service, misp_tls=args.misp_tls)
    return demo(args.sample)


if __name__ == "__main__":
    sys.exit(main())
