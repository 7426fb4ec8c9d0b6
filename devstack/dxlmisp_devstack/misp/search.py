"""restSearch and events/index filters, turned into SQL over ``events e`` and ``attributes a``.

Supported restSearch filters (events and attributes scope):

* attribute level: ``value`` (exact, case-insensitive, ``%`` wildcards; matches value1, value2 or the
  full composite value), ``type``, ``category``, ``to_ids``, ``object_relation``, ``deleted``,
  ``attribute_timestamp`` (and ``timestamp`` in the attributes scope), ``uuid`` (attribute or event uuid);
* event level: ``eventid`` (ids or uuids), ``org`` (id or name), ``tags`` and ``event_tags`` (a string, a
  list, or PyMISP's ``{"OR", "AND", "NOT"}``; ``!tag`` negates; ``%`` wildcards), ``published``,
  ``timestamp`` / ``event_timestamp``, ``publish_timestamp`` / ``last``, ``from`` / ``to`` (aliases
  ``date_from`` / ``date_to``), ``threat_level_id``, ``eventinfo``, ``searchall`` / ``quickFilter``;
* ``limit`` and ``page``; ``order``: ``"Event.timestamp ASC"`` style (``Event.`` / ``Attribute.`` prefix
  optional, ASC by default), as MISP's restSearch ``order`` parameter.

Lists are OR-ed, ``!value`` excludes, different filters are AND-ed. Times take an epoch, a date
(``YYYY-MM-DD``) or a duration back from now (``30s``, ``15m``, ``12h``, ``5d``, ``2w``), or a
``[from, to]`` pair. Timestamp filters are inclusive (``>=``), as MISP's are.

Not supported (ignored, documented): ``withAttachments``, ``enforceWarninglist``, ``sharinggroup``,
``sgReferenceOnly``, ``requested_attributes``, ``headerless``, ``includeDecayScore``, ``includeCorrelations``,
``decayingModel``, ``excludeDecayed``, ``first_seen`` / ``last_seen``, ``date``. An unknown ``order``
column is refused (400).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping

from dxlmisp_devstack.misp.exceptions import BadRequest
from dxlmisp_devstack.misp.identity import ORG_ID, ORG_NAME

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
EVENT_ORDER_COLUMNS = {"id", "timestamp", "publish_timestamp", "date", "info", "uuid", "sighting_timestamp",
                       "threat_level_id", "analysis", "attribute_count"}
ATTRIBUTE_ORDER_COLUMNS = {"id", "timestamp", "value", "type", "category", "event_id", "uuid"}


@dataclass
class Terms:
    """A filter value split into any-of, all-of and none-of terms."""

    any_of: list[str] = field(default_factory=list)
    all_of: list[str] = field(default_factory=list)
    none_of: list[str] = field(default_factory=list)


def terms(value: Any) -> Terms:
    """Parse a string, a list (``!x`` negates) or ``{"OR": [...], "AND": [...], "NOT": [...]}``."""
    result = Terms()
    if value is None or value == "" or value == []:
        return result
    if isinstance(value, Mapping):
        for key, target in (("OR", result.any_of), ("AND", result.all_of), ("NOT", result.none_of)):
            sub = value.get(key, value.get(key.lower(), []))
            target.extend(str(v) for v in (sub if isinstance(sub, (list, tuple)) else [sub]))
        return result
    for item in value if isinstance(value, (list, tuple)) else [value]:
        text = str(item)
        if text.startswith("!"):
            result.none_of.append(text[1:])
        elif text:
            result.any_of.append(text)
    return result


def parse_time(value: Any, now: int) -> int:
    """An epoch from an epoch, a ``YYYY-MM-DD`` date or a duration back from ``now``."""
    if isinstance(value, bool):
        raise BadRequest(f"Invalid time filter: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text))
    match = _DURATION.match(text)
    if match:
        return now - int(match.group(1)) * _UNITS[match.group(2).lower()]
    if _DATE.match(text):
        day = date.fromisoformat(text[:10])
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
    raise BadRequest(f"Invalid time filter: {value!r}")


def parse_date(value: Any, now: int) -> str:
    """A ``YYYY-MM-DD`` date from a date, an epoch or a duration (for the event ``date`` filters)."""
    text = str(value).strip()
    if _DATE.match(text):
        return text[:10]
    return datetime.fromtimestamp(parse_time(value, now), tz=timezone.utc).date().isoformat()


class Query:
    """AND-ed SQL conditions with their parameters."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []

    def add(self, sql: str, *params: Any) -> None:
        self.where.append(sql)
        self.params.extend(params)

    def sql(self) -> str:
        return " AND ".join(self.where) if self.where else "1"


def _match(exprs: list[str], term: str) -> tuple[str, list[str]]:
    op = "LIKE" if "%" in term else "="
    return "(" + " OR ".join(f"{expr} {op} ? COLLATE NOCASE" for expr in exprs) + ")", [term] * len(exprs)


