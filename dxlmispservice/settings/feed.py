"""``[Feed]``: the optional event feed: its interval, look-back, filters and state file."""
from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass
from datetime import date, datetime

from dxlmispservice.settings.formats import FORMAT_NAMES
from dxlmispservice.settings.section import Section

FEED = "Feed"
FEED_KEYS = ("enabled", "interval", "lookback", "tags", "notTags", "orgs", "publishedOnly", "threatLevels",
             "pageSize", "stateFile", "formats")
#: The formats the feed can publish in: MISP's own, and those of dxlmispservice.formats.
FEED_FORMATS = ("misp",) + FORMAT_NAMES
_DURATION = re.compile(r"^\d+[smhdw]$")


@dataclass(frozen=True)
class FeedSettings:
    """The optional event feed (``[Feed]``)."""

    enabled: bool = False
    interval: float = 60.0
    lookback: str = "1d"
    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    published_only: bool = False
    threat_levels: tuple[int, ...] = ()
    page_size: int = 100
    state_file: str = "misp-feed-state.json"
    formats: tuple[str, ...] = ("misp",)


def parse(parser: configparser.RawConfigParser, base_dir: str | None) -> FeedSettings | None:
    section = Section(parser, FEED, FEED_KEYS, base_dir)
    if not section.boolean("enabled", False):
        return None
    lookback = section.text("lookback", "1d") or "1d"
    if not is_lookback(lookback):
        raise section.error("lookback", f"{lookback!r} is neither a duration nor a date",
                            "a duration such as 30m, 12h, 7d, 2w, or an ISO date such as 2024-01-31")
    levels = section.listing("threatLevels")
    if any(level not in ("1", "2", "3", "4") for level in levels):
        raise section.error("threatLevels", f"{','.join(levels)!r} has a value other than 1-4",
                            "MISP threat level ids 1 (high), 2 (medium), 3 (low), 4 (undefined), "
                            "separated by commas")
    formats = section.listing("formats") or ("misp",)
    unknown = [name for name in formats if name not in FEED_FORMATS]
    if unknown:
        raise section.error("formats", f"{', '.join(unknown)} is not a format", ", ".join(FEED_FORMATS)
                            + ", separated by commas")
    state_file = section.path("stateFile", must_exist=False) or os.path.abspath(
        os.path.join(base_dir or ".", FeedSettings.state_file))
    return FeedSettings(
        enabled=True,
        interval=section.number("interval", 60.0, minimum=0.1),
        lookback=lookback,
        tags=section.listing("tags"),
        not_tags=section.listing("notTags"),
        orgs=section.listing("orgs"),
        published_only=section.boolean("publishedOnly", False),
        threat_levels=tuple(int(level) for level in levels),
        page_size=section.integer("pageSize", 100, minimum=1, maximum=10_000),
        state_file=state_file,
        formats=formats,
    )


def is_lookback(value: str) -> bool:
    """A duration (``30m``, ``12h``, ``7d``) or an ISO date or date-time."""
    if _DURATION.match(value):
        return True
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            parse(value)
            return True
        except ValueError:
            continue
    return False
