"""Attribute proposals (MISP's shadow attributes) on the dev MISP server: ``shadowAttributes/add/<event>``
and ``shadowAttributes/index``.

A proposal is checked like an attribute (type, category, value) and stored on its own; it changes neither
the event nor its attributes, and event views still show ``ShadowAttribute: []``.
"""
from __future__ import annotations

from typing import Any

from dxlmisp_devstack.misp import search, validation as v
from dxlmisp_devstack.misp.annotations import Annotations
from dxlmisp_devstack.misp.exceptions import SaveFailed
from dxlmisp_devstack.misp.transactions import locked

_FIELDS = ("id", "old_id", "event_id", "type", "category", "uuid", "to_ids", "comment", "value", "timestamp",
           "deleted", "proposal_to_delete", "disable_correlation")


class Proposals(Annotations):
    """Proposal actions over the models' database."""

    @locked
    def add_proposal(self, event_ref: str, data: Any) -> dict[str, Any]:
        """``shadowAttributes/add``: ``{"ShadowAttribute": {...}}``; a bad value is MISP's 403."""
        event = self._event_row(event_ref)
        body = data.get("ShadowAttribute", data) if isinstance(data, dict) else {}
        attribute = v.prepare_attribute(dict(body))
        errors = v.attribute_errors(attribute)
        if errors:
            raise SaveFailed("ShadowAttributes", "add", errors)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO shadow_attributes (uuid, event_id, type, category, value, to_ids, comment, timestamp) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (attribute.get("uuid") or v.new_uuid(), event["id"], attribute["type"], attribute["category"],
                 str(attribute["value"]), int(v.as_bool(attribute.get("to_ids"))), str(attribute.get("comment") or ""),
                 search.now()))
            row = conn.execute("SELECT * FROM shadow_attributes WHERE id = ?", (cur.lastrowid,)).fetchone()
        return {"ShadowAttribute": _proposal(row, event["uuid"])}

    def proposals(self) -> list[dict[str, Any]]:
        """``shadowAttributes/index``: every proposal, oldest first, as ``[{"ShadowAttribute": {...}}]``."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT s.*, e.uuid AS event_uuid FROM shadow_attributes s JOIN events e ON e.id = s.event_id "
                "ORDER BY s.id").fetchall()
        return [{"ShadowAttribute": _proposal(row, row["event_uuid"])} for row in rows]


def _proposal(row: Any, event_uuid: str) -> dict[str, Any]:
    """A proposal row in MISP's shape: ids, flags and timestamps as strings, booleans as booleans."""
    out: dict[str, Any] = {"id": str(row["id"]), "old_id": "0", "event_id": str(row["event_id"]),
                           "type": row["type"], "category": row["category"], "uuid": row["uuid"],
                           "to_ids": bool(row["to_ids"]), "comment": row["comment"], "value": row["value"],
                           "timestamp": str(row["timestamp"]), "deleted": False, "proposal_to_delete": False,
                           "disable_correlation": False, "event_uuid": event_uuid}
    return {key: out[key] for key in (*_FIELDS, "event_uuid")}
