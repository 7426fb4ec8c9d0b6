"""``python -m bench [--quick] [--only SECTION ...] [--keep]``: the whole bench on a fresh dev stack.

Sections, in order: compare (floor, direct and bridge, interleaved; then size, profile and exports on
the same service), breakdown, peer, notifications, start, feed and feed_formats (last: each empties MISP
and fills it with its backlog). A section that fails is reported and the others still run. Prints the
markdown table (and the profile), writes the JSON document to
``$BENCH_JSON`` (default ``bench/out/latest.json``), and exits 1 if any section failed.

The stack's work directory is ``bench/out/work`` (logs, configs, py-spy output), replaced on each run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import breakdown, compare, direct, dxl, exports, feed, floor, notify, peer, profile, report, seed, size, start
from .compare import Plan
from .env import BenchStack, bench_stack, misp_tls

OUT = Path(__file__).resolve().parent / "out"
SECTIONS = ("compare", "size", "profile", "exports", "breakdown", "peer", "notifications", "start", "feed",
            "feed_formats")
#: The feed_formats section's [Feed] formats.
FEED_FORMATS = ("misp", "ctim")
SIZES = {"10": 10, "100": 100, "1000": 1000}
OVERSIZED = 10_000


@dataclass(frozen=True)
class Counts:
    """How many requests each measure makes (bounded, so that the whole run stays within minutes)."""

    compare: Plan = Plan(sequential=1000, rounds_sequential=10, throughput=4000, rounds_throughput=4, level=3000,
                         floor_level=5000)
    size_reps: tuple[tuple[str, int], ...] = (("10", 200), ("100", 100), ("1000", 40))
    oversized_reps: int = 5
    profile_split_s: float = 5.0
    profile_sample_s: float = 8.0
    breakdown_n: int = 1000
    peer_sequential: int = 500
    peer_level: int = 1000
    notifications: int = 10_000
    notifications_rate: float = 2000.0
    start_runs: int = 5
    feed_backlog: int = 5000
    exports_scale: float = 1.0


QUICK = Counts(compare=Plan(sequential=200, rounds_sequential=4, throughput=640, rounds_throughput=2, level=300,
                            floor_level=400),
               size_reps=(("10", 20), ("100", 10), ("1000", 5)), oversized_reps=2, profile_split_s=2.0,
               profile_sample_s=3.0, breakdown_n=200, peer_sequential=60, peer_level=160, notifications=1000,
               start_runs=1, feed_backlog=500, exports_scale=0.2)


def machine() -> dict[str, Any]:
    """What the figures came from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mosquitto = subprocess.run([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], capture_output=True,
                                   text=True, timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        mosquitto = "unknown"
    from importlib.metadata import version

    return {"cpus": os.cpu_count(), "cpu": model, "os": platform.platform(), "python": platform.python_version(),
            "dxlclient": version("dxlclient"), "pymisp": version("pymisp"), "mosquitto": mosquitto}


def describe(info: dict[str, Any]) -> str:
    """One line for the table's head."""
    return (f"{info['cpus']} cores ({info['cpu'] or 'unknown CPU'}), {info['os']}, Python {info['python']}, "
            f"dxlclient {info['dxlclient']}, pymisp {info['pymisp']}, {info['mosquitto']}")


class Run:
    """Runs sections, keeping their figures and their failures."""

    def __init__(self, only: set[str]) -> None:
        self.only = only
        self.figures: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def wanted(self, name: str) -> bool:
        return not self.only or name in self.only

    def section(self, name: str, work: Callable[[], Any], *, merge: bool = False) -> Any:
        """Run ``work`` as section ``name`` (if wanted); its figures, or None on failure. With ``merge``,
        the result's keys become sections of their own."""
        if not self.wanted(name):
            return None
        say(f"{name}...")
        began = time.monotonic()
        try:
            result = work()
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            say(f"{name} FAILED: {exc}\n{traceback.format_exc(limit=6)}")
            result = None
        else:
            if merge:
                self.figures.update(result)
            else:
                self.figures[name] = result
        self.seconds[name] = round(time.monotonic() - began, 1)
        say(f"{name} done in {self.seconds[name]} s")
        return result


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_all(bench: BenchStack, counts: Counts, run: Run) -> None:
    misp = bench.misp()
    say("seeding MISP")
    events = {key: seed.make_event(misp, n, f"bench {n} attributes") for key, n in SIZES.items()}
    big = seed.make_event(misp, OVERSIZED, f"bench {OVERSIZED} attributes") if run.wanted("size") else ""
    exported = exports.make_events(misp, SIZES) if run.wanted("exports") else {}
    event_id = events["10"]
    answer_bytes = len(json.dumps(misp.get_event(event_id, pythonify=False), separators=(",", ":")))
    if any(run.wanted(name) for name in ("compare", "size", "profile", "exports")):
        with floor.echo_service(bench), bench.service(bench.service_config("service-bridge")) as service:
            client = dxl.connect(bench.client_config("requester"))
            try:
                tuned = direct.tune(bench.misp())
                run.section("compare", lambda: compare.run(client, misp, tuned, event_id, answer_bytes, counts.compare),
                            merge=True)
                run.section("size", lambda: {
                    **size.compare(misp, client, events, dict(counts.size_reps)),
                    "oversized": size.oversized(misp, client, big, OVERSIZED, counts.oversized_reps),
                    "paging": size.paging(client, big, OVERSIZED)})
                pids = {"misp server": bench.info["pids"]["misp"], "mosquitto": bench.info["pids"]["broker"]}
                loads = profile.bridge_loads(event_id, events.get("1000"))
                run.section("profile", lambda: profile.run(client, loads, service.pid, pids, bench.workdir,
                                                           split_seconds=counts.profile_split_s,
                                                           sample_seconds=counts.profile_sample_s))
                run.section("exports", lambda: exports.run(misp, client, bench.info["misp_url"], exported,
                                                           counts.exports_scale))
            finally:
                dxl.destroy_all([client])
    run.section("breakdown", lambda: breakdown.run(bench, event_id, n=counts.breakdown_n))
    run.section("peer", lambda: peer.run(bench, event_id, sequential_n=counts.peer_sequential,
                                         level_n=counts.peer_level))
    run.section("notifications", lambda: notify.run(bench, count=counts.notifications, rate=counts.notifications_rate))
    run.section("start", lambda: start.run(bench, event_id, runs=counts.start_runs))
    run.section("feed", lambda: feed.run(bench, backlog=counts.feed_backlog))
    run.section("feed_formats", lambda: feed.run(bench, backlog=counts.feed_backlog, formats=FEED_FORMATS))


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"bench: stopped by signal {signum}")  # unwinds, so every child is stopped by PID


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m bench", description="dxlmispservice benchmarks.")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, not for the README)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=[], help="run only these sections")
    parser.add_argument("--keep", action="store_true", help="keep bench/out/work from the previous run")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else Counts()
    workdir = OUT / "work"
    if workdir.exists() and not args.keep:
        shutil.rmtree(workdir)
    began = time.monotonic()
    info = machine()
    run = Run(set(args.only))
    tls = misp_tls()
    say(f"starting the dev stack in {workdir} (MISP over {'HTTPS' if tls else 'HTTP'})")
    try:
        with bench_stack(workdir, tls=tls) as bench:
            run_all(bench, counts, run)
    except Exception as exc:  # the stack itself, or seeding
        run.errors["stack"] = f"{type(exc).__name__}: {exc}"
        say(f"FAILED: {traceback.format_exc()}")
    targets = report.targets(run.figures)
    document = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info,
        "misp_scheme": "https" if tls else "http", "quick": args.quick, "counts": asdict(counts),
        "elapsed_s": round(time.monotonic() - began, 1), "section_seconds": run.seconds,
        "figures": run.figures, "targets": targets, "errors": run.errors,
    }
    path = report.write_json(report.json_path(), document)
    print(report.markdown(run.figures, targets, run.errors, machine=describe(info)))
    if "profile" in run.figures:
        print(profile.markdown(run.figures["profile"]))
    say(f"wrote {path} in {document['elapsed_s']} s")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
