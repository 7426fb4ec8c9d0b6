"""Exports: ``export_event`` on events of 10, 100 and 1,000 attributes in each format, against direct
``get_event`` plus the same conversion in the bench process, and against the conversion module alone.

The events are the size section's kind (``ip-dst`` indicators), with ``tlp:amber``, an ATT&CK technique
tag and one sighting, so that every format has its markings, technique and sighting to write. For each
size and format three steps are timed sequentially, interleaved in rounds (p50/p99):

- ``module``: :func:`dxlmispservice.formats.export` on the event already decoded (what the format costs);
- ``direct``: PyMISP ``get_event`` from the bench process, then the same ``export`` (what a consumer that
  converts for itself pays);
- ``bridge``: the service's ``export_event`` topic, answer decoded. A document bigger than the service's
  ``maxResponseSize`` (STIX at 1,000 attributes is about 2 MB) is error 5, as it must be; the bridge is
  then timed as the paging its advice asks for (``page``/``limit`` slices of :data:`SLICE` attributes,
  every slice fetched), and marked ``paged``.

Then each module is profiled alone (cProfile) on the 1,000-attribute event: the share of its time in each
top-level package, the largest first, and its top functions by own time: what dominates.

Figures (``figures["exports"]``)::

    {"sizes": {"10"|"100"|"1000": {fmt: {"bytes": int, "module": Latency, "direct": Latency,
                                         "bridge": Latency, "paged": bool, "slices": int}}},
     "profile": {fmt: {"seconds": float, "packages": [[name, percent]], "top_self": [[function, percent]]}}}
"""
from __future__ import annotations

import cProfile
import json
import pstats
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from dxlclient.client import DxlClient

from dxlmispservice.errors import ResponseTooLarge
from dxlmispservice.formats import export
from dxlmispservice.names import request_topic
from dxlmispservice.settings.formats import FORMAT_NAMES, FormatSettings, with_misp_url

from . import dxl, seed
from .compare import rounds
from .stats import Samples

SLICE = 250
TAGS = ("tlp:amber", 'misp-galaxy:mitre-attack-pattern="Phishing - T1566"')
#: Sequential repetitions per size: cheap formats, and the two STIX ones (misp-stix takes seconds at 1,000).
REPS = {"10": 20, "100": 10, "1000": 5}
STIX_REPS = {"10": 10, "100": 5, "1000": 3}
ROUNDS = 3


def make_events(misp: Any, sizes: dict[str, int]) -> dict[str, str]:
    """An event per size with the tags and a sighting of its first indicator; their ids."""
    made: dict[str, str] = {}
    for key, count in sizes.items():
        event_id = seed.make_event(misp, count, f"bench export {count} attributes")
        event = misp.get_event(event_id, pythonify=False)["Event"]
        for tag in TAGS:
            misp.tag(event["uuid"], tag)
        misp.add_sighting({"value": seed.ip(0), "source": "bench sensor", "type": "0"})
        made[key] = event_id
    return made


def answer_check(format_name: str) -> Callable[[Any], bool]:
    """Whether a DXL answer is a whole export in ``format_name``."""
    def check(response: Any) -> bool:
        if not dxl.is_ok(response):
            return False
        body = json.loads((response.payload or b"").decode("utf-8").rstrip("\0"))
        return isinstance(body, dict) and body.get("format") == format_name and "document" in body
    return check


def document_bytes(document: Any) -> int:
    """The size of a document as the answer carries it."""
    text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return len(text.encode("utf-8"))


def _module_samples(event: dict[str, Any], name: str, settings: FormatSettings, n: int) -> Samples:
    samples = Samples()
    for _ in range(n):
        began = time.perf_counter()
        export(name, event, settings)
        samples.latencies.append(time.perf_counter() - began)
        samples.requests += 1
    samples.seconds = sum(samples.latencies)
    return samples


def _direct_samples(misp: Any, event_id: str, name: str, settings: FormatSettings, n: int) -> Samples:
    samples = Samples()
    for _ in range(n):
        began = time.perf_counter()
        export(name, misp.get_event(event_id, pythonify=False), settings)
        samples.latencies.append(time.perf_counter() - began)
        samples.requests += 1
    samples.seconds = sum(samples.latencies)
    return samples


