"""The payload checks of the legacy adapters: the kinds of value a key takes, and each spec's index.

A spec maps each accepted payload key (its canonical name) to an :class:`Arg`: its kind, whether it is
required, its default and its other names. :data:`KINDS` says how each kind is checked and converted and
how a requester is told what it takes. :func:`spec_index` works out once per spec what
:func:`check` needs, so that a check looks only at the keys a payload holds; :func:`check` checks a
payload against its spec.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from dataclasses import dataclass
from typing import Any

from dxlmispservice.api.pathargs import MAX_ID
from dxlmispservice.api.references import ID_FIRST_WRAPPERS, entity_reference
from dxlmispservice.errors import InvalidArguments
from dxlmispservice.events.feedstate import MAX_TIMESTAMP

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\Z", re.IGNORECASE)
_DIGITS = re.compile(r"^[0-9]{1,19}\Z")
_DURATION = re.compile(r"^\s*[0-9]{1,6}\s*[smhdwSMHDW]\s*\Z")
_WRAPPERS = ("Event", "Attribute", "Object", "ShadowAttribute")


#: The longest text MISP stores in a TEXT column (event info, attribute value and comment), in UTF-8 bytes.
TEXT_BYTES = 65_535
#: The longest short name MISP stores (category, tag name, sighting source...), in characters.
NAME_CHARS = 255
#: The longest time string (a date, a date-time or a duration such as "7d") taken by search's time keys.
_TIME_CHARS = 64


def _as_text(v: Any) -> tuple[bool, Any]:
    if not isinstance(v, str) or "\0" in v:
        return False, v
    return len(v) <= TEXT_BYTES // 4 or len(v.encode("utf-8")) <= TEXT_BYTES, v


def _as_name(v: Any) -> tuple[bool, Any]:
    return isinstance(v, str) and bool(v.strip()) and "\0" not in v and len(v) <= NAME_CHARS, v


def _as_int(v: Any) -> tuple[bool, Any]:
    if isinstance(v, int) and not isinstance(v, bool):
        return True, v
    if isinstance(v, str) and _DIGITS.match(v.strip()):
        return True, int(v)
    return False, v


def _as_count(v: Any) -> tuple[bool, Any]:
    ok, number = _as_int(v)
    return ok and 0 <= number <= MAX_TIMESTAMP, number


def _as_id(v: Any) -> tuple[bool, Any]:
    ok, number = _as_int(v)
    return ok and 1 <= number <= MAX_ID, number


def _as_timestamp(v: Any) -> tuple[bool, Any]:
    ok, number = _as_int(v)
    return ok and 0 <= number <= MAX_TIMESTAMP, number


def _is_moment_text(text: str) -> bool:
    """Epoch seconds as digits, or an ISO date or date-time (``Z`` or an offset allowed)."""
    text = text.strip()
    if _DIGITS.match(text):
        return int(text) <= MAX_TIMESTAMP
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
    except ValueError:
        return False
    return True


def _as_moment(v: Any) -> tuple[bool, Any]:
    """A moment: epoch seconds (0 to year 9999), or an ISO date or date-time string."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return 0 <= v <= MAX_TIMESTAMP, v
    return isinstance(v, str) and 0 < len(v) <= _TIME_CHARS and _is_moment_text(v), v


def _as_time(v: Any) -> tuple[bool, Any]:
    """A moment (:func:`_as_moment`), or a duration back from now such as ``"7d"`` (s, m, h, d or w; at
    most six digits)."""
    if isinstance(v, str) and _DURATION.match(v):
        return True, v
    return _as_moment(v)


def _as_time_range(v: Any) -> tuple[bool, Any]:
    """A moment, or ``[from, to]`` of two moments."""
    if isinstance(v, list):
        return len(v) == 2 and all(_as_time(x)[0] for x in v), v
    return _as_time(v)


def _as_flags(v: Any) -> tuple[bool, Any]:
    """A flag (true/false, a small number or a word such as "exclude"), or a list of them."""
    def flag(x: Any) -> bool:
        return isinstance(x, bool) or (isinstance(x, int) and 0 <= x <= 2) or (
            isinstance(x, str) and 0 < len(x) <= 16 and x.isalnum())
    if isinstance(v, list):
        return bool(v) and all(flag(x) for x in v), v
    return flag(v), v


def _as_ids(v: Any) -> tuple[bool, Any]:
    """An id, or a non-empty list of ids."""
    if isinstance(v, list):
        return bool(v) and all(_as_id(x)[0] for x in v), [_as_id(x)[1] for x in v]
    return _as_id(v)


def as_bool(v: Any) -> tuple[bool, Any]:
    """true/false, 0/1, or their text."""
    if isinstance(v, bool):
        return True, v
    if isinstance(v, int) and v in (0, 1):
        return True, bool(v)
    if isinstance(v, str) and v.strip().lower() in ("0", "1", "true", "false"):
        return True, v.strip().lower() in ("1", "true")
    return False, v


