"""``stix2``: a MISP event as a STIX 2.1 bundle, through misp-stix's ``MISPtoSTIX21Parser``.

misp-stix makes a ``report`` of a published event and a ``grouping`` of one not published, with the
objects its attributes, objects, galaxies and tags map to; it writes no STIX ``incident``. What it cannot
map it keeps as a custom object (``x-misp-attribute``, ``x-misp-object``): counted in ``skipped`` under
``custom: <MISP type>``; an attribute or object it fails on is counted under ``error``. misp-stix is
imported on the first export (it takes about a second).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from dxlmispservice.formats import Export
from dxlmispservice.formats import mispevent as me
from dxlmispservice.settings.formats import FormatSettings

CONTENT_TYPE = "application/stix+json;version=2.1"
#: misp-stix changes the event dict it is given: export() hands it a copy.
CHANGES_ITS_INPUT = True
_NOT_MAPPED = re.compile(r"MISP (?:Attribute|Object) (?:type|name) (\S+) not mapped")


def convert(event: Mapping[str, Any], settings: FormatSettings) -> Export:
    """The STIX 2.1 bundle of ``event`` (a JSON object)."""
    from misp_stix_converter import MISPtoSTIX21Parser  # lazy: a second to import

    body = me.body(event)
    parser = MISPtoSTIX21Parser()
    parser.parse_misp_event({"Event": body})
    document = json.loads(parser.bundle.serialize())
    return Export("stix2", document, CONTENT_TYPE, skipped_of(parser.warnings, parser.errors))


def skipped_of(warnings: Mapping[str, list[str]], errors: Mapping[str, list[str]]) -> dict[str, int]:
    """misp-stix's warnings and errors as counts by reason."""
    counts: Counter[str] = Counter()
    for messages in warnings.values():
        for message in messages:
            found = _NOT_MAPPED.search(message)
            counts[f"custom: {found.group(1).rstrip('.')}" if found else "warning"] += 1
    counts["error"] += sum(len(messages) for messages in errors.values())
    return {reason: n for reason, n in sorted(counts.items()) if n}
