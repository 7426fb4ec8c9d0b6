"""The read side of :class:`~devstack.misp.models.MispModels`: lookups, views, searches and ZeroMQ payloads.

Every reference accepts MISP's two forms: a numeric id or a uuid.
"""
from __future__ import annotations

import sqlite3
import threading
from typing import Any, Mapping

from dxlmisp_devstack.misp import search, serialize as ser
from dxlmisp_devstack.misp.exceptions import BadRequest, NotFound
from dxlmisp_devstack.misp.validation import as_bool, is_uuid

Row = sqlite3.Row


class ModelQueries:
    """Reads over the shared connection; every method holds the models' lock."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self.conn = conn
        self._lock = lock

    # -- lookups --------------------------------------------------------------------------------------
    def _find(self, table: str, ref: str) -> Row | None:
        ref = str(ref).strip()
        with self._lock:
            if ref.isdigit():
                return self.conn.execute(f"SELECT * FROM {table} WHERE id = ?", (int(ref),)).fetchone()
            if is_uuid(ref):
                return self.conn.execute(f"SELECT * FROM {table} WHERE uuid = ? COLLATE NOCASE", (ref,)).fetchone()
        return None

    def _event_row(self, ref: str) -> Row:
        row = self._find("events", ref)
        if row is None:
            raise NotFound("Invalid event")
        return row

    def event_exists(self, ref: str) -> bool:
        """Whether an event with that id or uuid exists (``HEAD events/view``)."""
        return self._find("events", ref) is not None

    def attribute_exists(self, ref: str) -> bool:
        """Whether an attribute with that id or uuid exists (``HEAD attributes/view``)."""
        return self._find("attributes", ref) is not None

    def object_exists(self, ref: str) -> bool:
        """Whether an object with that id or uuid exists (``HEAD objects/view``)."""
        return self._find("objects", ref) is not None

    # -- views ----------------------------------------------------------------------------------------
    def get_event(self, ref: str, *, deleted: bool = False, metadata: bool = False,
                  sightings: bool = True) -> dict[str, Any]:
        """``events/view``: ``{"Event": {...}}`` with everything in it."""
        with self._lock:
            row = self._event_row(ref)
            return ser.build_events(self.conn, [row], metadata=metadata, deleted=deleted, with_sightings=sightings)[0]

    def get_attribute(self, ref: str) -> dict[str, Any]:
        """``attributes/view``: ``{"Attribute": {...}}`` with its Tag and Sighting lists."""
        with self._lock:
            row = self._find("attributes", ref)
            if row is None:
                raise NotFound("Invalid attribute")
            tags, sightings = ser.attribute_children(self.conn, [row], with_sightings=True)
            return {"Attribute": ser.nested_attribute(row, tags, sightings)}

    def attribute_response(self, attribute_id: int) -> dict[str, Any]:
        """What ``attributes/add`` and ``attributes/edit`` answer: the row (value1, value2 too) with its tags."""
        with self._lock:
            row = self.conn.execute("SELECT * FROM attributes WHERE id = ?", (attribute_id,)).fetchone()
            tags, _ = ser.attribute_children(self.conn, [row], with_sightings=False)
            return {"Attribute": dict(ser.attribute_raw(row), Tag=tags.get(row["id"], []))}

    def get_object(self, ref: str) -> dict[str, Any]:
        """``objects/view``: ``{"Object": {..., "Attribute": [...], "Event": {...}}}``."""
        row = self._find("objects", ref)
        if row is None:
            raise NotFound("Invalid object.")
        return self.object_response(row["id"], with_event=True)

    def object_response(self, object_id: int, *, with_event: bool) -> dict[str, Any]:
        """An object with its live attributes (and, for the view, a short Event)."""
        with self._lock:
            row = self.conn.execute("SELECT * FROM objects WHERE id = ?", (object_id,)).fetchone()
            attrs = self.conn.execute("SELECT * FROM attributes WHERE object_id = ? AND deleted = 0 ORDER BY id",
                                      (object_id,)).fetchall()
            tags, sightings = ser.attribute_children(self.conn, attrs, with_sightings=False)
            obj = dict(ser.object_dict(row), ObjectReference=[],
                       Attribute=[ser.nested_attribute(a, tags, sightings) for a in attrs])
            if with_event:
                event = self.conn.execute("SELECT * FROM events WHERE id = ?", (row["event_id"],)).fetchone()
                obj["Event"] = {"id": str(event["id"]), "info": event["info"], "org_id": str(event["org_id"]),
                                "orgc_id": str(event["orgc_id"])}
            return {"Object": obj}

    # -- searches -------------------------------------------------------------------------------------
    def search_events(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``events/restSearch`` (json): ``[{"Event": {...}}, ...]``; see :mod:`dxlmisp_devstack.misp.search`."""
        now = search.now()
        query = search.event_query(filters, now, scope="events")
        attribute_where = None
        if search.has_attribute_filters(filters):
            attrs = search.attribute_query(filters, now, scope="events")
            query.add(f"EXISTS (SELECT 1 FROM attributes a WHERE a.event_id = e.id AND {attrs.sql()})", *attrs.params)
            attribute_where = (attrs.sql(), attrs.params)
        elif filters.get("deleted") not in (None, "", False, 0, "0"):
            attrs = search.attribute_query(filters, now, scope="events")
            attribute_where = (attrs.sql(), attrs.params)
        order = search.order_by(filters.get("order"), alias="e", allowed=search.EVENT_ORDER_COLUMNS,
                                default="e.id ASC")
        sql = f"SELECT e.* FROM events e WHERE {query.sql()} ORDER BY {order}{search.paging(filters)}"
        with self._lock:
            rows = self.conn.execute(sql, query.params).fetchall()
            return ser.build_events(self.conn, rows, metadata=as_bool(filters.get("metadata")),
                                    attribute_where=attribute_where)

    def search_attributes(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """``attributes/restSearch`` (json): ``{"Attribute": [...]}``, each with its Event (and Object)."""
        now = search.now()
        attrs = search.attribute_query(filters, now, scope="attributes")
        events = search.event_query(filters, now, scope="attributes")
        order = search.order_by(filters.get("order"), alias="a", allowed=search.ATTRIBUTE_ORDER_COLUMNS,
                                default="a.id ASC")
        sql = (f"SELECT a.* FROM attributes a JOIN events e ON e.id = a.event_id WHERE {attrs.sql()} AND "
               f"{events.sql()} ORDER BY {order}{search.paging(filters)}")
        with_sightings = as_bool(filters.get("includeSightings"))
        with self._lock:
            rows = self.conn.execute(sql, attrs.params + events.params).fetchall()
            tags, sightings = ser.attribute_children(self.conn, rows, with_sightings=with_sightings)
            event_rows = {r["id"]: r for r in self.conn.execute(
                "SELECT * FROM events WHERE id IN (SELECT value FROM json_each(?))",
                (ser.ids_param({r["event_id"] for r in rows}),))}
            event_tags = (ser.event_tags(self.conn, list(event_rows))
                          if as_bool(filters.get("includeEventTags")) else {})
            objects = {o["id"]: o for o in self.conn.execute(
                "SELECT * FROM objects WHERE id IN (SELECT value FROM json_each(?))",
                (ser.ids_param({r["object_id"] for r in rows if r["object_id"]}),))}
        found = []
        for row in rows:
            attr = ser.attribute_dict(row)
            event = event_rows[row["event_id"]]
            if as_bool(filters.get("includeEventUuid")):
                attr["event_uuid"] = event["uuid"]
            attr["Event"] = ser.event_meta(event)
            if row["object_id"]:
                obj = objects[row["object_id"]]
                attr["Object"] = {"id": str(obj["id"]), "distribution": str(obj["distribution"]),
                                  "sharing_group_id": str(obj["sharing_group_id"])}
            attr["Tag"] = tags.get(row["id"], []) + [dict(t, inherited=True) for t in event_tags.get(event["id"], [])]
            if with_sightings:
                attr["Sighting"] = sightings.get(row["id"], [])
            found.append(attr)
        return {"Attribute": found}

    def search_objects(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``objects/restSearch`` (json): ``[{"Object": {..., "Attribute": [...]}}, ...]`` of live objects,
        by their event's filters, ``uuid`` and ``object_name``; ``limit`` and ``page`` count objects."""
        now = search.now()
        event_keys = {k: v for k, v in filters.items() if k not in ("uuid", "tags", "searchall", "quickFilter", "all")}
        events = search.event_query(event_keys, now, scope="objects")
        objects = search.Query()
        search.add_terms(objects, ["o.uuid"], search.terms(filters.get("uuid")))
        search.add_terms(objects, ["o.name"], search.terms(filters.get("object_name")))
        objects.add("o.deleted = ?", 0)
        sql = (f"SELECT o.id FROM objects o JOIN events e ON e.id = o.event_id WHERE {objects.sql()} AND "
               f"{events.sql()} ORDER BY o.id ASC{search.paging(filters)}")
        with self._lock:
            ids = [row["id"] for row in self.conn.execute(sql, objects.params + events.params)]
            return [self.object_response(object_id, with_event=False) for object_id in ids]

    def index_events(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``events/index``: event metadata with EventTag; MISP's index filters (see :mod:`.search`)."""
        now = search.now()
        translated = search.index_filters(filters)
        query = search.event_query(translated, now, scope="events")
        if translated.get("value"):
            attrs = search.attribute_query({"value": translated["value"]}, now, scope="events")
            query.add(f"EXISTS (SELECT 1 FROM attributes a WHERE a.event_id = e.id AND {attrs.sql()})", *attrs.params)
        for column in ("distribution", "analysis"):
            search.add_terms(query, [f"CAST(e.{column} AS TEXT)"], search.terms(translated.get(column)))
        if filters.get("email"):
            query.add("e.event_creator_email LIKE ?", f"%{filters['email']}%")
        sort = filters.get("sort")
        order = "e.timestamp DESC, e.id DESC" if not sort else search.order_by(
            f"{sort} {filters.get('direction') or 'asc'}", alias="e", allowed=search.EVENT_ORDER_COLUMNS, default="")
        sql = f"SELECT e.* FROM events e WHERE {query.sql()} ORDER BY {order}{search.paging(filters)}"
        minimal = as_bool(filters.get("minimal"))
        with self._lock:
            rows = self.conn.execute(sql, query.params).fetchall()
            if minimal:
                counts = ser.attribute_counts(self.conn, [r["id"] for r in rows])
                rows = [r for r in rows if counts.get(r["id"])]
            return ser.index_entries(self.conn, rows, minimal=minimal)

    def search_sightings(self, filters: Mapping[str, Any], context: str | None) -> list[dict[str, Any]]:
        """``sightings/restSearch[/event|attribute]`` (json): ``[{"Sighting": {...}}, ...]``."""
        if context not in (None, "event", "attribute"):
            raise BadRequest("Invalid context.")
        now = search.now()
        query = search.Query()
        if context:
            if filters.get("id") in (None, ""):
                raise BadRequest("An id must be provided if the context is set.")
            table = "events" if context == "event" else "attributes"
            target = self._find(table, str(filters["id"]))
            query.add(f"s.{context}_id = ?", target["id"] if target else -1)
        search.add_terms(query, ["CAST(s.type AS TEXT)"], search.terms(filters.get("type")))
        for key, op in (("from", ">="), ("to", "<=")):
            if filters.get(key) not in (None, ""):
                query.add(f"s.date_sighting {op} ?", search.parse_time(filters[key], now))
        if filters.get("last") not in (None, ""):
            query.add("s.date_sighting >= ?", search.parse_time(filters["last"], now))
        search.add_terms(query, ["CAST(s.org_id AS TEXT)"], search.terms(filters.get("org_id")))
        if filters.get("source") not in (None, ""):
            query.add("s.source = ?", str(filters["source"]))
        with self._lock:
            rows = self.conn.execute(
                f"SELECT s.*, a.uuid AS attribute_uuid FROM sightings s JOIN attributes a ON a.id = s.attribute_id "
                f"WHERE {query.sql()} ORDER BY s.id", query.params).fetchall()
            found = []
            for row in rows:
                sighting = ser.sighting_dict(row, row["attribute_uuid"])
                if as_bool(filters.get("includeAttribute")):
                    attr = self.conn.execute("SELECT * FROM attributes WHERE id = ?", (row["attribute_id"],)).fetchone()
                    sighting["Attribute"] = ser.attribute_dict(attr)
                if as_bool(filters.get("includeEvent")):
                    event = self.conn.execute("SELECT * FROM events WHERE id = ?", (row["event_id"],)).fetchone()
                    sighting["Event"] = ser.event_meta(event)
                found.append({"Sighting": sighting})
            return found

    # -- ZeroMQ payloads ------------------------------------------------------------------------------
    def event_notification(self, event_id: int, action: str) -> dict[str, Any]:
        """``misp_json_event``: the event's own fields with its Orgc, and the action."""
        row = self.conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        counts = ser.attribute_counts(self.conn, [event_id])
        return {"Event": dict(ser.event_dict(row, counts.get(event_id, 0)), Orgc=ser.org()), "action": action}

    def attribute_notification(self, attribute_id: int, action: str) -> dict[str, Any]:
        """``misp_json_attribute``: the attribute with its tags and sightings, a short Event, the action."""
        row = self.conn.execute("SELECT * FROM attributes WHERE id = ?", (attribute_id,)).fetchone()
        event = self.conn.execute("SELECT * FROM events WHERE id = ?", (row["event_id"],)).fetchone()
        tags, sightings = ser.attribute_children(self.conn, [row], with_sightings=True)
        attr = dict(ser.attribute_dict(row), Tag=tags.get(row["id"], []), Sighting=sightings.get(row["id"], []))
        return {"Attribute": attr, "Event": ser.event_meta(event), "action": action}

    def object_notification(self, object_id: int, action: str) -> dict[str, Any]:
        """``misp_json_object``: the object with its attributes, a short Event, the action."""
        obj = self.object_response(object_id, with_event=False)
        event = self.conn.execute("SELECT * FROM events WHERE id = ?", (int(obj["Object"]["event_id"]),)).fetchone()
        return dict(obj, Event=ser.event_meta(event), action=action)

    def sighting_notification(self, sighting_id: int) -> dict[str, Any]:
        """``misp_json_sighting``: the sighting with its Attribute and Event, action ``add``."""
        row = self.conn.execute("SELECT s.*, a.uuid AS attribute_uuid FROM sightings s JOIN attributes a ON "
                                "a.id = s.attribute_id WHERE s.id = ?", (sighting_id,)).fetchone()
        attr = self.conn.execute("SELECT * FROM attributes WHERE id = ?", (row["attribute_id"],)).fetchone()
        event = self.conn.execute("SELECT * FROM events WHERE id = ?", (row["event_id"],)).fetchone()
        sighting = dict(ser.sighting_dict(row, row["attribute_uuid"]), Event=ser.event_meta(event),
                        Attribute={"id": str(attr["id"]), "uuid": attr["uuid"], "type": attr["type"],
                                   "category": attr["category"], "value": ser.attribute_value(attr),
                                   "to_ids": bool(attr["to_ids"])})
        return {"Sighting": sighting, "action": "add"}
