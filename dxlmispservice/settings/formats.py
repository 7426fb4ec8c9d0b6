"""``[Formats]``: how MISP events are written in the other formats (``export_event``, ``fetch_events`` and
the feed's formats); a request's ``options`` may override each key for that request."""
from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from dxlmispservice.errors import InvalidArguments
from dxlmispservice.settings.section import Section

FORMATS = "Formats"
#: The CTIM schema version the CTIM bundles declare by default: the release threatgrid/ctim states in
#: ``resources/ctim/version.edn`` (its ``ctim-schema-version`` is the release version; read 2026-12-02).
CTIM_SCHEMA_VERSION = "1.3.26"
#: The formats of dxlmispservice.formats, in the order the docs list them.
FORMAT_NAMES = ("stix2", "stix1", "ctim", "xsoar")
#: CTIM's TLP vocabulary.
CTIM_TLPS = ("red", "amber", "green", "white")


@dataclass(frozen=True)
class FormatSettings:
    """The ``[Formats]`` keys, by their INI names: see :data:`KEYS`."""

    ctim_source: str = "MISP"
    ctim_schema_version: str = CTIM_SCHEMA_VERSION
    ctim_tlp: str = "amber"
    ctim_external_id_prefix: str = "misp"
    stix1_org_name: str = "MISP"
    event_url: str = ""

    def with_options(self, options: Mapping[str, Any]) -> FormatSettings:
        """These settings with a request's ``options`` applied; InvalidArguments names a bad key or value."""
        changes: dict[str, str] = {}
        for key, value in options.items():
            attribute = _ATTRIBUTES.get(key)
            if attribute is None:
                raise InvalidArguments(f"options: unknown key {key!r}; accepted keys: {', '.join(KEYS)}")
            if not isinstance(value, str) or not value.strip() or len(value) > 1024:
                raise InvalidArguments(f"options: {key!r} must be a non-empty string of at most 1024 characters")
            changes[attribute] = value.strip()
        chosen = replace(self, **changes)
        problem = chosen.problem()
        if problem:
            raise InvalidArguments(f"options: {problem}")
        return chosen

    def problem(self) -> str:
        """What is wrong with these settings, or "" when nothing is."""
        if self.ctim_tlp not in CTIM_TLPS:
            return f"ctimTlp {self.ctim_tlp!r} is not one of {', '.join(CTIM_TLPS)}"
        if not all(c.isalnum() or c in "-_." for c in self.ctim_external_id_prefix):
            return f"ctimExternalIdPrefix {self.ctim_external_id_prefix!r} may hold only letters, digits, - _ ."
        if self.event_url and not self.event_url.startswith(("http://", "https://")):
            return f"eventUrl {self.event_url!r} is not an http(s) URL"
        return ""


def _ini_name(attribute: str) -> str:
    head, *rest = attribute.split("_")
    return head + "".join(part.capitalize() for part in rest)


#: INI key (and ``options`` key) -> FormatSettings attribute.
_ATTRIBUTES = {_ini_name(f.name): f.name for f in fields(FormatSettings)}
KEYS = tuple(_ATTRIBUTES)


def parse(parser: configparser.RawConfigParser, base_dir: str | None) -> FormatSettings:
    """``[Formats]`` (Settings fills an unset ``eventUrl`` in from MISP's URL: :func:`with_misp_url`)."""
    section = Section(parser, FORMATS, KEYS, base_dir)
    default = FormatSettings()
    settings = FormatSettings(**{attribute: section.text(key, getattr(default, attribute))
                                 for key, attribute in _ATTRIBUTES.items()})
    problem = settings.problem()
    if problem:
        key = problem.split(" ", 1)[0]
        raise section.error(key, problem.split(" ", 1)[1], _ACCEPTED[key])
    return settings


def with_misp_url(settings: FormatSettings, misp_url: str) -> FormatSettings:
    """``settings`` with ``eventUrl``, when unset, pointing at the event's page on ``misp_url``."""
    if settings.event_url:
        return settings
    return replace(settings, event_url=misp_url.rstrip("/") + "/events/view/{uuid}")


_ACCEPTED = {"ctimTlp": ", ".join(CTIM_TLPS), "ctimExternalIdPrefix": "letters, digits, - _ .",
             "eventUrl": "an http(s) URL in which {uuid} and {id} stand for the event's"}
