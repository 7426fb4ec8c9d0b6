"""The feed's messages in each format: MISP's own (``{"feed", "Event"}``) or one of
:mod:`dxlmispservice.formats` (``{"feed", "format", "content_type", "document", "skipped"}``), in the same
envelope. A change that a format cannot convert gets a notice in that format's place (``complete``
false, ``reason``, the event's summary); the other formats go on."""
from __future__ import annotations

import logging
from typing import Any

from dxlmispservice.errors import ExportFailed
from dxlmispservice.events.envelope import event_summary, json_size
from dxlmispservice.formats import export
from dxlmispservice.settings.formats import FormatSettings

logger = logging.getLogger(__name__)


def format_message(format_name: str, event: dict[str, Any], feed: dict[str, Any],
                   settings: FormatSettings) -> tuple[dict[str, Any], bool]:
    """The message of one change in ``format_name`` with the envelope ``feed``; and whether it converted."""
    if format_name == "misp":
        return {"feed": dict(feed, size=json_size(event)), "Event": event}, True
    try:
        result = export(format_name, {"Event": event}, settings)
    except ExportFailed as exc:
        logger.warning("Event feed: event %s could not be converted to %s: %s", event.get("uuid"), format_name,
                       exc.message)
        return {"feed": dict(feed, complete=False, reason=exc.message), "Event": event_summary(event)}, False
    document = result.answer()
    return {"feed": dict(feed, size=json_size(document["document"])), **document}, True


def format_notice(message: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The notice that stands in for ``message`` (of any format) when it is too big for the fabric."""
    return {"feed": {**message["feed"], "complete": False}, "Event": event_summary(event)}