def unwrap(v: dict[str, Any]) -> dict[str, Any]:
    """The entity inside ``{"Event": {...}}`` (or Attribute, Object, ShadowAttribute); else ``v``."""
    if len(v) == 1 and next(iter(v)) in _WRAPPERS and isinstance(next(iter(v.values())), dict):
        return next(iter(v.values()))
    return v


def as_ref(v: Any) -> tuple[bool, Any]:
    """An event/attribute reference: a number, a UUID, or a JSON entity that has one (PyMISP's rule, uuid
    first: :func:`~dxlmispservice.api.references.entity_reference`)."""
    if isinstance(v, dict):
        wrapper = next(iter(v)) if len(v) == 1 else None
        v = entity_reference(unwrap(v), id_first=wrapper in ID_FIRST_WRAPPERS)
    if isinstance(v, int) and not isinstance(v, bool):
        return 1 <= v <= MAX_ID, v
    if isinstance(v, str) and _DIGITS.match(v):
        return 1 <= int(v) <= MAX_ID, v
    return isinstance(v, str) and bool(_UUID.match(v)), v


def _as_uuid(v: Any) -> tuple[bool, Any]:
    if isinstance(v, dict):
        v = unwrap(v).get("uuid")
    return isinstance(v, str) and bool(_UUID.match(v)), v


def _as_scalar(v: Any) -> tuple[bool, Any]:
    if isinstance(v, str):
        return _as_text(v)
    return isinstance(v, (int, float)) and not isinstance(v, bool), v


def _as_value(v: Any) -> tuple[bool, Any]:
    if isinstance(v, list):
        return bool(v) and all(_as_scalar(x)[0] for x in v), v
    return _as_scalar(v)


def _term(v: Any) -> bool:
    return (isinstance(v, str) and _as_text(v)[0]) or (isinstance(v, int) and not isinstance(v, bool))


def _as_terms(v: Any) -> tuple[bool, Any]:
    if isinstance(v, list):
        return all(_term(x) for x in v), v
    if isinstance(v, dict):
        return bool(v) and set(v) <= {"OR", "AND", "NOT"} and all(
            _term(x) or (isinstance(x, list) and all(_term(y) for y in x)) for x in v.values()), v
    return _term(v), v


def _ref_term(v: Any) -> bool:
    """An id or a UUID, or either negated with a leading ``!`` (MISP's restSearch negation)."""
    if isinstance(v, str) and v.startswith("!"):
        v = v[1:]
    return not isinstance(v, dict) and as_ref(v)[0]


def _as_refs(v: Any) -> tuple[bool, Any]:
    """An id or UUID, a non-empty list of them, or ``{"OR"/"AND"/"NOT": [...]}`` of them."""
    if isinstance(v, list):
        return bool(v) and all(_ref_term(x) for x in v), v
    if isinstance(v, dict):
        return bool(v) and set(v) <= {"OR", "AND", "NOT"} and all(
            _ref_term(x) or (isinstance(x, list) and bool(x) and all(_ref_term(y) for y in x)) for x in v.values()), v
    return _ref_term(v), v


def _as_tag(v: Any) -> tuple[bool, Any]:
    if isinstance(v, dict):
        inner = v["Tag"] if len(v) == 1 and isinstance(v.get("Tag"), dict) else v
        v = inner.get("name")
    return _as_name(v)


def _as_sighting_type(v: Any) -> tuple[bool, Any]:
    ok, number = _as_int(v)
    return ok and number in (0, 1, 2), str(number)


KINDS: dict[str, tuple[Callable[[Any], tuple[bool, Any]], str]] = {
    "text": (_as_text, f"a string of at most {TEXT_BYTES} UTF-8 bytes, with no NUL character"),
    "name": (_as_name, f"a non-blank string of at most {NAME_CHARS} characters, with no NUL character"),
    "int": (_as_int, "an integer"),
    "count": (_as_count, "a whole number, 0 or more"),
    "id": (_as_id, "an id: a whole number, 1 or more"),
    "timestamp": (_as_timestamp, f"epoch seconds: a whole number from 0 to {MAX_TIMESTAMP}"),
    "moment": (_as_moment, f"epoch seconds (0 to {MAX_TIMESTAMP}) or an ISO date or date-time string"),
    "time": (_as_time, f"epoch seconds (0 to {MAX_TIMESTAMP}), an ISO date or date-time string, or a "
                       "duration such as \"7d\" (s, m, h, d or w)"),
    "time_range": (_as_time_range, "a time (epoch seconds, or a date, date-time or duration string), "
                                   "or [from, to] of two"),
    "flags": (_as_flags, "true/false, 0/1/2 or a short word, or a list of them"),
    "ids": (_as_ids, "an id (a whole number, 1 or more) or a list of ids"),
    "bool": (as_bool, "true or false"),
    "ref": (as_ref, "an id (a whole number, 1 or more) or a UUID, or a JSON object that has one"),
    "uuid": (_as_uuid, "a UUID, or a JSON object that has one"),
    "value": (_as_value, "a string or number, or a non-empty list of them"),
    "terms": (_as_terms, "a string, a list of strings, or {\"OR\"/\"AND\"/\"NOT\": [...]}"),
    "refs": (_as_refs, "an id (1 or more) or a UUID, a non-empty list of them, or {\"OR\"/\"NOT\": [...]} "
                       "of them (each may start with '!')"),
    "tag": (_as_tag, "a tag name, or a JSON object with a 'name'"),
    "scalar": (_as_scalar, "a string or a number"),
    "sighting_type": (_as_sighting_type, "0 (sighting), 1 (false positive) or 2 (expiration)"),
    "object": (lambda v: (isinstance(v, dict), v), "a JSON object"),
    "json": (lambda v: (True, v), "any JSON value"),
}


