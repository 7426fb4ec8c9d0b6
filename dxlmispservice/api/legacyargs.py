"""The payload checks of the legacy adapters: the kinds of value a key takes, and each spec's index.

A spec maps each accepted payload key (its canonical name) to an :class:`Arg`: its kind, whether it is
required, its default and its other names. :data:`KINDS` says how each kind is checked and converted and
how a requester is told what it takes. :func:`spec_index` works out once per spec what
:func:`dxlmispservice.api.legacy.check` needs, so that a check looks only at the keys a payload holds.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dxlmispservice.api.references import ID_FIRST_WRAPPERS, entity_reference

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)
_DIGITS = re.compile(r"^[0-9]+$")
_WRAPPERS = ("Event", "Attribute", "Object", "ShadowAttribute")


def _as_text(v: Any) -> tuple[bool, Any]:
    return isinstance(v, str), v


def _as_int(v: Any) -> tuple[bool, Any]:
    if isinstance(v, int) and not isinstance(v, bool):
        return True, v
    if isinstance(v, str) and _DIGITS.match(v.strip()):
        return True, int(v)
    return False, v


def _as_count(v: Any) -> tuple[bool, Any]:
    ok, number = _as_int(v)
    return ok and number >= 0, number


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
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return True, v
    if isinstance(v, str) and (_DIGITS.match(v) or _UUID.match(v)):
        return True, v
    return False, v


def _as_uuid(v: Any) -> tuple[bool, Any]:
    if isinstance(v, dict):
        v = unwrap(v).get("uuid")
    return isinstance(v, str) and bool(_UUID.match(v)), v


def _as_scalar(v: Any) -> tuple[bool, Any]:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool), v


def _as_value(v: Any) -> tuple[bool, Any]:
    if isinstance(v, list):
        return bool(v) and all(_as_scalar(x)[0] for x in v), v
    return _as_scalar(v)


def _as_terms(v: Any) -> tuple[bool, Any]:
    if isinstance(v, list):
        return all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v), v
    if isinstance(v, dict):
        return set(v) <= {"OR", "AND", "NOT"}, v
    return isinstance(v, (str, int)) and not isinstance(v, bool), v


def _as_tag(v: Any) -> tuple[bool, Any]:
    if isinstance(v, dict):
        inner = v["Tag"] if len(v) == 1 and isinstance(v.get("Tag"), dict) else v
        v = inner.get("name")
    return isinstance(v, str) and bool(v.strip()), v


def _as_sighting_type(v: Any) -> tuple[bool, Any]:
    ok, number = _as_int(v)
    return ok and number in (0, 1, 2), str(number)


KINDS: dict[str, tuple[Callable[[Any], tuple[bool, Any]], str]] = {
    "text": (_as_text, "a string"),
    "int": (_as_int, "an integer"),
    "count": (_as_count, "a whole number, 0 or more"),
    "bool": (as_bool, "true or false"),
    "ref": (as_ref, "an id (number) or a UUID, or a JSON object that has one"),
    "uuid": (_as_uuid, "a UUID, or a JSON object that has one"),
    "value": (_as_value, "a string or number, or a non-empty list of them"),
    "terms": (_as_terms, "a string, a list of strings, or {\"OR\"/\"AND\"/\"NOT\": [...]}"),
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


def accepted_keys(spec: Mapping[str, Arg]) -> str:
    """The accepted keys of a spec, as a requester reads them."""
    parts = []
    for name, arg in spec.items():
        label = "|".join((name, *arg.aliases))
        parts.append(f"{label} (required)" if arg.required else label)
    return ", ".join(parts)


@dataclass(frozen=True)
class SpecIndex:
    """What :func:`~dxlmispservice.api.legacy.check` needs of a spec, worked out once: every accepted key -> (canonical name, position
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