def _add_matched(query: Query, matcher: Callable[[str], tuple[str, list[Any]]], parsed: Terms) -> None:
    if parsed.any_of:
        parts = [matcher(term) for term in parsed.any_of]
        query.add("(" + " OR ".join(p[0] for p in parts) + ")", *[x for p in parts for x in p[1]])
    for term in parsed.all_of:
        sql, params = matcher(term)
        query.add(sql, *params)
    for term in parsed.none_of:
        sql, params = matcher(term)
        query.add(f"NOT {sql}", *params)


def add_terms(query: Query, exprs: list[str], parsed: Terms) -> None:
    _add_matched(query, lambda term: _match(exprs, term), parsed)


def _add_range(query: Query, column: str, value: Any, now: int) -> None:
    if value is None or value == "":
        return
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise BadRequest(f"A time range takes two values, got {value!r}")
        query.add(f"{column} >= ?", parse_time(value[0], now))
        query.add(f"{column} <= ?", parse_time(value[1], now))
    else:
        query.add(f"{column} >= ?", parse_time(value, now))


def _tag_exists(link_table: str, link_column: str, owner: str, name_sql: str) -> str:
    return (f"EXISTS (SELECT 1 FROM {link_table} l JOIN tags t ON t.id = l.tag_id "
            f"WHERE l.{link_column} = {owner} AND {name_sql})")


def _add_tags(query: Query, value: Any, owners: list[tuple[str, str, str]]) -> None:
    def any_owner(term: str) -> tuple[str, list[Any]]:
        name_sql, params = _match(["t.name"], term)
        sqls = [_tag_exists(table, column, owner, name_sql) for table, column, owner in owners]
        return "(" + " OR ".join(sqls) + ")", params * len(owners)

    _add_matched(query, any_owner, terms(value))


def _add_org(query: Query, value: Any) -> None:
    parsed = terms(value)
    known = {str(ORG_ID), ORG_NAME.lower()}

    def is_ours(term: str) -> bool:
        return term.lower() in known or ("%" in term and re.fullmatch(
            re.escape(term.lower()).replace("%", ".*"), ORG_NAME.lower()) is not None)

    # Every event belongs to the one organisation: the filter keeps all of them or none.
    if ((parsed.any_of and not any(is_ours(t) for t in parsed.any_of))
            or any(not is_ours(t) for t in parsed.all_of) or any(is_ours(t) for t in parsed.none_of)):
        query.add("0")


def _deleted_flag(value: Any) -> int | None:
    """0 (live attributes, the default), 1 (soft-deleted only) or None (both, for ``[0, 1]``)."""
    values = value if isinstance(value, (list, tuple)) and value else [value]
    flags = {1 if str(v).lower() in ("1", "true") else 0 for v in values}
    return None if len(flags) == 2 else flags.pop()


def attribute_query(filters: Mapping[str, Any], now: int, *, scope: str) -> Query:
    """Conditions on ``attributes a`` from the attribute-level filters (``scope`` is events or attributes)."""
    query = Query()
    deleted = _deleted_flag(filters.get("deleted"))
    if deleted is not None:
        query.add("a.deleted = ?", deleted)
    value = terms(filters.get("value"))
    add_terms(query, ["a.value1", "a.value2", "(a.value1 || '|' || a.value2)"], value)
    add_terms(query, ["a.type"], terms(filters.get("type")))
    add_terms(query, ["a.category"], terms(filters.get("category")))
    add_terms(query, ["a.object_relation"], terms(filters.get("object_relation")))
    to_ids = filters.get("to_ids")
    if to_ids not in (None, "", [0, 1], ["0", "1"]):
        query.add("a.to_ids = ?", 1 if str(to_ids).lower() in ("1", "true") else 0)
    _add_range(query, "a.timestamp", filters.get("attribute_timestamp"), now)
    if scope == "attributes":
        _add_range(query, "a.timestamp", filters.get("timestamp"), now)
    return query


def has_attribute_filters(filters: Mapping[str, Any]) -> bool:
    """True when an events search must also pick attributes (value, type, category, to_ids, ...)."""
    keys = ("value", "type", "category", "to_ids", "object_relation", "attribute_timestamp")
    return any(filters.get(key) not in (None, "", []) for key in keys)