@dataclass(frozen=True)
class Arg:
    """One accepted payload key: its kind, whether it is required, its default and its other names."""

    kind: str
    required: bool = False
    default: Any = None
    aliases: tuple[str, ...] = ()
    between: tuple[int, int] | None = None  # the lowest and highest integer taken, for the "int" kind


def convert(arg: Arg, value: Any) -> tuple[bool, Any, str]:
    """``value`` checked and converted by ``arg``'s kind (and range): (ok, value, what it must be)."""
    check, expected = KINDS[arg.kind]
    ok, value = check(value)
    if arg.between is not None:
        low, high = arg.between
        expected = f"an integer from {low} to {high}"
        ok = ok and isinstance(value, int) and low <= value <= high
    return ok, value, expected


def accepted_keys(spec: Mapping[str, Arg]) -> str:
    """The accepted keys of a spec, as a requester reads them."""
    parts = []
    for name, arg in spec.items():
        label = "|".join((name, *arg.aliases))
        parts.append(f"{label} (required)" if arg.required else label)
    return ", ".join(parts)


@dataclass(frozen=True)
class SpecIndex:
    """What :func:`check` needs of a spec, worked out once: every accepted key -> (canonical name, position
    of the key among the name's keys); the names in spec order; the required names; the defaults."""

    keys: dict[str, tuple[str, int]]
    order: dict[str, int]
    required: tuple[str, ...]
    defaults: tuple[str, ...]


#: id(spec) -> (spec, its index); the spec is kept so that its id stays its own.
_INDEXES: dict[int, tuple[Mapping[str, Arg], SpecIndex]] = {}


def spec_index(spec: Mapping[str, Arg]) -> SpecIndex:
    """The index of ``spec``, worked out on its first use."""
    cached = _INDEXES.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    index = SpecIndex(
        keys={key: (name, position) for name, arg in spec.items()
              for position, key in enumerate((name, *arg.aliases))},
        order={name: position for position, name in enumerate(spec)},
        required=tuple(name for name, arg in spec.items() if arg.required),
        defaults=tuple(name for name, arg in spec.items() if not arg.required and arg.default is not None))
    _INDEXES[id(spec)] = (spec, index)
    return index


def check(api_name: str, payload: Mapping[str, Any], spec: Mapping[str, Arg]) -> dict[str, Any]:
    """The payload's values by canonical key, defaults filled in; InvalidArguments names every problem.

    Only the payload's keys, the required names and the defaults are looked at; the problems and the values
    come out in spec order."""
    index = spec_index(spec)
    problems: list[str] = []
    keys = index.keys
    unknown = [key for key in payload if key not in keys]
    if unknown:
        problems.append("unknown key(s) " + ", ".join(f"'{key}'" for key in sorted(unknown)))
    given: dict[str, list[tuple[int, str]]] = {}
    for key, value in payload.items():
        if value is not None and key in keys:
            name, position = keys[key]
            given.setdefault(name, []).append((position, key))
    names = set(given).union(index.required, index.defaults)
    values: dict[str, Any] = {}
    for name in sorted(names, key=index.order.__getitem__):
        arg = spec[name]
        used = [key for _, key in sorted(given.get(name, ()))]
        if len(used) > 1:
            problems.append("give only one of " + " or ".join(f"'{key}'" for key in used))
        elif not used:
            if arg.required:
                problems.append("missing " + " or ".join(f"'{key}'" for key in (name, *arg.aliases)))
            elif arg.default is not None:
                values[name] = arg.default
        else:
            ok, value, expected = convert(arg, payload[used[0]])
            if ok:
                values[name] = value
            else:
                problems.append(f"'{used[0]}' must be {expected}")
    if problems:
        raise InvalidArguments(f"{api_name}: {'; '.join(problems)}. Accepted keys: {accepted_keys(spec)}")
    return values
