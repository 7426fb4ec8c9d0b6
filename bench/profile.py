"""Profile: where the service's CPU goes under the 16-requester bridge load.

For each call (legacy ``search``, modern ``get_event``):

1. **CPU split.** 16 requests are kept in flight for a few seconds while the CPU time of each process is
   read from ``/proc/PID/stat`` before and after: the service, the dev MISP server, mosquitto, and the
   bench itself (the requester). Divided by the requests answered, this gives CPU milliseconds per request
   for each part: what bounds the throughput on this 2-core machine.
2. **Sampling.** The same load again under ``py-spy record --nonblocking`` (no pause of the service),
   collapsed stacks. Each stack is a sample of a busy thread. The report gives the top functions by own
   time, and the share of samples that pass through each of a few known costs (the ``trust_env`` scan of
   the environment, JSON encode/decode, TLS, new connections to MISP, PyMISP's object model, logging,
   dxlclient and paho, the service's own code).

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
from pathlib import Path
from typing import Any

from dxlclient.client import DxlClient

from . import dxl
from .bridge import calls

CONCURRENCY = 16
_LINE = re.compile(r":\d+\)$")

#: (label, substrings: a frame containing any of them counts)
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("requests trust_env scan (proxies, netrc)", ("merge_environment_settings", "get_environ_proxies",
                                                  "should_bypass_proxies", "proxy_bypass", "get_netrc_auth",
                                                  "getproxies")),
    ("JSON encode", ("json/encoder.py", "dumps (json/")),
    ("JSON decode", ("json/decoder.py", "loads (json/")),
    ("TLS (ssl.py)", ("ssl.py",)),
    ("new connections to MISP", ("_new_conn", "HTTPConnection.connect", "HTTPSConnection.connect")),
    ("requests + urllib3 + http.client (all)", ("requests/", "urllib3/", "http/client.py")),
    ("PyMISP object model (mispevent/abstract)", ("pymisp/mispevent.py", "pymisp/abstract.py")),
    ("PyMISP (all)", ("pymisp/",)),
    ("dxlclient + paho + msgpack", ("dxlclient/", "msgpack")),
    ("logging", ("logging/",)),
    ("redact (API key cut out)", ("redact (",)),
    ("inspect (signature binding)", ("inspect.py",)),
    ("service code (dxlmispservice/)", ("dxlmispservice/",)),
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def cpu_split(client: DxlClient, topic: str, payload: bytes, check: Any, pids: Mapping[str, int],
              seconds: float) -> dict[str, Any]:
    """Run the load for ``seconds``; CPU ms per answered request of each process in ``pids`` and the bench."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_before = _self_cpu()
    throughput = dxl.in_flight_for(client, topic, payload, seconds, CONCURRENCY, check=check)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_after = _self_cpu()
    answered = max(throughput.requests - throughput.lost, 1)
    per_request = {name: round((after[name] - before[name]) / answered * 1000, 3) for name in pids}
    per_request["bench requester"] = round((bench_after - bench_before) / answered * 1000, 3)
    return {"requests": throughput.requests, "errors": throughput.errors, "rate": round(throughput.rate, 1),
            "cpu_ms_per_request": per_request}


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on PATH; None when absent."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def sample(client: DxlClient, topic: str, payload: bytes, check: Any, pid: int, seconds: float,
           output: Path) -> dict[str, Any]:
    """py-spy the service while the load runs; the parsed profile."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy is not installed (pip install py-spy==0.4.3 into .venv)"}
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
               "--format", "raw", "--output", str(output), "--nonblocking"]
    recorder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.3)  # let py-spy attach
    load = threading.Thread(target=dxl.in_flight_for, args=(client, topic, payload, seconds + 0.5, CONCURRENCY),
                            kwargs={"check": check}, daemon=True)
    load.start()
    text, _ = recorder.communicate(timeout=seconds + 30)
    load.join(seconds + 30)
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


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    """Samples, share per category, top frames by own and by inclusive samples (percent of all samples)."""
    total = sum(count for _, count in stacks)
    if total == 0:
        return {"samples": 0, "categories": {}, "top_self": [], "top_inclusive": []}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for frames, count in stacks:
        if frames:
            own[frame_name(frames[-1])] += count
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += count
        for label, needles in CATEGORIES:
            if any(needle in frame for frame in frames for needle in needles):
                categories[label] += count

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1)

    return {
        "samples": total,
        "categories": {label: pct(categories[label]) for label, _ in CATEGORIES},
        "top_self": [[name, pct(n)] for name, n in own.most_common(top)],
        "top_inclusive": [[name, pct(n)] for name, n in inclusive.most_common(top * 2)
                          if not name.startswith(("Thread.", "_bootstrap", "<module>"))][:top],
    }


def run(client: DxlClient, event_id: str, service_pid: int, pids: Mapping[str, int], out_dir: Path, *,
        split_seconds: float, sample_seconds: float) -> dict[str, Any]:
    """CPU split and py-spy profile for each call, under 16 in flight."""
    out: dict[str, Any] = {}
    for name, (topic, payload, check) in calls(event_id).items():
        figures = cpu_split(client, topic, payload, check, {"service": service_pid, **pids}, split_seconds)
        figures.update(sample(client, topic, payload, check, service_pid, sample_seconds,
                              out_dir / f"profile-{name}.txt"))
        out[name] = figures
    return out


def markdown(profile: Mapping[str, Any]) -> str:
    """The profile as short markdown lists, for the console."""
    lines = []
    for name, figures in profile.items():
        cpu = ", ".join(f"{part} {ms:.2f}" for part, ms in figures.get("cpu_ms_per_request", {}).items())
        lines.append(f"**{name} at {CONCURRENCY} in flight**: {figures.get('rate', 0):.0f}/s; "
                     f"CPU ms per request: {cpu}")
        if "skipped" in figures:
            lines.append(f"- profile skipped: {figures['skipped']}")
            continue
        lines.append(f"- service samples: {figures['samples']}; share of busy samples through:")
        for label, share in figures["categories"].items():
            lines.append(f"  - {label}: {share}%")
        lines.append("- top own time: " + "; ".join(f"{frame} {share}%" for frame, share in figures["top_self"][:8]))
    return "\n".join(lines) + "\n"
