"""The dev MISP server's state and behaviour: events, attributes, objects, tags and sightings in SQLite.

No HTTP here. Each public method is one MISP action; it raises the errors of
:mod:`dxlmisp_devstack.misp.exceptions` with MISP's messages, and returns plain JSON-able data in MISP's shapes.

Behaviour kept from MISP:

* every change inside an event (attribute, object or global tag added, edited or removed) moves the event's
  ``timestamp`` and unpublishes it; publishing sets ``publish_timestamp``; unpublishing and sightings leave
  ``timestamp`` alone (a sighting moves ``sighting_timestamp``); a local tag changes neither;
* an edit whose ``timestamp`` is not newer than the stored one is refused (MISP's sync rule);
* ``attribute_count`` counts the live attributes, objects' attributes included;
* tags are matched case-insensitively and created on first use.

``notifier(topic, payload)`` is called after each committed change, in commit order, with MISP's ZeroMQ topics
and payloads (``misp_json`` on publish, ``misp_json_event``, ``misp_json_attribute``, ``misp_json_object``,
``misp_json_sighting``, ``misp_json_tag``), each with MISP's ``action``. A failing notifier is logged and
never fails the change.

Concurrency: one SQLite connection guarded by one re-entrant lock; a write is one transaction.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Mapping

from dxlmisp_devstack.misp import db, search, store
from dxlmisp_devstack.misp.proposals import Proposals
from dxlmisp_devstack.misp.exceptions import EVENT_EXISTS, MethodNotAllowed, NotFound, SaveFailed
from dxlmisp_devstack.misp.store import ValidationFailed
from dxlmisp_devstack.misp.transactions import Notifier, locked
from dxlmisp_devstack.misp.validation import as_bool, as_int

__all__ = ["MispModels", "Notifier"]


def _unwrap(data: Any, key: str) -> dict[str, Any]:
    if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
        return dict(data[key])
    return dict(data) if isinstance(data, Mapping) else {}


class MispModels(Proposals):
    """MISP's behaviour over one SQLite database (``":memory:"`` or a file that survives restarts).

    ``MispModels(db_path=":memory:", notifier=None)``; events, attributes and objects here, tags and sightings
    in :class:`~devstack.misp.annotations.Annotations`, reads in :class:`~devstack.misp.queries.ModelQueries`.
    """

    @locked
    def reset(self) -> None:
        """Dev-only: empty events, attributes, objects, sightings, proposals and tags (ids keep counting up)."""
        with self._write() as conn:
            for table in db.DATA_TABLES:
                conn.execute(f"DELETE FROM {table}")

    # -- events ---------------------------------------------------------------------------------------
    @locked
    def add_event(self, data: Any, *, metadata: bool = False) -> dict[str, Any]:
        """``events/add``: the event with its attributes, objects and tags; ``{"Event": ...}``.

        Attributes or objects that fail validation are left out and reported under ``errors``, as MISP does.
        """
        event = _unwrap(data, "Event")
        now = search.now()
        if event.get("uuid"):
            existing = self.conn.execute("SELECT id FROM events WHERE uuid = ?", (event["uuid"],)).fetchone()
            if existing:
                raise NotFound(EVENT_EXISTS, headers={"Location": f"/events/{existing['id']}"})
        errors: dict[str, Any] = {}
        with self._write() as conn:
            try:
                event_id = store.insert_event(conn, event, now)
            except ValidationFailed as failed:
                raise SaveFailed("Events", "add", failed.errors)
            self._notify_event(event_id, "add")
            self._add_children(conn, event_id, event, now, errors)
            if as_bool(event.get("published")):
                self._publish(conn, event_id, now)
        result = self.get_event(str(event_id), metadata=metadata)
        if errors:
            result["errors"] = errors
        return result

    def _add_children(self, conn: sqlite3.Connection, event_id: int, event: Mapping[str, Any], now: int,
                      errors: dict[str, Any]) -> None:
        for index, attr in enumerate(event.get("Attribute") or []):
            try:
                self._notify_attribute(store.insert_attribute(conn, event_id, attr, now), "add")
            except ValidationFailed as failed:
                errors.setdefault("Attribute", {})[str(index)] = failed.errors
        for index, obj in enumerate(event.get("Object") or []):
            self._add_object_rows(conn, event_id, obj, now, errors, index)
        for name in store.tag_names(event.get("Tag")) + store.tag_names(event.get("EventTag")):
            tag = store.ensure_tag(conn, name)
            if store.link_event_tag(conn, event_id, tag, False):
                self._notify_tag(tag, "attached to event", event_id)

    def _add_object_rows(self, conn: sqlite3.Connection, event_id: int, obj: Mapping[str, Any], now: int,
                         errors: dict[str, Any], index: int) -> int | None:
        conn.execute("SAVEPOINT object")
        try:
            object_id, attribute_ids = store.insert_object(conn, event_id, _unwrap(obj, "Object"), now)
        except ValidationFailed as failed:
            conn.execute("ROLLBACK TO object")
            conn.execute("RELEASE object")
            errors.setdefault("Object", {})[str(index)] = failed.errors
            return None
        conn.execute("RELEASE object")
        self._notify("misp_json_object", lambda: self.object_notification(object_id, "add"))
        for attribute_id in attribute_ids:
            self._notify_attribute(attribute_id, "add")
        return object_id

    @locked
    def edit_event(self, ref: str, data: Any, *, metadata: bool = False) -> dict[str, Any]:
        """``events/edit``: change the event's fields, update or add attributes and objects by uuid, add tags."""
        row = self._event_row(ref)
        event = _unwrap(data, "Event")
        now = search.now()
        if "timestamp" in event and as_int(event["timestamp"], 0) <= row["timestamp"]:
            raise SaveFailed("Events", "edit", "Event could not be saved: Event in the request not newer than "
                             "the local copy.", record_id=ref)
        errors: dict[str, Any] = {}
        with self._write() as conn:
            try:
                store.update_event(conn, row, event, now)
            except ValidationFailed as failed:
                raise SaveFailed("Events", "edit", failed.errors, record_id=ref)
            self._edit_children(conn, row["id"], event, now, errors)
            self._notify_event(row["id"], "edit")
            if as_bool(event.get("published")):
                self._publish(conn, row["id"], now)
        result = self.get_event(str(row["id"]), metadata=metadata)
        if errors:
            result["errors"] = errors
        return result

    def _edit_children(self, conn: sqlite3.Connection, event_id: int, event: Mapping[str, Any], now: int,
                       errors: dict[str, Any]) -> None:
        new_attributes = []
        for attr in event.get("Attribute") or []:
            existing = conn.execute("SELECT * FROM attributes WHERE uuid = ? AND event_id = ?",
                                    (attr.get("uuid"), event_id)).fetchone() if attr.get("uuid") else None
            if existing is None:
                new_attributes.append(attr)
            elif as_int(attr.get("timestamp"), now + 1) > existing["timestamp"]:
                try:
                    store.update_attribute(conn, existing, attr, now)
                    self._notify_attribute(existing["id"], "edit")
                except ValidationFailed as failed:
                    errors.setdefault("Attribute", {})[existing["uuid"]] = failed.errors
        new_objects = [obj for obj in event.get("Object") or []
                       if not self._edit_object(conn, event_id, _unwrap(obj, "Object"), now, errors)]
        self._add_children(conn, event_id, {"Attribute": new_attributes, "Object": new_objects,
                                            "Tag": event.get("Tag")}, now, errors)

    def _edit_object(self, conn: sqlite3.Connection, event_id: int, obj: Mapping[str, Any], now: int,
                     errors: dict[str, Any]) -> bool:
        """Update a known object of the event (its attributes by uuid); False when the event has no such object."""
        row = conn.execute("SELECT * FROM objects WHERE uuid = ? AND event_id = ?",
                           (obj.get("uuid"), event_id)).fetchone() if obj.get("uuid") else None
        if row is None:
            return False
        for attr in obj.get("Attribute") or []:
            existing = conn.execute("SELECT * FROM attributes WHERE uuid = ? AND object_id = ?",
                                    (attr.get("uuid"), row["id"])).fetchone() if attr.get("uuid") else None
            try:
                if existing is None:
                    attribute_id = store.insert_attribute(conn, event_id, attr, now, object_id=row["id"])
                    self._notify_attribute(attribute_id, "add")
                elif as_int(attr.get("timestamp"), now + 1) > existing["timestamp"]:
                    store.update_attribute(conn, existing, attr, now)
                    self._notify_attribute(existing["id"], "edit")
            except ValidationFailed as failed:
                errors.setdefault("Object", {}).setdefault(row["uuid"], []).append(failed.errors)
        conn.execute("UPDATE objects SET timestamp = ?, deleted = ? WHERE id = ?",
                     (now, int(as_bool(obj.get("deleted", row["deleted"]))), row["id"]))
        return True

    @locked
    def delete_event(self, ref: str) -> str:
        """``events/delete``: remove the event and everything in it; returns its id."""
        row = self._find("events", ref)
        if row is None:
            raise SaveFailed("Events", "delete", "Event was not deleted.")
        with self._write() as conn:
            self._notify_event(row["id"], "delete")
            conn.execute("DELETE FROM events WHERE id = ?", (row["id"],))
        return str(row["id"])

    @locked
    def publish_event(self, ref: str) -> str:
        """``events/publish``: set published and ``publish_timestamp``; sends ``misp_json``. Returns the id."""
        row = self._event_row(ref)
        with self._write() as conn:
            self._publish(conn, row["id"], search.now())
        return str(row["id"])

    def _publish(self, conn: sqlite3.Connection, event_id: int, now: int) -> None:
        conn.execute("UPDATE events SET published = 1, publish_timestamp = ? WHERE id = ?", (now, event_id))
        self._notify_event(event_id, "edit")
        self._notify("misp_json", lambda: dict(self.get_event(str(event_id)), action="publish"))

    @locked
    def unpublish_event(self, ref: str) -> str:
        """``events/unpublish``: clear the published flag (the timestamp stays). Returns the id."""
        row = self._event_row(ref)
        with self._write() as conn:
            conn.execute("UPDATE events SET published = 0 WHERE id = ?", (row["id"],))
            self._notify_event(row["id"], "edit")
        return str(row["id"])

    # -- attributes -----------------------------------------------------------------------------------
    @locked
    def add_attributes(self, event_ref: str,
                       items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``attributes/add``: add each attribute; returns the created rows and the failures by index."""
        event = self._event_row(event_ref)
        now = search.now()
        created: list[int] = []
        fails: dict[str, Any] = {}
        with self._write() as conn:
            for index, item in enumerate(items):
                try:
                    attribute_id = store.insert_attribute(conn, event["id"], item, now)
                except ValidationFailed as failed:
                    fails[f"attribute_{index}"] = failed.errors
                    continue
                created.append(attribute_id)
                self._notify_attribute(attribute_id, "add")
            if created:
                store.touch_event(conn, event["id"], now)
                self._notify_event(event["id"], "edit")
        return [self.attribute_response(attribute_id) for attribute_id in created], fails

    @locked
    def edit_attribute(self, ref: str, data: Any) -> dict[str, Any]:
        """``attributes/edit``: change the given fields; ``{"Attribute": ...}``."""
        row = self._find("attributes", ref)
        if row is None:
            raise NotFound("Invalid attribute.")
        attr = _unwrap(data, "Attribute")
        if "timestamp" in attr and as_int(attr["timestamp"], 0) <= row["timestamp"]:
            raise MethodNotAllowed("Attribute could not be saved: Attribute in the request not newer than the "
                                   "local copy.")
        now = search.now()
        with self._write() as conn:
            try:
                store.update_attribute(conn, row, attr, now)
            except ValidationFailed as failed:
                raise SaveFailed("Attributes", "edit", failed.errors, record_id=ref)
            store.touch_event(conn, row["event_id"], now)
            self._notify_attribute(row["id"], "edit")
            self._notify_event(row["event_id"], "edit")
        return self.attribute_response(row["id"])

    @locked
    def delete_attribute(self, ref: str, *, hard: bool = False) -> None:
        """``attributes/delete``: soft delete (``deleted`` true), or remove the row when ``hard``."""
        row = self._find("attributes", ref)
        if row is None:
            raise NotFound("Invalid attribute")
        now = search.now()
        with self._write() as conn:
            if hard:
                self._notify_attribute(row["id"], "delete")
                conn.execute("DELETE FROM attributes WHERE id = ?", (row["id"],))
            else:
                conn.execute("UPDATE attributes SET deleted = 1, timestamp = ? WHERE id = ?", (now, row["id"]))
                self._notify_attribute(row["id"], "soft-delete")
            store.touch_event(conn, row["event_id"], now)
            self._notify_event(row["event_id"], "edit")

    # -- objects --------------------------------------------------------------------------------------
    @locked
    def add_object(self, event_ref: str, data: Any) -> dict[str, Any]:
        """``objects/add``: the object with its attributes; ``{"Object": ...}``."""
        event = self._find("events", event_ref)
        if event is None:
            raise NotFound("Invalid event.")
        now = search.now()
        errors: dict[str, Any] = {}
        with self._write() as conn:
            object_id = self._add_object_rows(conn, event["id"], _unwrap(data, "Object"), now, errors, 0)
            if object_id is None:
                raise SaveFailed("Objects", "add", errors["Object"]["0"], record_id=event_ref)
            store.touch_event(conn, event["id"], now)
            self._notify_event(event["id"], "edit")
        return self.object_response(object_id, with_event=False)

