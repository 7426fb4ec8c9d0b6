"""``stix1``: a MISP event as the STIX 1.2 Incident of a STIX package, in XML, through misp-stix's
``MISPtoSTIX1EventsParser``.

misp-stix gives the Incident its Title (``info``), Incident_Discovery (``date``), Incident_Reported (the
publish time, when published), Reporter (the creating org), Status and Confidence, with the attributes
as indicators and observables. This module adds what it lacks:

- ``Initial_Compromise``: the earliest ``first_seen`` of the event's attributes and objects, where set;
- ``Victim``: one per ``victim:``/``target:`` tag (its quoted value, or what follows the last colon) and
  per ``target-information`` or ``sector`` galaxy cluster (its value);
- ``Impact_Assessment`` effects: tags whose value is a term of STIX's IncidentEffectVocab-1.0 (``Financial
  Loss``, ``Data Breach or Compromise``, ...; case does not matter), such as ``effect="Financial Loss"``.

Ids are ``<prefix>:<Type>-<uuid>`` with the prefix made of ``stix1OrgName``; the XML declares it, bound to
:data:`NAMESPACE`, so that the document validates against the STIX 1.2 schemas. python-stix keeps its id
namespace per process: exports run one at a time here, under a lock.
"""
from __future__ import annotations

import re
import threading
import uuid
import warnings
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dxlmispservice.formats import Export
from dxlmispservice.formats import mispevent as me
from dxlmispservice.formats.mispevent import QUOTED, victims
from dxlmispservice.formats.stix2 import skipped_of
from dxlmispservice.settings.formats import FormatSettings

CONTENT_TYPE = "application/xml"
#: misp-stix changes the event dict it is given: export() hands it a copy.
CHANGES_ITS_INPUT = True
#: The XML namespace bound to the id prefix.
NAMESPACE = "https://www.misp-project.org"
#: STIX's IncidentEffectVocab-1.0, by lower-case term.
EFFECTS = {term.lower(): term for term in (
    "Brand or Image Degradation", "Data Breach or Compromise", "Degradation of Service", "Destruction",
    "Disruption of Service / Operations", "Financial Loss", "Loss of Competitive Advantage",
    "Loss of Competitive Advantage - Economic", "Loss of Competitive Advantage - Military",
    "Loss of Competitive Advantage - Political",
    "Loss of Confidential / Proprietary Information or Intellectual Property",
    "Regulatory, Compliance or Legal Impact", "Unintended Access", "User Data Loss")}
_LOCK = threading.Lock()


def convert(event: Mapping[str, Any], settings: FormatSettings) -> Export:
    """The STIX 1.2 package of ``event``, as XML text."""
    from mixbox import idgen  # lazy, with misp-stix
    from mixbox.namespaces import Namespace
    from misp_stix_converter import MISPtoSTIX1EventsParser

    body = me.body(event)
    prefix = id_prefix(settings.stix1_org_name)
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # python-stix warns of deprecated fields misp-stix sets
        idgen.set_id_namespace(Namespace(NAMESPACE, prefix, ""))
        started = datetime.now(timezone.utc)
        parser = MISPtoSTIX1EventsParser(settings.stix1_org_name, "1.2")
        parser.parse_misp_event({"Event": body})
        package = parser.stix_package
        added = _complete(package.incidents[0], body, prefix)
        _stamp(package, started, me.epoch(body.get("timestamp")) or 0)
        xml = package.to_xml(include_namespaces=True, ns_dict={NAMESPACE: prefix}, encoding="utf-8")
    skipped = Counter(skipped_of(parser.warnings, parser.errors))
    skipped.update(added)
    return Export("stix1", sorted_namespaces(xml.decode("utf-8")), CONTENT_TYPE, dict(sorted(skipped.items())))


def sorted_namespaces(xml: str) -> str:
    """The document with its root's namespace declarations in name order (python-stix writes them in the
    order of a set, which changes from process to process)."""
    head, sep, rest = xml.partition(">")
    lines = head.split("\n")
    declarations = sorted(line for line in lines if line.lstrip().startswith("xmlns:"))
    others = [line for line in lines if not line.lstrip().startswith("xmlns:")]
    return "\n".join(others[:1] + declarations + others[1:]) + sep + rest


def _stamp(package: Any, started: datetime, event_time: int) -> None:
    """Give what python-stix stamped with the time of the conversion (TTPs made of galaxy clusters, which
    have no time in MISP) the event's own timestamp instead, so that one event always gives one document."""
    when = datetime.fromtimestamp(event_time, tz=timezone.utc)
    for entity in package.walk():
        stamp = getattr(entity, "timestamp", None)
        if isinstance(stamp, datetime) and (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)) >= started:
            entity.timestamp = when


def id_prefix(org_name: str) -> str:
    """The id prefix misp-stix makes of an org name (spaces to ``_``, other non-word characters dropped)."""
    return re.sub(r"\W+", "", org_name.replace(" ", "_")) or "MISP"


def _complete(incident: Any, event: Mapping[str, Any], prefix: str) -> Counter[str]:
    """Add Initial_Compromise, Victim and Impact_Assessment to misp-stix's incident; counts what is left out."""
    from stix.common import Identity
    from stix.common.vocabs import IncidentEffect
    from stix.incident import ImpactAssessment, Time
    from stix.incident.impact_assessment import Effects

    left_out: Counter[str] = Counter()
    first = earliest_first_seen(event)
    if first is not None:
        if incident.time is None:
            incident.time = Time()
        incident.time.initial_compromise = first
    for name in victims(event):
        victim_id = uuid.uuid5(uuid.NAMESPACE_URL, f"misp-event:{event['uuid']}:victim:{name}")
        incident.add_victim(Identity(id_=f"{prefix}:Identity-{victim_id}", name=name))
    found, unknown = effects(event)
    if found:
        assessment = ImpactAssessment()
        assessment.effects = Effects()
        for effect in found:
            assessment.effects.append(IncidentEffect(value=effect))
        incident.impact_assessment = assessment
    if unknown:
        left_out["effect tag not in IncidentEffectVocab-1.0"] += unknown
    return left_out


def earliest_first_seen(event: Mapping[str, Any]) -> datetime | None:
    """The earliest ``first_seen`` of the event's attributes and objects, in UTC; None when none is set."""
    seen = [a.get("first_seen") for a, _ in me.attributes(event)]
    seen += [o.get("first_seen") for o in event.get("Object") or []]
    times = [t for t in (_datetime(value) for value in seen if value) if t is not None]
    return min(times) if times else None


def effects(event: Mapping[str, Any]) -> tuple[list[str], int]:
    """The IncidentEffectVocab terms the event's effect/impact tags name, and how many such tags name none."""
    found, unknown = [], 0
    for tag in me.tag_names(event):
        head = tag.split("=", 1)[0].split(":", 1)[0].lower()
        if head not in ("effect", "incident-effect", "impact"):
            continue
        quoted = QUOTED.search(tag)
        term = EFFECTS.get((quoted.group(1) if quoted else tag.rsplit(":", 1)[-1]).strip().lower())
        if term:
            found.append(term)
        else:
            unknown += 1
    return list(dict.fromkeys(found)), unknown


def _datetime(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
