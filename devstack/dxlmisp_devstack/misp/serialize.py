"""Rows to MISP's JSON: the wire types and nesting a real MISP answers with, and the ZeroMQ payloads.

Wire types follow MISP: ids, counts and epoch timestamps are strings; flags are booleans;
``object_relation``, ``first_seen``, ``last_seen`` and ``numerical_value`` may be null.

An event carries Org, Orgc, Attribute, ShadowAttribute, RelatedEvent, Galaxy, Object, EventReport and Tag.
An attribute inside an event carries Galaxy, ShadowAttribute, Tag and Sighting. ``Galaxy``, ``ShadowAttribute``,
``RelatedEvent`` and ``EventReport`` are always empty lists here: the dev server stores no galaxies, proposals,
correlations or reports (documented limit).

:func:`build_events` loads many events at once: one query per table for the whole batch.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import defaultdict
from typing import Any, Iterable, Sequence

from dxlmisp_devstack.misp.galaxies import galaxies
from dxlmisp_devstack.misp.identity import ORG, ORG_ID, ORG_NAME, ORG_UUID

Row = sqlite3.Row
Where = tuple[str, list[Any]]


def ids_param(ids: Iterable[int]) -> str:
    """One SQL parameter carrying many ids, for ``IN (SELECT value FROM json_each(?))``."""
    return json.dumps(list(ids))


def tag_colour(name: str) -> str:
    """A stable colour for a tag created on the fly (MISP picks a random one)."""
    return "#" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]


def org() -> dict[str, str]:
    """The one organisation, as Org / Orgc / Organisation."""
    return dict(ORG)


def tag_dict(row: Row, *, local: bool = False) -> dict[str, Any]:
    """A Tag as events, attributes and tag answers carry it."""
    return {"id": str(row["id"]), "name": row["name"], "colour": row["colour"], "exportable": bool(row["exportable"]),
            "user_id": "0", "hide_tag": bool(row["hide_tag"]), "numerical_value": row["numerical_value"],
            "is_galaxy": row["name"].startswith("misp-galaxy:"), "is_custom_galaxy": False,
            "local_only": bool(row["local_only"]), "local": local}


def sighting_dict(row: Row, attribute_uuid: str) -> dict[str, Any]:
    """A Sighting with its Organisation, as events and sighting searches carry it."""
    return {"id": str(row["id"]), "attribute_id": str(row["attribute_id"]), "event_id": str(row["event_id"]),
            "org_id": str(row["org_id"]), "date_sighting": str(row["date_sighting"]), "uuid": row["uuid"],
            "source": row["source"], "type": str(row["type"]), "attribute_uuid": attribute_uuid,
            "Organisation": org()}


def sighting_raw(row: Row) -> dict[str, Any]:
    """The bare Sighting row that ``sightings/add`` answers with."""
    return {"id": str(row["id"]), "attribute_id": str(row["attribute_id"]), "event_id": str(row["event_id"]),
            "org_id": str(row["org_id"]), "date_sighting": str(row["date_sighting"]), "uuid": row["uuid"],
            "source": row["source"], "type": str(row["type"])}


def attribute_value(row: Row) -> str:
    """The full value: ``value1|value2`` for composite attributes."""
    return f"{row['value1']}|{row['value2']}" if row["value2"] != "" else row["value1"]


def attribute_dict(row: Row) -> dict[str, Any]:
    """An attribute's own fields, as an event or a search shows them."""
    return {"id": str(row["id"]), "type": row["type"], "category": row["category"], "to_ids": bool(row["to_ids"]),
            "uuid": row["uuid"], "event_id": str(row["event_id"]), "distribution": str(row["distribution"]),
            "timestamp": str(row["timestamp"]), "comment": row["comment"],
            "sharing_group_id": str(row["sharing_group_id"]), "deleted": bool(row["deleted"]),
            "disable_correlation": bool(row["disable_correlation"]), "object_id": str(row["object_id"]),
            "object_relation": row["object_relation"], "first_seen": row["first_seen"],
            "last_seen": row["last_seen"], "value": attribute_value(row)}


def attribute_raw(row: Row) -> dict[str, Any]:
    """The attribute row as ``attributes/add`` and ``attributes/edit`` answer it (with value1 and value2)."""
    raw = attribute_dict(row)
    raw["value1"] = row["value1"]
    raw["value2"] = row["value2"]
    return raw


