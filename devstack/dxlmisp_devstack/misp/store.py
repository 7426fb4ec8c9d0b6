"""Row-level writes for the dev MISP server: insert and update events, attributes, objects, tags, sightings.

These helpers run inside a transaction that :class:`~devstack.misp.models.MispModels` holds; they validate
their input with MISP's rules and raise :class:`ValidationFailed` with MISP's per-field errors. They send
no notifications: the models layer does that once the transaction commits.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any, Mapping

from dxlmisp_devstack.misp import validation as v
from dxlmisp_devstack.misp.exceptions import DUPLICATE_ATTRIBUTE
from dxlmisp_devstack.misp.identity import ADMIN, ORG_ID
from dxlmisp_devstack.misp.serialize import tag_colour

Row = sqlite3.Row


class ValidationFailed(Exception):
    """MISP's ``validationErrors`` for one record: ``{field: [messages]}``."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(str(errors))
        self.errors = errors


UUID_TAKEN = "The UUID provided is not unique"


def _uuid_taken(conn: sqlite3.Connection, table: str, uuid: Any) -> bool:
    return bool(uuid) and conn.execute(f"SELECT 1 FROM {table} WHERE uuid = ?", (uuid,)).fetchone() is not None


def _seen(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _timestamp(data: Mapping[str, Any], default: int) -> int:
    return v.as_int(data.get("timestamp"), default) or default


def tag_names(items: Any) -> list[str]:
    """Tag names from ``[{"name": ...}]``, ``["name"]`` or MISP's old ``[{"Tag": {"name": ...}}]``."""
    names = []
    for item in items or []:
        if isinstance(item, Mapping):
            item = item.get("Tag", item)
            name = item.get("name") if isinstance(item, Mapping) else None
        else:
            name = item
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return names


def ensure_tag(conn: sqlite3.Connection, name: str) -> Row:
    """The tag called ``name`` (case-insensitive), created with a stable colour when unknown."""
    row = conn.execute("SELECT * FROM tags WHERE name = ? COLLATE NOCASE", (name,)).fetchone()
    if row is None:
        cur = conn.execute("INSERT INTO tags (name, colour) VALUES (?, ?)", (name, tag_colour(name)))
        row = conn.execute("SELECT * FROM tags WHERE id = ?", (cur.lastrowid,)).fetchone()
    return row


def link_event_tag(conn: sqlite3.Connection, event_id: int, tag: Row, local: bool) -> bool:
    """Attach a tag to an event; False when it was already attached."""
    if conn.execute("SELECT 1 FROM event_tags WHERE event_id = ? AND tag_id = ? AND local = ?",
                    (event_id, tag["id"], int(local))).fetchone():
        return False
    conn.execute("INSERT INTO event_tags (event_id, tag_id, local) VALUES (?, ?, ?)", (event_id, tag["id"], int(local)))
    return True


def link_attribute_tag(conn: sqlite3.Connection, attr: Row, tag: Row, local: bool) -> bool:
    """Attach a tag to an attribute; False when it was already attached."""
    if conn.execute("SELECT 1 FROM attribute_tags WHERE attribute_id = ? AND tag_id = ? AND local = ?",
                    (attr["id"], tag["id"], int(local))).fetchone():
        return False
    conn.execute("INSERT INTO attribute_tags (attribute_id, event_id, tag_id, local) VALUES (?, ?, ?, ?)",
                 (attr["id"], attr["event_id"], tag["id"], int(local)))
    return True


def insert_event(conn: sqlite3.Connection, data: Mapping[str, Any], now: int) -> int:
    """Validate and insert an event's own fields; returns its id."""
    errors = v.event_errors(dict(data), creating=True)
    if errors:
        raise ValidationFailed({"Event": errors})
    today = datetime.fromtimestamp(now, tz=timezone.utc).date().isoformat()
    cur = conn.execute(
        "INSERT INTO events (uuid, info, date, threat_level_id, analysis, distribution, sharing_group_id, published, "
        "publish_timestamp, timestamp, org_id, orgc_id, disable_correlation, extends_uuid, event_creator_email) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
        (data.get("uuid") or v.new_uuid(), data["info"].strip(), str(data.get("date") or today),
         v.as_int(data.get("threat_level_id"), 4), v.as_int(data.get("analysis"), 0),
         v.as_int(data.get("distribution"), 1), v.as_int(data.get("sharing_group_id"), 0),
         v.as_int(data.get("publish_timestamp"), 0), _timestamp(data, now), ORG_ID, ORG_ID,
         int(v.as_bool(data.get("disable_correlation"))), str(data.get("extends_uuid") or ""), ADMIN.email))
    return int(cur.lastrowid)


def update_event(conn: sqlite3.Connection, row: Row, data: Mapping[str, Any], now: int) -> None:
    """Apply an event edit: given fields change, the others keep their value; the event is unpublished."""
    errors = v.event_errors(dict(data), creating=False)
    if errors:
        raise ValidationFailed({"Event": errors})
    conn.execute(
        "UPDATE events SET info = ?, date = ?, threat_level_id = ?, analysis = ?, distribution = ?, "
        "sharing_group_id = ?, disable_correlation = ?, extends_uuid = ?, published = 0, timestamp = ? WHERE id = ?",
        (str(data.get("info", row["info"])).strip(), str(data.get("date", row["date"])),
         v.as_int(data.get("threat_level_id"), row["threat_level_id"]), v.as_int(data.get("analysis"), row["analysis"]),
         v.as_int(data.get("distribution"), row["distribution"]),
         v.as_int(data.get("sharing_group_id"), row["sharing_group_id"]),
         int(v.as_bool(data.get("disable_correlation", row["disable_correlation"]))),
         str(data.get("extends_uuid") or row["extends_uuid"]), _timestamp(data, now), row["id"]))


def touch_event(conn: sqlite3.Connection, event_id: int, now: int) -> None:
    """A change inside the event: move its timestamp and unpublish it, as MISP's ``unpublishEvent`` does."""
    conn.execute("UPDATE events SET timestamp = MAX(timestamp, ?), published = 0 WHERE id = ?", (now, event_id))


def _duplicate(conn: sqlite3.Connection, event_id: int, attr: Mapping[str, Any], value1: str, value2: str,
               exclude_id: int) -> bool:
    return conn.execute(
        "SELECT 1 FROM attributes WHERE event_id = ? AND object_id = 0 AND deleted = 0 AND type = ? AND "
        "category = ? AND value1 = ? COLLATE NOCASE AND value2 = ? COLLATE NOCASE AND id != ?",
        (event_id, attr["type"], attr["category"], value1, value2, exclude_id)).fetchone() is not None


def insert_attribute(conn: sqlite3.Connection, event_id: int, data: Mapping[str, Any], now: int, *,
                     object_id: int = 0) -> int:
    """Validate and insert an attribute (its tags too); returns its id."""
    attr = v.prepare_attribute(dict(data))
    errors = v.attribute_errors(attr)
    if object_id and not attr.get("object_relation"):
        errors["object_relation"] = ["Object relation cannot be empty for an object attribute."]
    if not errors:
        value1, value2 = v.split_value(attr["type"], attr["value"])
        if not object_id and _duplicate(conn, event_id, attr, value1, value2, 0):
            errors["value"] = [DUPLICATE_ATTRIBUTE]
        elif _uuid_taken(conn, "attributes", attr.get("uuid")):
            errors["uuid"] = [UUID_TAKEN]
    if errors:
        raise ValidationFailed(errors)
    cur = conn.execute(
        "INSERT INTO attributes (uuid, event_id, object_id, object_relation, category, type, value1, value2, to_ids, "
        "timestamp, distribution, sharing_group_id, comment, deleted, disable_correlation, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (attr.get("uuid") or v.new_uuid(), event_id, object_id, attr.get("object_relation") or None,
         attr["category"], attr["type"], value1, value2, int(v.as_bool(attr.get("to_ids"))), _timestamp(attr, now),
         v.as_int(attr.get("distribution"), 5), v.as_int(attr.get("sharing_group_id"), 0),
         str(attr.get("comment") or ""), int(v.as_bool(attr.get("deleted"))),
         int(v.as_bool(attr.get("disable_correlation"))), _seen(attr.get("first_seen")), _seen(attr.get("last_seen"))))
    attribute_id = int(cur.lastrowid)
    row = conn.execute("SELECT * FROM attributes WHERE id = ?", (attribute_id,)).fetchone()
    for name in tag_names(attr.get("Tag")):
        link_attribute_tag(conn, row, ensure_tag(conn, name), False)
    return attribute_id