def _paged_samples(client: DxlClient, event_id: str, name: str, attributes: int, n: int) -> Samples:
    """``n`` full pagings of the export: every slice of :data:`SLICE` attributes, timed together."""
    topic, check = request_topic("export_event"), answer_check(name)
    samples = Samples()
    for _ in range(n):
        began = time.perf_counter()
        for page in range(1, -(-attributes // SLICE) + 1):
            payload = json.dumps({"event": event_id, "format": name, "page": page, "limit": SLICE}).encode()
            if not check(dxl.request_once(client, topic, payload, timeout=120)):
                samples.errors += 1
        samples.latencies.append(time.perf_counter() - began)
        samples.requests += 1
    samples.seconds = sum(samples.latencies)
    return samples


def compare(misp: Any, client: DxlClient, misp_url: str, events: dict[str, str],
            reps_scale: float = 1.0) -> dict[str, Any]:
    """module, direct and bridge for every size and format (see the module docstring)."""
    settings = with_misp_url(FormatSettings(), misp_url)
    topic = request_topic("export_event")
    out: dict[str, Any] = {}
    for size, event_id in events.items():
        event = misp.get_event(event_id, pythonify=False)
        out[size] = {}
        for name in FORMAT_NAMES:
            reps = max(1, round((STIX_REPS if name.startswith("stix") else REPS)[size] * reps_scale))
            document = export(name, event, settings).document
            payload = json.dumps({"event": event_id, "format": name}).encode()
            first = dxl.request_once(client, topic, payload, timeout=120)
            paged = not dxl.is_ok(first) and int(first.error_code) == ResponseTooLarge.code
            if not paged and not answer_check(name)(first):
                raise RuntimeError(f"export_event {name} of {size} attributes: error {first.error_code} "
                                   f"{first.error_message}")
            steps: dict[str, Callable[[int], Samples]] = {
                "module": lambda k, n=name: _module_samples(event, n, settings, k),
                "direct": lambda k, n=name, e=event_id: _direct_samples(misp, e, n, settings, k),
                "bridge": (lambda k, n=name, e=event_id, a=int(size): _paged_samples(client, e, n, a, k)) if paged
                else (lambda k, n=name, p=payload: dxl.sequential_samples(client, topic, p, k, check=answer_check(n),
                                                                          timeout=120))}
            pooled = rounds(steps, reps, min(ROUNDS, reps))
            for step, got in pooled.items():
                if got.errors or got.lost:
                    raise RuntimeError(f"{step} export {name} of {size} attributes: {got.errors} wrong answers")
            out[size][name] = {"bytes": document_bytes(document), "paged": paged,
                               "slices": -(-int(size) // SLICE) if paged else 1,
                               **{step: got.latency().to_dict() for step, got in pooled.items()}}
    return out


def package_of(filename: str) -> str:
    """The top-level package a profiled function's file belongs to (``stdlib`` for the standard library)."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/dxlmispservice/" in filename:
        return "dxlmispservice"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    return "stdlib"


def profile_module(event: dict[str, Any], name: str, settings: FormatSettings, top: int = 6) -> dict[str, Any]:
    """One export under cProfile: seconds, the share of own time per package, the top functions by own time."""
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    export(name, event, settings)
    profiler.disable()
    seconds = time.perf_counter() - began
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    packages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for (filename, line, function), (_, _, own, _, _) in stats.items():
        packages[package_of(filename)] += own
        functions[f"{function} ({package_of(filename)})"] += own
    total = sum(packages.values()) or 1.0
    return {"seconds": round(seconds, 4),
            "packages": [[p, round(100 * s / total, 1)] for p, s in packages.most_common()],
            "top_self": [[f, round(100 * s / total, 1)] for f, s in functions.most_common(top)]}


def run(misp: Any, client: DxlClient, misp_url: str, events: dict[str, str], reps_scale: float = 1.0) -> dict[str, Any]:
    """The exports figures: the comparison, then each module profiled on the biggest event."""
    sizes = compare(misp, client, misp_url, events, reps_scale)
    settings = with_misp_url(FormatSettings(), misp_url)
    biggest = misp.get_event(events[max(events, key=int)], pythonify=False)
    return {"sizes": sizes, "profile": {name: profile_module(biggest, name, settings) for name in FORMAT_NAMES}}
