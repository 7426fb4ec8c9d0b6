"""Test data for the bench: MISP events of a given number of attributes, made through PyMISP.

Large events are created empty and filled in batches (one ``add_attribute`` call per batch), so that no
single request to the dev server is huge.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pymisp import MISPAttribute, MISPEvent

BATCH = 1000


def ip(i: int) -> str:
    """The ``i``-th of a series of distinct IPv4 addresses."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def attribute(i: int) -> MISPAttribute:
    """An ``ip-dst`` attribute with a distinct value and a comment, like a typical indicator."""
    attr = MISPAttribute()
    attr.from_dict(type="ip-dst", category="Network activity", value=ip(i), to_ids=True,
                   comment=f"bench indicator {i}")
    return attr


def _checked(result: Any, what: str) -> Any:
    if isinstance(result, dict) and result.get("errors"):
        raise RuntimeError(f"{what} failed: {result['errors']}")
    return result


def make_event(misp: Any, attributes: int, info: str) -> str:
    """Create an event with ``attributes`` distinct attributes; its id."""
    event = MISPEvent()
    event.info = info
    event.distribution = 0
    event.threat_level_id = 2
    event.analysis = 1
    for i in range(min(attributes, BATCH)):
        event.add_attribute(**attribute(i).to_dict())
    created = _checked(misp.add_event(event, pythonify=False), f"add_event({info})")
    event_id = str(created["Event"]["id"])
    for start in range(BATCH, attributes, BATCH):
        batch = [attribute(i) for i in range(start, min(start + BATCH, attributes))]
        _checked(misp.add_attribute(event_id, batch, pythonify=False), f"add_attribute batch at {start}")
    return event_id


def make_many(make_misp: Callable[[], Any], count: int, threads: int = 8, prefix: str = "bench feed") -> list[str]:
    """Create ``count`` one-attribute events from ``threads`` threads (a PyMISP each); their uuids."""
    uuids: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(count))

    def work() -> None:
        misp = make_misp()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            event = MISPEvent()
            event.info = f"{prefix} {i}"
            event.add_attribute(type="ip-dst", value=ip(i))
            try:
                created = _checked(misp.add_event(event, pythonify=False), "add_event")
            except Exception as exc:  # reported below; the others go on
                with lock:
                    failures.append(str(exc)[:200])
                continue
            with lock:
                uuids.append(str(created["Event"]["uuid"]))

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of {count} events failed, first: {failures[0]}")
    return uuids