def object_dict(row: Row) -> dict[str, Any]:
    """An object's own fields."""
    return {"id": str(row["id"]), "name": row["name"], "meta-category": row["meta_category"],
            "description": row["description"], "template_uuid": row["template_uuid"],
            "template_version": row["template_version"], "event_id": str(row["event_id"]), "uuid": row["uuid"],
            "timestamp": str(row["timestamp"]), "distribution": str(row["distribution"]),
            "sharing_group_id": str(row["sharing_group_id"]), "comment": row["comment"],
            "deleted": bool(row["deleted"]), "first_seen": row["first_seen"], "last_seen": row["last_seen"]}


def event_dict(row: Row, attribute_count: int) -> dict[str, Any]:
    """An event's own fields, without the nested lists."""
    return {"id": str(row["id"]), "orgc_id": str(row["orgc_id"]), "org_id": str(row["org_id"]), "date": row["date"],
            "threat_level_id": str(row["threat_level_id"]), "info": row["info"], "published": bool(row["published"]),
            "uuid": row["uuid"], "attribute_count": str(attribute_count), "analysis": str(row["analysis"]),
            "timestamp": str(row["timestamp"]), "distribution": str(row["distribution"]),
            "proposal_email_lock": bool(row["proposal_email_lock"]), "locked": bool(row["locked"]),
            "publish_timestamp": str(row["publish_timestamp"]), "sharing_group_id": str(row["sharing_group_id"]),
            "disable_correlation": bool(row["disable_correlation"]), "extends_uuid": row["extends_uuid"],
            "event_creator_email": row["event_creator_email"], "sighting_timestamp": str(row["sighting_timestamp"])}


def attribute_counts(conn: sqlite3.Connection, event_ids: Sequence[int]) -> dict[int, int]:
    """Live (not deleted) attributes per event, objects' attributes included, as MISP counts them."""
    rows = conn.execute("SELECT event_id, COUNT(*) AS n FROM attributes WHERE deleted = 0 AND event_id IN "
                        "(SELECT value FROM json_each(?)) GROUP BY event_id", (ids_param(event_ids),))
    return {row["event_id"]: row["n"] for row in rows}


def event_tags(conn: sqlite3.Connection, event_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Tags per event."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = conn.execute("SELECT et.event_id, et.local, t.* FROM event_tags et JOIN tags t ON t.id = et.tag_id "
                        "WHERE et.event_id IN (SELECT value FROM json_each(?)) ORDER BY et.id",
                        (ids_param(event_ids),))
    for row in rows:
        found[row["event_id"]].append(tag_dict(row, local=bool(row["local"])))
    return found


def attribute_children(conn: sqlite3.Connection, attrs: Sequence[Row], *,
                       with_sightings: bool) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """Tags and sightings per attribute id, for a batch of attribute rows."""
    ids = ids_param(a["id"] for a in attrs)
    tags: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute("SELECT at.attribute_id, at.local, t.* FROM attribute_tags at JOIN tags t ON "
                            "t.id = at.tag_id WHERE at.attribute_id IN (SELECT value FROM json_each(?)) "
                            "ORDER BY at.id", (ids,)):
        tags[row["attribute_id"]].append(tag_dict(row, local=bool(row["local"])))
    sightings: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if with_sightings:
        uuids = {a["id"]: a["uuid"] for a in attrs}
        for row in conn.execute("SELECT * FROM sightings WHERE attribute_id IN (SELECT value FROM json_each(?)) "
                                "ORDER BY id", (ids,)):
            sightings[row["attribute_id"]].append(sighting_dict(row, uuids[row["attribute_id"]]))
    return tags, sightings


