"""The one rule that turns a MISP entity, given as JSON, into the reference PyMISP would send for it.

PyMISP's own rule (``get_uuid_or_id_from_abstract_misp``): the entity's ``uuid`` first, then its ``id``;
a shadow attribute (it shares its attribute's uuid) and an event delegation (it has no uuid) by ``id``.
The legacy adapters and the pass-through both use this, so one payload means one MISP record everywhere.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pymisp

#: Entities PyMISP refers to by id first.
ID_FIRST = (pymisp.MISPShadowAttribute, pymisp.MISPEventDelegation)
#: Their JSON wrapper keys, as in ``{"ShadowAttribute": {...}}``.
ID_FIRST_WRAPPERS = frozenset({"ShadowAttribute", "EventDelegation"})


def is_id_first(cls: type | None) -> bool:
    """Whether PyMISP refers to entities of ``cls`` by id first."""
    return cls is not None and issubclass(cls, ID_FIRST)


def entity_reference(body: Mapping[str, Any], *, id_first: bool = False) -> str | int | None:
    """The ``uuid`` (or ``id``; the other way round with ``id_first``) of the entity ``body``, or None when
    it has neither as a non-empty string or a number."""
    for key in (("id", "uuid") if id_first else ("uuid", "id")):
        value = body.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return value
    return None
