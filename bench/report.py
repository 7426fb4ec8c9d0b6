"""The bench's report: the targets computed from the figures, a markdown table, and the JSON document.

``figures`` is a dict of sections (``floor``, ``direct``, ``bridge``, ``size``, ``notifications``, ``feed``,
``peer``, ``start``), each filled by its module with plain JSON values (see each module's docstring).
A section that failed is absent from ``figures`` and named in ``errors``; its targets then have the value
None and are not met.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .stats import ratio

CALLS = ("search", "get_event")
LEVELS = ("1", "4", "16", "64")
DEFAULT_JSON = Path(__file__).resolve().parent / "out" / "latest.json"

#: name -> (rule, bar, what it is)
TARGETS: dict[str, tuple[str, float, str]] = {
    "added_latency_over_floor": ("<=", 1.5, "(bridge p50 - direct p50) / floor p50, worst call"),
    "throughput_16_vs_direct": (">=", 0.7, "bridge at 16 requesters / direct with 16 threads, worst call"),
    "size_1000_vs_direct": ("<=", 1.5, "get_event of 1,000 attributes: bridge p50 / direct p50"),
    "notifications_lost": ("<=", 0, "ZeroMQ frames not forwarded as DXL events"),
    "notifications_rate": (">=", 1000, "ZeroMQ -> DXL events forwarded per second"),
    "feed_duplicates": ("<=", 0, "feed events sent twice for a 5,000-event backlog"),
    "feed_lost": ("<=", 0, "backlog events never sent on the feed"),
    "start_s": ("<=", 2.0, "python -m dxlmispservice: spawn to registered and answering, median s"),
    "peer_legacy_search_ratio": ("<=", 1.0, "legacy search p50: ours / dxlmispservice 0.1.5"),
    "exports_ctim_vs_stix2_1000": ("<=", 0.1, "1,000 attributes, module alone: CTIM p50 / misp-stix STIX 2.1 p50"),
    "exports_bridge_vs_direct_1000": ("<=", 1.1, "1,000 attributes: export_event p50 / direct get_event + the same "
                                                 "conversion p50, worst format answered whole"),
    "feed_formats_duplicates": ("<=", 0, "feed with formats misp,ctim: events sent twice, all formats, 5,000 backlog"),
    "feed_formats_lost": ("<=", 0, "feed with formats misp,ctim: backlog events never sent, all formats"),
}


def dig(figures: Mapping[str, Any], *path: str) -> Any:
    """``figures[p0][p1]...``, or None where a key is missing."""
    node: Any = figures
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _worst(values: list[float | None], pick: Callable[[list[float]], float]) -> float | None:
    present = [v for v in values if v is not None]
    return pick(present) if present and len(present) == len(values) else None


def _added_latency(figures: Mapping[str, Any]) -> float | None:
    floor = dig(figures, "floor", "sequential", "p50_ms")
    values = []
    for call in CALLS:
        bridge = dig(figures, "bridge", call, "sequential", "p50_ms")
        direct = dig(figures, "direct", call, "sequential", "p50_ms")
        values.append(None if bridge is None or direct is None else ratio(bridge - direct, floor))
    return _worst(values, max)


def _throughput_16(figures: Mapping[str, Any]) -> float | None:
    return _worst([ratio(dig(figures, "bridge", call, "throughput", "16", "rate"),
                         dig(figures, "direct", call, "threads16", "rate")) for call in CALLS], min)


def target_values(figures: Mapping[str, Any]) -> dict[str, float | None]:
    """The value of each target, computed from the figures (None where a figure is missing)."""
    return {
        "added_latency_over_floor": _added_latency(figures),
        "throughput_16_vs_direct": _throughput_16(figures),
        "size_1000_vs_direct": ratio(dig(figures, "size", "1000", "bridge", "p50_ms"),
                                     dig(figures, "size", "1000", "direct", "p50_ms")),
        "notifications_lost": dig(figures, "notifications", "lost"),
        "notifications_rate": dig(figures, "notifications", "rate"),
        "feed_duplicates": dig(figures, "feed", "duplicates"),
        "feed_lost": dig(figures, "feed", "lost"),
        "start_s": dig(figures, "start", "median_s"),
        "peer_legacy_search_ratio": ratio(dig(figures, "peer", "ours", "search", "sequential", "p50_ms"),
                                          dig(figures, "peer", "orig", "search", "sequential", "p50_ms")),
        "exports_ctim_vs_stix2_1000": ratio(dig(figures, "exports", "sizes", "1000", "ctim", "module", "p50_ms"),
                                            dig(figures, "exports", "sizes", "1000", "stix2", "module", "p50_ms")),
        "exports_bridge_vs_direct_1000": _export_bridge(figures),
        "feed_formats_duplicates": dig(figures, "feed_formats", "duplicates"),
        "feed_formats_lost": dig(figures, "feed_formats", "lost"),
    }


def _export_bridge(figures: Mapping[str, Any]) -> float | None:
    """The worst bridge / direct p50 ratio at 1,000 attributes over the formats answered whole (not paged)."""
    formats = dig(figures, "exports", "sizes", "1000") or {}
    whole = [entry for entry in formats.values() if not entry.get("paged")]
    if not whole:
        return None
    return _worst([ratio(dig(e, "bridge", "p50_ms"), dig(e, "direct", "p50_ms")) for e in whole], max)


def met(rule: str, value: float | None, bar: float) -> bool:
    """Whether ``value`` meets ``bar`` under ``rule`` (``<=`` or ``>=``); a missing value never does."""
    if value is None:
        return False
    if rule == "<=":
        return value <= bar
    if rule == ">=":
        return value >= bar
    raise ValueError(f"unknown rule {rule!r}")


def targets(figures: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"value", "bar", "met", "rule", "what"}}`` for every target in :data:`TARGETS`."""
    values = target_values(figures)
    out: dict[str, dict[str, Any]] = {}
    for name, (rule, bar, what) in TARGETS.items():
        value = values[name]
        shown = round(value, 3) if isinstance(value, float) else value
        out[name] = {"value": shown, "bar": bar, "met": met(rule, value, bar), "rule": rule, "what": what}
    return out