def nested_attribute(row: Row, tags: dict[int, list[dict[str, Any]]],
                     sightings: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """An attribute inside an event or an object: its fields plus Galaxy, ShadowAttribute, Tag, Sighting."""
    attr = attribute_dict(row)
    own = tags.get(row["id"], [])
    attr.update(Galaxy=galaxies(own), ShadowAttribute=[], Tag=own, Sighting=sightings.get(row["id"], []))
    return attr


def build_events(conn: sqlite3.Connection, rows: Sequence[Row], *, metadata: bool = False,
                 deleted: bool = False, with_sightings: bool = True,
                 attribute_where: Where | None = None) -> list[dict[str, Any]]:
    """Full ``{"Event": {...}}`` documents for event rows, in the rows' order.

    ``metadata`` leaves out attributes and objects; ``deleted`` includes soft-deleted ones;
    ``attribute_where`` (SQL on alias ``a``, its own ``deleted`` condition included) keeps only the
    attributes a search matched, and the objects that hold one of them.
    """
    if not rows:
        return []
    event_ids = [row["id"] for row in rows]
    counts = attribute_counts(conn, event_ids)
    tags_by_event = event_tags(conn, event_ids)
    attrs_by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    objects_by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not metadata:
        where, params = ["a.event_id IN (SELECT value FROM json_each(?))"], [ids_param(event_ids)]
        if attribute_where:
            where.append(attribute_where[0])
            params.extend(attribute_where[1])
        elif not deleted:
            where.append("a.deleted = 0")
        attrs = conn.execute(f"SELECT a.* FROM attributes a WHERE {' AND '.join(where)} ORDER BY a.id",
                             params).fetchall()
        tags, sightings = attribute_children(conn, attrs, with_sightings=with_sightings)
        attrs_by_object: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for attr in attrs:
            nested = nested_attribute(attr, tags, sightings)
            if attr["object_id"]:
                attrs_by_object[attr["object_id"]].append(nested)
            else:
                attrs_by_event[attr["event_id"]].append(nested)
        object_sql = "SELECT * FROM objects WHERE event_id IN (SELECT value FROM json_each(?))"
        for obj in conn.execute(object_sql + ("" if deleted else " AND deleted = 0") + " ORDER BY id",
                                (ids_param(event_ids),)):
            if attribute_where and obj["id"] not in attrs_by_object:
                continue
            objects_by_event[obj["event_id"]].append(
                dict(object_dict(obj), ObjectReference=[], Attribute=attrs_by_object.get(obj["id"], [])))
    events = []
    for row in rows:
        event = event_dict(row, counts.get(row["id"], 0))
        event.update(Org=org(), Orgc=org(), Attribute=attrs_by_event.get(row["id"], []), ShadowAttribute=[],
                     RelatedEvent=[], Galaxy=galaxies(tags_by_event.get(row["id"], [])),
                     Object=objects_by_event.get(row["id"], []), EventReport=[], Tag=tags_by_event.get(row["id"], []))
        if metadata:
            for key in ("Attribute", "ShadowAttribute", "Object", "EventReport"):
                del event[key]
        events.append({"Event": event})
    return events


def index_entries(conn: sqlite3.Connection, rows: Sequence[Row], *, minimal: bool) -> list[dict[str, Any]]:
    """``events/index`` entries: event fields with Org, Orgc, EventTag, SharingGroup, GalaxyCluster."""
    event_ids = [row["id"] for row in rows]
    if minimal:
        return [{"id": str(r["id"]), "timestamp": str(r["timestamp"]),
                 "sighting_timestamp": str(r["sighting_timestamp"]), "published": bool(r["published"]),
                 "uuid": r["uuid"], "orgc_uuid": ORG_UUID} for r in rows]
    counts = attribute_counts(conn, event_ids)
    event_tag_rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute("SELECT et.id AS et_id, et.event_id, et.local, t.* FROM event_tags et JOIN tags t "
                            "ON t.id = et.tag_id WHERE et.event_id IN (SELECT value FROM json_each(?)) "
                            "ORDER BY et.id", (ids_param(event_ids),)):
        event_tag_rows[row["event_id"]].append(
            {"id": str(row["et_id"]), "event_id": str(row["event_id"]), "tag_id": str(row["id"]),
             "local": bool(row["local"]), "Tag": tag_dict(row, local=bool(row["local"]))})
    entries = []
    for row in rows:
        entry = event_dict(row, counts.get(row["id"], 0))
        entry.update(Org=org(), Orgc=org(), EventTag=event_tag_rows.get(row["id"], []),
                     SharingGroup={"id": None, "name": None, "uuid": None}, GalaxyCluster=[])
        entries.append(entry)
    return entries


def tag_notification(row: Row, *, event_id: int, attribute_id: int | None = None) -> dict[str, Any]:
    """The ``misp_json_tag`` payload's Tag: the tag, with the event (and attribute) it was attached to."""
    tag = tag_dict(row)
    tag["event_id"] = str(event_id)
    if attribute_id is not None:
        tag["attribute_id"] = str(attribute_id)
    return {"Tag": tag}


def event_meta(row: Row) -> dict[str, Any]:
    """The short Event that attribute searches and ZeroMQ attribute payloads carry."""
    return {"id": str(row["id"]), "org_id": str(ORG_ID), "orgc_id": str(ORG_ID), "info": row["info"],
            "uuid": row["uuid"], "distribution": str(row["distribution"]), "publish_timestamp":
            str(row["publish_timestamp"]), "Orgc": {"id": str(ORG_ID), "name": ORG_NAME, "uuid": ORG_UUID}}
