"""Feed: the time to publish a backlog of 5,000 events on the feed topic, with duplicates and losses counted.

MISP is emptied, ``backlog`` one-attribute events are created through PyMISP from several threads (timed
as ``create_seconds``), then a service with the feed on (``serviceUniqueId`` ``benchfeed``, a fresh state
file, the default page size, a one-day look-back) is started while the bench listens on
``/opendxl-misp/event/feed/benchfeed/event``. The run ends once every created uuid has arrived (plus a
grace period of two poll intervals, to catch a duplicate sent by the next poll) or nothing new arrives for
``idle`` seconds.

With ``formats`` (``[Feed] formats``, e.g. ``misp,ctim``: the ``feed_formats`` section) the bench listens on
every format's topic (``.../benchfeed/#``) and counts each format on its own; the top-level counts are then
the sums over the formats, and the run ends once every uuid has arrived in every format.

Figures (``figures["feed"]``, ``figures["feed_formats"]``)::

    {"backlog", "received", "unique", "duplicates", "lost", "unexpected": int, "seconds": float,
     "from_spawn_s": float, "rate": float, "create_seconds": float, "page_size": int, "interval": float,
     "formats": {format: {"received", "unique", "duplicates", "lost", "unexpected": int}}}

``seconds`` runs from the first feed event to the last; ``from_spawn_s`` from the service's start.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from dxlmispservice.settings import FeedSettings

from . import dxl, seed
from .env import BenchStack
from .notify import Arrivals

UNIQUE_ID = "benchfeed"
INTERVAL = 1.0


def uuid_of(body: Any) -> str | None:
    """The event uuid of a feed payload: ``{"Event": {...}}``, or another format's by its position."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("Event"), dict):
        value = body["Event"].get("uuid")
        return str(value) if value else None
    position = (body.get("feed") or {}).get("position") if isinstance(body.get("feed"), dict) else None
    return str(position["uuid"]) if isinstance(position, dict) and position.get("uuid") else None


def format_of(body: Any) -> str:
    """The format of a feed payload: its ``format``, or ``misp`` for MISP's own."""
    return str(body.get("format") or "misp") if isinstance(body, dict) else "misp"


def run(bench: BenchStack, *, backlog: int, threads: int = 8, idle: float = 30.0, deadline: float = 240.0,
        formats: tuple[str, ...] = ("misp",)) -> dict[str, Any]:
    """Create the backlog, start a feed service on it, and count what the feed publishes in each format."""
    bench.reset_misp()
    began = time.perf_counter()
    created = seed.make_many(bench.misp, backlog, threads=threads)
    create_seconds = time.perf_counter() - began
    client = dxl.connect(bench.client_config("requester"))
    arrivals = Arrivals()
    client.add_event_callback(f"/opendxl-misp/event/feed/{UNIQUE_ID}/#", arrivals)
    wanted = {(uuid, name) for uuid in created for name in formats}
    config = bench.service_config("service-feed", {"General": {"serviceUniqueId": UNIQUE_ID}, "Feed": {
        "enabled": "true", "interval": f"{INTERVAL:g}", "lookback": "1d", "formats": ",".join(formats)}})
    try:
        spawned = time.perf_counter()
        with bench.service(config):
            stop_at = time.monotonic() + deadline
            seen = 0
            while time.monotonic() < stop_at:
                complete = arrivals.wait(lambda items: wanted <= {(uuid_of(b), format_of(b)) for _, b in items},
                                         timeout=idle)
                with arrivals.lock:
                    now_seen = len(arrivals.items)
                if complete or now_seen == seen:
                    break
                seen = now_seen
            time.sleep(INTERVAL * 2 + 0.5)  # a duplicate would come with the next poll
            with arrivals.lock:
                items = list(arrivals.items)
    finally:
        dxl.destroy_all([client])
    return summarize(items, created, spawned, create_seconds, formats)


def counted(uuids: list[str | None], wanted: set[str]) -> dict[str, int]:
    """received, unique, duplicates, lost and unexpected of one format's arrivals."""
    counts = Counter(u for u in uuids if u in wanted)
    return {"received": sum(counts.values()), "unique": len(counts), "duplicates": sum(n - 1 for n in counts.values()),
            "lost": len(wanted - set(counts)), "unexpected": sum(1 for u in uuids if u not in wanted)}


def summarize(items: list[tuple[float, Any]], created: list[str], spawned: float, create_seconds: float,
              formats: tuple[str, ...] = ("misp",)) -> dict[str, Any]:
    """The figures from what arrived (``(arrival, payload)``) against the created uuids, per format and summed."""
    wanted = set(created)
    per_format = {name: counted([uuid_of(b) for _, b in items if format_of(b) == name], wanted) for name in formats}
    stray = sum(1 for _, b in items if format_of(b) not in formats)
    times = [at for (at, body) in items if uuid_of(body) in wanted]
    seconds = (max(times) - min(times)) if times else 0.0
    unique = min(c["unique"] for c in per_format.values())
    totals = {key: sum(c[key] for c in per_format.values()) for key in ("received", "duplicates", "lost")}
    return {
        "backlog": len(created), **totals, "unique": unique,
        "unexpected": sum(c["unexpected"] for c in per_format.values()) + stray,
        "seconds": round(seconds, 3), "from_spawn_s": round(max(times) - spawned, 3) if times else None,
        "rate": round(unique / seconds, 1) if seconds > 0 else 0.0, "create_seconds": round(create_seconds, 2),
        "page_size": FeedSettings.__dataclass_fields__["page_size"].default, "interval": INTERVAL,
        "formats": per_format,
    }