def update_attribute(conn: sqlite3.Connection, row: Row, data: Mapping[str, Any], now: int) -> None:
    """Apply an attribute edit: given fields change, the others keep their value (MISP's recoverFields)."""
    merged: dict[str, Any] = {"type": row["type"], "category": row["category"], "to_ids": bool(row["to_ids"]),
                              "value": f"{row['value1']}|{row['value2']}" if row["value2"] else row["value1"]}
    merged.update({k: data[k] for k in ("type", "category", "to_ids", "value") if data.get(k) is not None})
    attr = v.prepare_attribute(merged)
    errors = v.attribute_errors(attr)
    if not errors:
        value1, value2 = v.split_value(attr["type"], attr["value"])
        if not row["object_id"] and _duplicate(conn, row["event_id"], attr, value1, value2, row["id"]):
            errors["value"] = [DUPLICATE_ATTRIBUTE]
    if errors:
        raise ValidationFailed(errors)
    conn.execute(
        "UPDATE attributes SET type = ?, category = ?, value1 = ?, value2 = ?, to_ids = ?, comment = ?, "
        "distribution = ?, deleted = ?, disable_correlation = ?, first_seen = ?, last_seen = ?, object_relation = ?, "
        "timestamp = ? WHERE id = ?",
        (attr["type"], attr["category"], value1, value2, int(v.as_bool(attr["to_ids"])),
         str(data.get("comment", row["comment"]) or ""), v.as_int(data.get("distribution"), row["distribution"]),
         int(v.as_bool(data.get("deleted", row["deleted"]))),
         int(v.as_bool(data.get("disable_correlation", row["disable_correlation"]))),
         _seen(data.get("first_seen", row["first_seen"])), _seen(data.get("last_seen", row["last_seen"])),
         data.get("object_relation", row["object_relation"]), _timestamp(data, now), row["id"]))
    for name in tag_names(data.get("Tag")):
        link_attribute_tag(conn, row, ensure_tag(conn, name), False)


