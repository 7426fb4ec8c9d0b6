"""Tags and sightings on the dev MISP server: ``tags/attachTagToObject``, ``tags/removeTagFromObject``,
``sightings/add``.

A global tag, attached or removed, moves the event's timestamp and unpublishes it (an attribute's tag moves
the attribute's timestamp too); a local tag changes neither. A numeric tag is a tag id, as in MISP; any other
tag is a name, matched case-insensitively and created on first use. A sighting moves only the event's
``sighting_timestamp``.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

from dxlmisp_devstack.misp import search, serialize as ser, store
from dxlmisp_devstack.misp.exceptions import MethodNotAllowed, SaveFailed
from dxlmisp_devstack.misp.transactions import Transactions, locked
from dxlmisp_devstack.misp.validation import is_uuid


def _attach_failed(reason: str) -> SaveFailed:
    """MISP's answer when no tag could be attached: the reasons by index, JSON-encoded."""
    return SaveFailed("Tags", "attachTagToObject", f"Failed to attach 1 tags. Reasons: {json.dumps({'0': reason})}")


class Annotations(Transactions):
    """Tag and sighting actions over the models' database."""

    # -- tags -----------------------------------------------------------------------------------------
    @locked
    def attach_tag(self, uuid: str, name: str, *, local: bool = False) -> str:
        """``tags/attachTagToObject``: tag the event or attribute with that uuid (the tag is created if new)."""
        kind, row = self._tag_target(uuid)
        if name.isdigit() and self._tag_row(name) is None:
            raise _attach_failed("Invalid Tag.")
        now = search.now()
        with self._write() as conn:
            tag = self._tag_row(name) if name.isdigit() else store.ensure_tag(conn, name)
            event_id = row["id"] if kind == "Event" else row["event_id"]
            linked = (store.link_event_tag(conn, row["id"], tag, local) if kind == "Event"
                      else store.link_attribute_tag(conn, row, tag, local))
            if not linked:  # MISP counts this as a success
                return (f"{kind} already has the requested tag attached, no changes had to be made for tag "
                        f"{tag['name']}.")
            if not local:
                self._global_tag_changed(conn, kind, row, event_id, now)
            self._notify_tag(tag, f"attached to {kind.lower()}", event_id, None if kind == "Event" else row["id"])
        scope = "Local" if local else "Global"
        return f"{scope} tag {tag['name']}({tag['id']}) successfully attached to {kind}({row['id']})."

    @locked
    def remove_tag(self, uuid: str, name: str) -> str:
        """``tags/removeTagFromObject``: untag the event or attribute with that uuid."""
        tag = self._tag_row(name)
        if tag is None:
            raise MethodNotAllowed("Invalid Tag.")
        kind, row = self._tag_target(uuid)
        table, column = ("event_tags", "event_id") if kind == "Event" else ("attribute_tags", "attribute_id")
        link = self.conn.execute(f"SELECT * FROM {table} WHERE {column} = ? AND tag_id = ?",
                                 (row["id"], tag["id"])).fetchone()
        if link is None:
            raise MethodNotAllowed(f"Could not remove tag as it is not attached to the target {kind}")
        now = search.now()
        with self._write() as conn:
            conn.execute(f"DELETE FROM {table} WHERE id = ?", (link["id"],))
            event_id = row["id"] if kind == "Event" else row["event_id"]
            if not link["local"]:
                self._global_tag_changed(conn, kind, row, event_id, now)
            self._notify_tag(tag, f"detached from {kind.lower()}", event_id, None if kind == "Event" else row["id"])
        scope = "Local" if link["local"] else "Global"
        return f"{scope} tag {tag['name']} ({tag['id']}) successfully removed from {kind}({row['id']})."

    def _global_tag_changed(self, conn: sqlite3.Connection, kind: str, row: sqlite3.Row, event_id: int,
                            now: int) -> None:
        # A global tag is a change of the tagged attribute (its timestamp) and of its event (unpublished).
        if kind == "Attribute":
            conn.execute("UPDATE attributes SET timestamp = ? WHERE id = ?", (now, row["id"]))
            self._notify_attribute(row["id"], "edit")
        store.touch_event(conn, event_id, now)
        self._notify_event(event_id, "edit")

    def _tag_row(self, name: str) -> sqlite3.Row | None:
        # MISP reads a numeric tag as a tag id, anything else as a name (case-insensitive).
        column = "id" if name.isdigit() else "name"
        return self.conn.execute(f"SELECT * FROM tags WHERE {column} = ? COLLATE NOCASE", (name,)).fetchone()

    def _tag_target(self, uuid: str) -> tuple[str, sqlite3.Row]:
        if not is_uuid(uuid):
            raise MethodNotAllowed("Invalid Target.")
        for kind, table in (("Event", "events"), ("Attribute", "attributes")):
            row = self.conn.execute(f"SELECT * FROM {table} WHERE uuid = ? COLLATE NOCASE", (uuid,)).fetchone()
            if row is not None:
                return kind, row
        raise MethodNotAllowed("Invalid Target.")

    # -- sightings ------------------------------------------------------------------------------------
    @locked
    def add_sightings(self, *, attribute_ref: str | None = None, values: list[str] | None = None,
                      sighting_type: int = 0, source: str = "", timestamp: int | None = None) -> dict[str, Any]:
        """``sightings/add``: sight one attribute (id or uuid) or every attribute with one of ``values``.

        Returns the last sighting row, as ``{"Sighting": {...}}``. Raises :class:`ValueError` with MISP's
        reason when nothing matched.
        """
        if attribute_ref:
            row = self._find("attributes", attribute_ref)
            targets = [row] if row is not None and not row["deleted"] else []
        elif values:
            targets = self.conn.execute(
                "SELECT * FROM attributes WHERE deleted = 0 AND (value1 COLLATE NOCASE IN (SELECT value FROM "
                "json_each(?)) OR (value1 || '|' || value2) COLLATE NOCASE IN (SELECT value FROM json_each(?)) OR "
                "(value2 != '' AND value2 COLLATE NOCASE IN (SELECT value FROM json_each(?)))) ORDER BY id",
                (ser.ids_param(values),) * 3).fetchall()
        else:
            raise ValueError("No valid attributes found.")
        if not targets:
            raise ValueError("No valid attributes found.")
        when = timestamp if timestamp else search.now()
        with self._write() as conn:
            for attr in targets:
                sighting_id = store.insert_sighting(conn, attr, sighting_type=sighting_type, source=source, when=when)
                self._notify("misp_json_sighting", lambda: self.sighting_notification(sighting_id))
        row = self.conn.execute("SELECT * FROM sightings WHERE id = ?", (sighting_id,)).fetchone()
        return {"Sighting": ser.sighting_raw(row)}
