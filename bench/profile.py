"""Profile: where the service's CPU goes under the 16-requester bridge load.

For each call (legacy ``search``, modern ``get_event``):

1. **CPU split.** 16 requests are kept in flight for a few seconds while the CPU time of each process is
   read from ``/proc/PID/stat`` before and after: the service, the dev MISP server, mosquitto, and the
   bench itself (the requester). Divided by the requests answered, this gives CPU milliseconds per request
   for each part: what bounds the throughput on this 2-core machine.
2. **Sampling.** The same load again under ``py-spy record --nonblocking --gil`` (no pause of the
   service; only the thread holding the GIL is sampled, so a sample is Python CPU work, not a thread
   waiting for MISP's answer in ``recv``), collapsed stacks. The report gives the top functions by own
   time, and each busy sample put in one category (the first that matches, specific costs first: the
   ``trust_env`` scan, new connections to MISP, logging, JSON, PyMISP's object model, the HTTP exchange,
   the service's own code, msgpack, dxlclient and paho), so that the shares add up to 100 %.

py-spy comes from ``.venv`` (pinned in requirements.txt); without it, step 2 is skipped and says so.

Figures (``figures["profile"]``)::

    {"search"|"get_event": {"requests": int, "rate": float, "cpu_ms_per_request": {part: float},
                            "samples": int, "categories": {label: percent}, "top_self": [[frame, percent]],
                            "top_inclusive": [[frame, percent]], "raw": path}}
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dxlclient.client import DxlClient

from . import dxl
from .bridge import calls

CONCURRENCY = 16
RATE = 500
_LINE = re.compile(r":\d+\)$")

#: Known costs, (label, substrings): a sample goes to the first cost any of whose substrings is in any of its
#: frames, wherever in the stack it sits.
COSTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("requests trust_env scan (proxies, netrc)", ("merge_environment_settings", "get_environ_proxies",
                                                  "should_bypass_proxies", "proxy_bypass", "get_netrc_auth",
                                                  "getproxies")),
    ("new connection to MISP (connect, TLS handshake)", ("_new_conn", "HTTPConnection.connect",
                                                         "HTTPSConnection.connect", "do_handshake",
                                                         "ssl_wrap_socket", "_validate_conn")),
    ("closing connections", ("_real_close", "HTTPConnection.close", "SSLSocket.close", "socket.close")),
    ("logging", ("logging/",)),
    ("service: to_json walk over the result (passthrough.to_json)", ("to_json (dxlmispservice/api/passthrough.py",)),
    ("service: payload check (legacyargs.check)", ("check (dxlmispservice/api/legacyargs.py",)),
    ("service: answer JSON encode + redact (handler._encode)", ("RequestHandler._encode",)),
    ("JSON decode (PyMISP reading MISP's answer)", ("json/decoder.py", "loads (json/")),
    ("JSON encode, other", ("json/encoder.py", "dumps (json/")),
    ("inspect (signature binding)", ("inspect.py",)),
    ("PyMISP object model (mispevent/abstract)", ("pymisp/mispevent.py", "pymisp/abstract.py")),
)
#: Layers, (label, substrings): any other sample goes to the layer of its innermost frame that has one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP exchange with MISP (requests, urllib3, http.client, ssl)", ("requests/", "urllib3/", "http/client.py",
                                                                       "ssl.py")),
    ("PyMISP, other", ("pymisp/",)),
    ("service code, other (dxlmispservice/)", ("dxlmispservice/",)),
    ("msgpack (DXL message encoding)", ("msgpack",)),
    ("dxlclient + paho (DXL messaging, broker socket)", ("dxlclient/", "pahoproxy/")),
)
CATEGORIES = COSTS + LAYERS
#: Leaf frames of a thread that waits rather than works (py-spy cannot always tell).
WAITING = ("Condition.wait", "Event.wait", "Semaphore.acquire", "Queue.get", "_wait_for_tstate_lock",
           "select (selectors.py", "Thread.join", "sleep (")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class Load:
    """A load to profile under: ``concurrency`` requests kept in flight on ``topic``."""

    name: str
    topic: str
    payload: bytes
    check: Any
    concurrency: int = CONCURRENCY


def bridge_loads(event_id: str, big_event_id: str | None = None) -> list[Load]:
    """The bridge's two calls at 16 in flight, and get_event of a big event one at a time."""
    loads = [Load(name, topic, payload, check) for name, (topic, payload, check) in calls(event_id).items()]
    if big_event_id:
        topic, payload, check = calls(big_event_id)["get_event"]
        loads.append(Load("get_event_1000_attributes", topic, payload, check, concurrency=1))
    return loads