def insert_object(conn: sqlite3.Connection, event_id: int, data: Mapping[str, Any], now: int) -> tuple[int, list[int]]:
    """Validate and insert an object with its attributes; returns its id and its attribute ids.

    An attribute that fails validation fails the whole object, as MISP's ``saveObject`` with ``halt`` does.
    """
    errors: dict[str, Any] = v.object_errors(dict(data))
    if _uuid_taken(conn, "objects", data.get("uuid")):
        errors["uuid"] = [UUID_TAKEN]
    if errors:
        raise ValidationFailed(errors)
    cur = conn.execute(
        "INSERT INTO objects (uuid, event_id, name, meta_category, description, template_uuid, template_version, "
        "timestamp, distribution, sharing_group_id, comment, deleted, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (data.get("uuid") or v.new_uuid(), event_id, data["name"].strip(),
         str(data.get("meta-category") or data.get("meta_category") or ""), str(data.get("description") or ""),
         str(data.get("template_uuid") or ""), str(data.get("template_version") or "0"), _timestamp(data, now),
         v.as_int(data.get("distribution"), 5), v.as_int(data.get("sharing_group_id"), 0),
         str(data.get("comment") or ""), int(v.as_bool(data.get("deleted"))), _seen(data.get("first_seen")),
         _seen(data.get("last_seen"))))
    object_id = int(cur.lastrowid)
    attribute_ids = []
    for index, attr in enumerate(data.get("Attribute") or []):
        try:
            attribute_ids.append(insert_attribute(conn, event_id, attr, now, object_id=object_id))
        except ValidationFailed as failed:
            raise ValidationFailed({"Attribute": {str(index): failed.errors}}) from failed
    return object_id, attribute_ids


def insert_sighting(conn: sqlite3.Connection, attr: Row, *, sighting_type: int, source: str, when: int) -> int:
    """Record one sighting of an attribute; the event's ``sighting_timestamp`` follows."""
    cur = conn.execute("INSERT INTO sightings (uuid, attribute_id, event_id, org_id, date_sighting, source, type) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (v.new_uuid(), attr["id"], attr["event_id"], ORG_ID, when, source, sighting_type))
    conn.execute("UPDATE events SET sighting_timestamp = MAX(sighting_timestamp, ?) WHERE id = ?",
                 (when, attr["event_id"]))
    return int(cur.lastrowid)