def event_query(filters: Mapping[str, Any], now: int, *, scope: str) -> Query:
    """Conditions on ``events e`` from the event-level filters; in the attributes scope on its event."""
    query = Query()
    add_terms(query, ["CAST(e.id AS TEXT)", "e.uuid"], terms(filters.get("eventid")))
    if scope == "events":
        _add_matched(query, _event_or_attribute_uuid, terms(filters.get("uuid")))
    else:
        add_terms(query, ["a.uuid", "e.uuid"], terms(filters.get("uuid")))
    _add_org(query, filters.get("org"))
    if filters.get("published") not in (None, ""):
        query.add("e.published = ?", 1 if str(filters["published"]).lower() in ("1", "true") else 0)
    if scope == "events":
        _add_range(query, "e.timestamp", filters.get("timestamp"), now)
    _add_range(query, "e.timestamp", filters.get("event_timestamp"), now)
    _add_range(query, "e.publish_timestamp", filters.get("publish_timestamp"), now)
    _add_range(query, "e.publish_timestamp", filters.get("last"), now)
    for key, op in (("from", ">="), ("date_from", ">="), ("to", "<="), ("date_to", "<=")):
        if filters.get(key) not in (None, ""):
            query.add(f"e.date {op} ?", parse_date(filters[key], now))
    add_terms(query, ["CAST(e.threat_level_id AS TEXT)"], terms(filters.get("threat_level_id")))
    if filters.get("eventinfo"):
        query.add("e.info LIKE ?", str(filters["eventinfo"]))
    owners = [("event_tags", "event_id", "e.id")]
    _add_tags(query, filters.get("event_tags"), owners)
    if scope == "events":
        _add_tags(query, filters.get("tags"), owners + [("attribute_tags", "event_id", "e.id")])
    else:
        _add_tags(query, filters.get("tags"), owners + [("attribute_tags", "attribute_id", "a.id")])
    quick = filters.get("searchall") or filters.get("quickFilter") or filters.get("all")
    if isinstance(quick, str) and quick:
        _add_searchall(query, quick if "%" in quick else f"%{quick}%")
    return query


def _event_or_attribute_uuid(term: str) -> tuple[str, list[Any]]:
    return ("(e.uuid = ? COLLATE NOCASE OR EXISTS (SELECT 1 FROM attributes u WHERE u.event_id = e.id AND "
            "u.uuid = ? COLLATE NOCASE))", [term, term])


def _add_searchall(query: Query, pattern: str) -> None:
    query.add("(e.info LIKE ? OR EXISTS (SELECT 1 FROM attributes s WHERE s.event_id = e.id AND s.deleted = 0 AND "
              "(s.value1 LIKE ? OR s.value2 LIKE ? OR s.comment LIKE ?)) OR EXISTS (SELECT 1 FROM event_tags l "
              "JOIN tags t ON t.id = l.tag_id WHERE l.event_id = e.id AND t.name LIKE ?))", *[pattern] * 5)


def order_by(value: Any, *, alias: str, allowed: set[str], default: str) -> str:
    """An ``ORDER BY`` from MISP's ``order`` (``"Event.timestamp ASC"``); unknown columns are refused."""
    if value in (None, ""):
        return default
    parts = str(value).replace(",", " ").split()
    column = parts[0].split(".")[-1]
    direction = parts[1].upper() if len(parts) > 1 else "ASC"
    if column not in allowed or direction not in ("ASC", "DESC"):
        raise BadRequest(f"Unsupported order {value!r}: use one of {sorted(allowed)} with ASC or DESC")
    if column == "value":
        column = "value1"
    if column == "attribute_count":
        return f"(SELECT COUNT(*) FROM attributes c WHERE c.event_id = e.id AND c.deleted = 0) {direction}, e.id"
    return f"{alias}.{column} {direction}, {alias}.id {direction}"


def paging(filters: Mapping[str, Any]) -> str:
    """``LIMIT ... OFFSET ...`` from ``limit`` and ``page`` (page counts from 1); empty without a limit."""
    limit = filters.get("limit")
    try:
        limit_n = int(limit) if limit not in (None, "") else 0
        page_n = max(int(filters.get("page") or 1), 1)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Invalid limit or page: {limit!r}, {filters.get('page')!r}") from exc
    if limit_n <= 0:
        return ""
    return f" LIMIT {limit_n} OFFSET {(page_n - 1) * limit_n}"


_INDEX_NAMES = {"eventid": "eventid", "org": "org", "published": "published", "timestamp": "timestamp",
                "publish_timestamp": "publish_timestamp", "publishtimestamp": "publish_timestamp",
                "datefrom": "from", "dateuntil": "to", "threatlevel": "threat_level_id", "all": "searchall",
                "distribution": "distribution", "analysis": "analysis"}
_INDEX_LISTS = {"eventid", "threat_level_id", "distribution", "analysis"}


def index_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    """``events/index`` filter names turned into the restSearch names :func:`event_query` reads.

    ``attribute`` and ``eventinfo`` match substrings; ``tag`` and ``tags`` are merged; ``"1|2"`` lists are split.
    Not supported (ignored): ``sharinggroup``, ``hasproposal``, ``searchDatefrom``, ``searchDateuntil``.
    """
    out: dict[str, Any] = {}
    for name, target in _INDEX_NAMES.items():
        value = filters.get(name)
        if value in (None, "", []):
            continue
        if target in _INDEX_LISTS and isinstance(value, str) and "|" in value:
            value = value.split("|")
        out[target] = value
    tags = [t for key in ("tag", "tags") for t in (filters.get(key) if isinstance(filters.get(key), list)
                                                   else [filters.get(key)]) if t not in (None, "")]
    if tags:
        out["tags"] = tags
    for name, target in (("attribute", "value"), ("eventinfo", "eventinfo")):
        if filters.get(name):
            out[target] = f"%{filters[name]}%"
    return out


def now() -> int:
    """The current epoch second."""
    return int(time.time())