def cpu_split(client: DxlClient, load: Load, pids: Mapping[str, int], seconds: float) -> dict[str, Any]:
    """Run the load for ``seconds``; CPU ms per answered request of each process in ``pids`` and the bench."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_before = _self_cpu()
    throughput = dxl.in_flight_for(client, load.topic, load.payload, seconds, load.concurrency, check=load.check)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_after = _self_cpu()
    answered = max(throughput.requests - throughput.lost, 1)
    per_request = {name: round((after[name] - before[name]) / answered * 1000, 3) for name in pids}
    per_request["bench requester"] = round((bench_after - bench_before) / answered * 1000, 3)
    return {"concurrency": load.concurrency, "requests": throughput.requests, "errors": throughput.errors,
            "rate": round(throughput.rate, 1), "cpu_ms_per_request": per_request}


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on PATH; None when absent."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def sample(client: DxlClient, load: Load, pid: int, seconds: float, output: Path) -> dict[str, Any]:
    """py-spy the service while the load runs; the parsed profile."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy is not installed (pip install py-spy==0.4.3 into .venv)"}
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE),
               "--format", "raw", "--output", str(output), "--nonblocking", "--gil"]
    recorder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.3)  # let py-spy attach
    driver = threading.Thread(target=dxl.in_flight_for,
                              args=(client, load.topic, load.payload, seconds + 0.5, load.concurrency),
                              kwargs={"check": load.check}, daemon=True)
    driver.start()
    text, _ = recorder.communicate(timeout=seconds + 30)
    driver.join(seconds + 30)
    if recorder.returncode != 0 or not output.exists():
        return {"skipped": f"py-spy failed ({recorder.returncode}): {text.decode(errors='replace')[-500:]}"}
    parsed = parse_collapsed(output.read_text())
    return {**summarize(parsed), "raw": str(output)}


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """Collapsed stacks (``f1;f2;f3 count`` per line) as ``(frames root first, count)``."""
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def frame_name(frame: str) -> str:
    """A frame without its line number: ``func (path/file.py)``."""
    return _LINE.sub(")", frame)


def category(frames: list[str]) -> str:
    """The category of one stack (root first): the first matching cost, else the innermost frame's layer,
    else ``other``."""
    for label, needles in COSTS:
        if any(needle in frame for frame in frames for needle in needles):
            return label
    for frame in reversed(frames):
        for label, needles in LAYERS:
            if any(needle in frame for needle in needles):
                return label
    return "other"


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    """Busy samples (stacks whose leaf waits are left out), the share of each category, and the top frames
    by own and by inclusive samples; shares are percentages of the busy samples."""
    busy = [(frames, count) for frames, count in stacks
            if frames and not any(mark in frames[-1] for mark in WAITING)]
    total = sum(count for _, count in busy)
    waiting = sum(count for _, count in stacks) - total
    if total == 0:
        return {"samples": 0, "waiting_samples": waiting, "categories": {}, "top_self": [], "top_inclusive": []}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for frames, count in busy:
        own[frame_name(frames[-1])] += count
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += count
        categories[category(frames)] += count

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1)

    labels = [label for label, _ in CATEGORIES] + ["other"]
    return {
        "samples": total,
        "waiting_samples": waiting,
        "categories": {label: pct(categories[label]) for label in labels},
        "top_self": [[name, pct(n)] for name, n in own.most_common(top)],
        "top_inclusive": [[name, pct(n)] for name, n in inclusive.most_common(top * 3)
                          if not name.startswith(("Thread.", "_bootstrap", "<module>", "_WorkerThread",
                                                  "ThreadPool", "_worker"))][:top],
    }


def run(client: DxlClient, loads: list[Load], service_pid: int, pids: Mapping[str, int], out_dir: Path, *,
        split_seconds: float, sample_seconds: float) -> dict[str, Any]:
    """CPU split and py-spy profile of the service under each load."""
    out: dict[str, Any] = {}
    for load in loads:
        figures = cpu_split(client, load, {"service": service_pid, **pids}, split_seconds)
        figures.update(sample(client, load, service_pid, sample_seconds, out_dir / f"profile-{load.name}.txt"))
        out[load.name] = figures
    return out


def markdown(profile: Mapping[str, Any]) -> str:
    """The profile as short markdown lists, for the console."""
    lines = []
    for name, figures in profile.items():
        cpu = ", ".join(f"{part} {ms:.2f}" for part, ms in figures.get("cpu_ms_per_request", {}).items())
        lines.append(f"**{name} at {figures.get('concurrency')} in flight**: {figures.get('rate', 0):.0f}/s; "
                     f"CPU ms per request: {cpu}")
        if "skipped" in figures:
            lines.append(f"- profile skipped: {figures['skipped']}")
            continue
        lines.append(f"- service: {figures['samples']} busy samples; where they went:")
        for label, share in sorted(figures["categories"].items(), key=lambda item: -item[1]):
            if share:
                lines.append(f"  - {label}: {share}%")
        lines.append("- top own time: " + "; ".join(f"{frame} {share}%" for frame, share in figures["top_self"][:8]))
    return "\n".join(lines) + "\n"
