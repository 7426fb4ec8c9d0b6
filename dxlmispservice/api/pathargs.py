"""What a value may be where PyMISP puts it into MISP's URL path: checked before MISP is called.

Which parameters go there is found by :mod:`dxlmispservice.api.pathprobe` (and, for entity and ``*_id``
parameters, by their annotation). Such a value is a number, a UUID, an entity that carries one, or a plain
name: no ``/``, ``\\``, ``..``, ``?``, ``#``, ``%``, whitespace or control character. An id parameter
(``*_id``, ``*_pid``), and a parameter that names an event, attribute, object, proposal, sighting, report or
analyst note, takes only a number from 0 to 2**63 - 1 or a UUID (or digits as a string). Any number is at
most 2**63 - 1, MISP's largest id.
"""
from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from pymisp.abstract import AbstractMISP

from dxlmispservice.errors import InvalidArguments

_UNSAFE = re.compile(r"[/\\?#%\s\x00-\x1f\x7f]|\.\.")
_DIGITS = re.compile(r"^[0-9]{1,19}\Z")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
#: MISP's largest id (a signed 64-bit integer).
MAX_ID = 2**63 - 1
#: The entity classes MISP finds by id or UUID only (never by a name).
ID_ONLY_ENTITIES = frozenset(("MISPEvent", "MISPAttribute", "MISPObject", "MISPShadowAttribute", "MISPSighting",
                              "MISPEventReport", "MISPNote", "MISPOpinion", "MISPRelationship", "MISPAnalystData",
                              "MISPObjectReference"))
MAX_NAME = 255
_RULE = "a number, a UUID or a plain name (no '/', '\\', '..', '?', '#', '%', blanks or control characters)"
_ID_RULE = "a number from 0 to 2**63 - 1, or a UUID"


def is_id_parameter(name: str) -> bool:
    """Whether the parameter ``name`` is an id by its name."""
    return name.endswith(("_id", "_pid"))


def is_path_safe(text: str) -> bool:
    """True when ``text`` cannot change the URL path it is put in."""
    return bool(text) and len(text) <= MAX_NAME and not _UNSAFE.search(text)


def check_path_value(api_name: str, key: str, value: Any, *, strict: bool = False) -> None:
    """InvalidArguments naming ``key`` unless ``value`` may stand in a URL path (module docstring);
    ``strict`` (or an id parameter's name): only an id or a UUID."""
    strict = strict or is_id_parameter(key)
    candidates: list[Any] = [value]
    if isinstance(value, AbstractMISP):
        candidates = [v for v in (value.get("uuid"), value.get("id")) if v not in (None, "")]
    for candidate in candidates:
        problem = _problem(candidate, strict)
        if problem:
            rule = _ID_RULE if strict else _RULE
            raise InvalidArguments(f"{api_name}: '{key}' {problem}; it goes into MISP's URL, so it must be {rule}")


def _problem(value: Any, strict: bool) -> str:
    if value is None or isinstance(value, UUID):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"is a {type(value).__name__}"
    if isinstance(value, int):
        return "" if 0 <= value <= MAX_ID else f"is {value} (out of range)"
    if strict:
        return "" if (_DIGITS.match(value) and int(value) <= MAX_ID) or _UUID.match(value) else f"is {value[:40]!r}"
    return "" if is_path_safe(value) else f"is {value[:40]!r}"


def check_path_kwargs(api_name: str, kwargs: dict[str, Any]) -> None:
    """Each extra keyword argument PyMISP puts into the path as ``/key:value``: both parts plain names."""
    for key, value in kwargs.items():
        if not is_path_safe(str(key)):
            raise InvalidArguments(f"{api_name}: the key {str(key)[:40]!r} goes into MISP's URL, so it must be {_RULE}")
        check_path_value(api_name, key, value)
