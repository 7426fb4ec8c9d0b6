"""MISP events in the formats the SOC's other systems read (STIX 2.1, the STIX 1.2 Incident, Cisco XDR CTIM
bundles, XSOAR incidents): one pure module per format, a MISP event in and a document out, no I/O.

Each format module has ``convert(event, settings) -> Export``: ``event`` is MISP's JSON of one event (as
``get_event`` answers it, ``{"Event": {...}}`` or the inner object), ``settings`` the ``[Formats]``
settings. :func:`export` picks the module by name (importing it on first use: misp-stix takes a second to
import), hands it its own copy of the event when the module sets ``CHANGES_ITS_INPUT`` (misp-stix changes
the dict it is given; our own converters only read it, and copying was most of their time), and turns a
converter's failure into :class:`~dxlmispservice.errors.ExportFailed`.
"""
from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dxlmispservice.errors import ExportFailed, InvalidArguments, MispServiceError
from dxlmispservice.settings.formats import FORMAT_NAMES, FormatSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export:
    """One event in one format: the document (a JSON object, or XML text), its media type, and how many
    parts of the event it left out, by reason."""

    format: str
    document: Any
    content_type: str
    skipped: Mapping[str, int] = field(default_factory=dict)

    def answer(self) -> dict[str, Any]:
        """The JSON answer of ``export_event``: ``{"format", "content_type", "document", "skipped"}``."""
        return {"format": self.format, "content_type": self.content_type, "document": self.document,
                "skipped": dict(self.skipped)}


def check_format(name: Any) -> str:
    """``name`` if it is a format; InvalidArguments naming the formats otherwise."""
    if not isinstance(name, str) or name not in FORMAT_NAMES:
        raise InvalidArguments(f"format: {name!r} is not a format; accepted: {', '.join(FORMAT_NAMES)}")
    return name


def export(name: str, event: Mapping[str, Any], settings: FormatSettings) -> Export:
    """``event`` converted to the format ``name``; ExportFailed when the converter cannot."""
    module = importlib.import_module(f"{__name__}.{check_format(name)}")
    try:
        given = copy.deepcopy(event) if getattr(module, "CHANGES_ITS_INPUT", False) else event
        return module.convert(given, settings)  # type: ignore[no-any-return]
    except MispServiceError:
        raise
    except Exception as exc:  # a converter (misp-stix, python-stix) failing on this event
        logger.warning("Could not convert event %s to %s: %s: %s", _uuid(event), name, type(exc).__name__, exc)
        raise ExportFailed(f"the event could not be converted to {name}: {type(exc).__name__}: {exc}") from exc


def _uuid(event: Mapping[str, Any]) -> str:
    body = event.get("Event", event)
    return str(body.get("uuid", "?")) if isinstance(body, Mapping) else "?"