# --- the markdown table ---------------------------------------------------------------------------------------
def ms(latency: Mapping[str, Any] | None) -> str:
    """``"p50 / p99 ms"`` of a Latency dict, or an em dash."""
    if not latency:
        return "—"
    return f"{latency['p50_ms']:.2f} / {latency['p99_ms']:.2f} ms"


def rate(throughput: Mapping[str, Any] | None) -> str:
    """``"N req/s"`` of a Throughput dict (with its errors and losses if any), or an em dash."""
    if not throughput:
        return "—"
    text = f"{throughput['rate']:.0f}/s"
    trouble = [f"{throughput[k]} {k}" for k in ("errors", "lost") if throughput.get(k)]
    return text + (f" ({', '.join(trouble)})" if trouble else "")


def times(value: float | None) -> str:
    """``"1.23×"``, or an em dash."""
    return "—" if value is None else f"{value:.2f}×"


def _rates(section: Mapping[str, Any] | None) -> str:
    if not section:
        return "—"
    return " / ".join(f"{section[level]['rate']:.0f}" if level in section else "—" for level in LEVELS) + " req/s"


def rows(figures: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """The table rows: (measure, ours, baseline and its value, ratio)."""
    out: list[tuple[str, str, str, str]] = []
    floor = figures.get("floor")
    if floor:
        out.append(("Floor: echo round trip, sequential (p50 / p99)", ms(floor.get("sequential")), "", ""))
        out.append(("Floor: echo throughput at 1 / 4 / 16 / 64 in flight", _rates(floor.get("throughput")), "", ""))
        sized = floor.get("sized")
        if sized:
            out.append((f"Fabric context: small request, {sized['bytes']:,}-byte answer, sequential",
                        ms(sized.get("sequential")), f"floor {ms(floor.get('sequential'))}",
                        times(ratio(dig(sized, "sequential", "p50_ms"), dig(floor, "sequential", "p50_ms")))))
    for call in CALLS:
        direct = dig(figures, "direct", call) or {}
        bridge = dig(figures, "bridge", call) or {}
        kind = "legacy search(eventid)" if call == "search" else "get_event"
        if direct:
            out.append((f"Direct PyMISP {kind}, sequential", ms(direct.get("sequential")), "", ""))
            out.append((f"Direct PyMISP {kind}, 16 threads", rate(direct.get("threads16")),
                        f"p50 / p99 {ms(direct.get('threads16_latency'))}", ""))
        if bridge:
            seq, dseq = bridge.get("sequential"), direct.get("sequential")
            floor_p50 = dig(figures, "floor", "sequential", "p50_ms")
            added = None if not seq or not dseq else seq["p50_ms"] - dseq["p50_ms"]
            out.append((f"Bridge {kind}, sequential", ms(seq), f"direct {ms(dseq)}",
                        times(ratio(seq["p50_ms"] if seq else None, dseq["p50_ms"] if dseq else None))))
            out.append((f"Bridge {kind}: added p50 over direct", "—" if added is None else f"{added:.2f} ms",
                        "—" if floor_p50 is None else f"floor p50 {floor_p50:.2f} ms",
                        times(ratio(added, floor_p50)) + " of floor"))
            out.append((f"Bridge {kind} throughput at 1 / 4 / 16 / 64 requesters", _rates(bridge.get("throughput")),
                        f"direct 16 threads {rate(direct.get('threads16'))}",
                        times(ratio(dig(bridge, "throughput", "16", "rate"), dig(direct, "threads16", "rate")))
                        + " at 16"))
            out.append((f"Bridge {kind} latency at 16 requesters", ms(dig(bridge, "latency_at", "16")),
                        f"direct 16 threads {ms(direct.get('threads16_latency'))}", ""))
    out.extend(_breakdown_rows(figures))
    out.extend(_size_rows(figures.get("size") or {}))
    out.extend(_export_rows(figures.get("exports") or {}))
    out.extend(_other_rows(figures))
    return out


def breakdown(entry: Mapping[str, Any]) -> dict[str, float] | None:
    """p50 ms per part of one bridged call, from a ``figures["breakdown"][call]`` entry (see breakdown.py)."""
    stages = entry.get("stages") or {}
    p50 = {stage: dig(stages, stage, "p50_ms") for stage in ("queue", "message", "callback", "handler", "misp")}
    total = dig(entry, "bridge", "p50_ms")
    if total is None or any(value is None for value in p50.values()):
        return None
    return {"MISP call (PyMISP)": p50["misp"], "service's own work": p50["handler"] - p50["misp"],
            "sending the answer": p50["callback"] - p50["handler"],
            "dxlclient decode + dispatch": p50["message"] - p50["callback"], "incoming pool queue": p50["queue"],
            "fabric, requester and paho (the rest)": total - p50["message"] - p50["queue"]}


def _breakdown_rows(figures: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    for call in CALLS:
        entry = dig(figures, "breakdown", call)
        parts = breakdown(entry) if entry else None
        if parts is None:
            continue
        direct = dig(figures, "direct", call, "sequential", "p50_ms")
        out.append((f"Where a bridged {call} goes (p50, timers in the service)",
                    "; ".join(f"{name} {value:.2f}" for name, value in parts.items()) + " ms",
                    f"total {entry['bridge']['p50_ms']:.2f} ms; direct {direct:.2f} ms" if direct is not None
                    else f"total {entry['bridge']['p50_ms']:.2f} ms", ""))
    return out


def _size_rows(size: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    for count in ("10", "100", "1000"):
        if count in size:
            entry = size[count]
            out.append((f"get_event, {int(count):,} attributes ({entry.get('bytes', 0):,} B)", ms(entry.get("bridge")),
                        f"direct {ms(entry.get('direct'))}",
                        times(ratio(dig(entry, "bridge", "p50_ms"), dig(entry, "direct", "p50_ms")))))
    oversized = size.get("oversized")
    if oversized:
        out.append((f"Oversized answer ({oversized['attributes']:,} attributes) -> error {oversized.get('error_code')}",
                    ms(oversized.get("latency")), f"direct get_event {ms(oversized.get('direct'))}", ""))
    paging = size.get("paging")
    if paging:
        out.append((f"Paging a {paging['attributes']:,}-attribute event ({paging['pages']} pages)",
                    f"{paging['unique']:,} of {paging['attributes']:,} back in {paging['seconds']:.2f} s",
                    "whole" if paging.get("whole") else "NOT whole", ""))
    return out


def _export_rows(exports: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    for count, formats in (exports.get("sizes") or {}).items():
        for name, entry in formats.items():
            how = f"in {entry['slices']} slices of export_event" if entry.get("paged") else "export_event"
            out.append((f"Export {name}, {int(count):,} attributes ({entry['bytes']:,} B), {how}",
                        ms(entry.get("bridge")),
                        f"direct get_event + conversion {ms(entry.get('direct'))}; "
                        f"module alone {ms(entry.get('module'))}",
                        times(ratio(dig(entry, "bridge", "p50_ms"), dig(entry, "direct", "p50_ms")))))
    for name, entry in (exports.get("profile") or {}).items():
        shares = ", ".join(f"{package} {share:.0f} %" for package, share in entry.get("packages", [])[:4])
        out.append((f"Where the {name} module's time goes (1,000 attributes, cProfile own time)", shares,
                    f"{entry['seconds'] * 1000:.0f} ms under the profiler", ""))
    return out


def _other_rows(figures: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    notes = figures.get("notifications")
    if notes:
        out.append((f"ZeroMQ -> DXL: {notes['sent']:,} frames offered at {notes['send_rate']:.0f}/s",
                    f"{notes['rate']:.0f}/s, p50 / p99 {ms(notes.get('latency'))}",
                    f"lost {notes['lost']}, duplicates {notes['duplicates']}", ""))
    feed = figures.get("feed")
    if feed:
        out.append((f"Feed: backlog of {feed['backlog']:,} events",
                    f"{feed['seconds']:.1f} s ({feed['rate']:.0f} events/s)",
                    f"duplicates {feed['duplicates']}, lost {feed['lost']}", ""))
    formats = figures.get("feed_formats")
    if formats:
        out.append((f"Feed with formats {','.join(formats.get('formats', {}))}: backlog of "
                    f"{formats['backlog']:,} events",
                    f"{formats['seconds']:.1f} s ({formats['rate']:.0f} events/s in every format)",
                    f"duplicates {formats['duplicates']}, lost {formats['lost']}",
                    times(ratio(formats.get("seconds"), dig(figures, "feed", "seconds"))) + " of the misp-only feed"))
    peer = figures.get("peer")
    if peer:
        for call in CALLS:
            ours, orig = dig(peer, "ours", call), dig(peer, "orig", call)
            if not ours or not orig:
                continue
            out.append((f"Peer ({peer.get('misp_url', '').split(':')[0]} MISP): {call} sequential, ours vs "
                        f"dxlmispservice {peer.get('version')}", ms(ours.get("sequential")),
                        f"orig {ms(orig.get('sequential'))}",
                        times(ratio(dig(ours, "sequential", "p50_ms"), dig(orig, "sequential", "p50_ms")))))
            out.append((f"Peer: {call} at 16 requesters, ours vs orig", rate(dig(ours, "throughput", "16")),
                        f"orig {rate(dig(orig, 'throughput', '16'))}",
                        times(ratio(dig(ours, "throughput", "16", "rate"), dig(orig, "throughput", "16", "rate")))))
    start = figures.get("start")
    if start:
        out.append(("Start: spawn to registered and answering (median)", f"{start['median_s']:.2f} s",
                    "runs " + ", ".join(f"{s:.2f}" for s in start.get("runs", [])), ""))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(figures: Mapping[str, Any], computed: Mapping[str, Mapping[str, Any]],
             errors: Mapping[str, str] | None = None, machine: str = "") -> str:
    """The figures table, then the targets table, then any section that failed."""
    lines = []
    if machine:
        lines += [f"Machine: {machine}", ""]
    lines += ["| Measure | Ours | Baseline (same run) | Ratio |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows(figures)]
    lines += ["", "| Target | Value | Bar | Met |", "|---|---|---|---|"]
    for name, target in computed.items():
        value = target["value"]
        shown = "—" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value))
        lines.append(f"| {name} | {shown} | {target['rule']} {target['bar']} | {'yes' if target['met'] else 'NO'} |")
    for section, message in (errors or {}).items():
        lines.append(f"\n**{section} failed:** {message}")
    return "\n".join(lines) + "\n"


def json_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the JSON goes: ``$BENCH_JSON``, else ``bench/out/latest.json``."""
    value = environ.get("BENCH_JSON", "").strip()
    return Path(value) if value else DEFAULT_JSON


def write_json(path: Path, document: Mapping[str, Any]) -> Path:
    """Write ``document`` to ``path`` atomically (a temp file, then a rename); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
