"""Which events the feed (and ``fetch_events``) carries: tags, tags to leave out, organisations, published
only, threat levels; from the ``[Feed]`` settings or a request, each mapped to one restSearch filter."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dxlmispservice.errors import InvalidArguments
from dxlmispservice.events.feedstate import CHANGES, PUBLICATIONS

#: The longest tag or organisation name a request's filters may hold (MISP's names are at most 255).
MAX_FILTER_CHARS = 255
#: The most values one filter of a request may hold.
MAX_FILTER_VALUES = 100


@dataclass(frozen=True)
class Filters:
    """Which events the feed carries; each field maps to one restSearch filter."""

    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    published_only: bool = False
    threat_levels: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> Filters:
        """The filters of a ``FeedSettings``."""
        return cls(tuple(settings.tags), tuple(settings.not_tags), tuple(settings.orgs),
                   bool(settings.published_only), tuple(int(t) for t in settings.threat_levels))

    @classmethod
    def from_payload(cls, data: Any) -> Filters:
        """The filters of a request (``{"tags": [...], "not_tags": [...], "orgs": [...],
        "published_only": bool, "threat_levels": [1, 2]}``, every key optional); InvalidArguments if bad."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidArguments("filters must be an object")
        known = {"tags", "not_tags", "orgs", "published_only", "threat_levels"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArguments(f"unknown filters {unknown}; accepted: {sorted(known)}")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(
                    isinstance(v, str) and 0 < len(v) <= MAX_FILTER_CHARS and "\0" not in v for v in value):
                raise InvalidArguments(f"filters.{key} must be a list of non-empty strings of at most "
                                       f"{MAX_FILTER_CHARS} characters, with no NUL character")
            if len(value) > MAX_FILTER_VALUES:
                raise InvalidArguments(f"filters.{key} takes at most {MAX_FILTER_VALUES} values")
            return tuple(value)

        levels = data.get("threat_levels", [])
        if not isinstance(levels, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4 for v in levels):
            raise InvalidArguments("filters.threat_levels must be a list of integers from 1 to 4")
        published = data.get("published_only", False)
        if not isinstance(published, bool):
            raise InvalidArguments("filters.published_only must be true or false")
        return cls(strings("tags"), strings("not_tags"), strings("orgs"), published, tuple(levels))

    @property
    def watermark(self) -> str:
        """The field the feed follows: ``publish_timestamp`` with published_only, else ``timestamp``."""
        return PUBLICATIONS if self.published_only else CHANGES

    def to_payload(self) -> dict[str, Any]:
        """The request form of the filters that are set (what :meth:`from_payload` reads)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items() if value}

    def search_kwargs(self) -> dict[str, Any]:
        """The restSearch arguments (PyMISP ``search`` keywords); not-tags use MISP's ``!`` negation."""
        kwargs: dict[str, Any] = {}
        if self.tags or self.not_tags:
            kwargs["tags"] = list(self.tags) + [f"!{tag}" for tag in self.not_tags]
        if self.orgs:
            kwargs["org"] = list(self.orgs)
        if self.published_only:
            kwargs["published"] = True
        if self.threat_levels:
            kwargs["threat_level_id"] = list(self.threat_levels)
        return kwargs
