"""The MISP ↔ CTIM observable type table, in both directions: the ctim format reads it from MISP to CTIM,
the inbound readers from CTIM to MISP.

A MISP type maps to the CTIM observable types of its parts; a composite type (``ip-dst|port``,
``filename|sha256``, ``domain|ip``) splits at ``|``, a part mapped to None is left out (the port), and the
parts of one value are joined by a CTIM observable relation. ``ip`` stands for ``ip`` or ``ipv6``, by the
value. A MISP type not in the table has no CTIM observable.
"""
from __future__ import annotations

import ipaddress
from typing import Any

#: CTIM's observable types that this table uses (all are in CTIM's closed list).
CTIM_TYPES = ("ip", "ipv6", "domain", "hostname", "url", "email", "email_subject", "md5", "sha1", "sha256",
              "file_name", "file_path", "mac_address", "mutex", "user_agent", "user")

#: MISP type -> the CTIM type of each part ("ip" is ip or ipv6 by the value; None: the part is left out).
MISP_TO_CTIM: dict[str, tuple[str | None, ...]] = {
    "ip-src": ("ip",), "ip-dst": ("ip",), "ip-src|port": ("ip", None), "ip-dst|port": ("ip", None),
    "domain": ("domain",), "domain|ip": ("domain", "ip"), "hostname": ("hostname",),
    "hostname|port": ("hostname", None), "url": ("url",), "uri": ("url",),
    "email": ("email",), "email-src": ("email",), "email-dst": ("email",), "email-reply-to": ("email",),
    "email-subject": ("email_subject",), "md5": ("md5",), "sha1": ("sha1",), "sha256": ("sha256",),
    "filename": ("file_name",), "filename|md5": ("file_name", "md5"), "filename|sha1": ("file_name", "sha1"),
    "filename|sha256": ("file_name", "sha256"), "mac-address": ("mac_address",), "mutex": ("mutex",),
    "user-agent": ("user_agent",), "target-user": ("user",), "target-machine": ("hostname",),
}
#: The CTIM observable relation between the parts of a composite value: (first part, relation, second).
COMPOSITE_RELATIONS = {"domain|ip": "Resolved_To", "filename|md5": "File_Name_Of",
                       "filename|sha1": "File_Name_Of", "filename|sha256": "File_Name_Of"}


def observables(misp_type: str, value: str) -> tuple[list[dict[str, str]], list[tuple[dict[str, str], str, dict[str, str]]]]:
    """The CTIM observables of one MISP value, and the relations between them; ([], []) when it has none
    (its type is not in the table, or a part is not a valid address)."""
    kinds = MISP_TO_CTIM.get(misp_type)
    if kinds is None:
        return [], []
    parts = value.split("|") if len(kinds) > 1 else [value]
    if len(parts) != len(kinds):
        return [], []
    found: list[dict[str, str]] = []
    for kind, part in zip(kinds, parts):
        if kind is None:
            continue
        part = part.strip()
        if kind == "ip":
            kind = _ip_kind(part)
            if kind is None:
                return [], []
        if not part:
            return [], []
        found.append({"type": kind, "value": part})
    relation = COMPOSITE_RELATIONS.get(misp_type)
    relations = [(found[0], relation, found[1])] if relation and len(found) == 2 else []
    return found, relations


def misp_types(ctim_type: str) -> tuple[str, ...]:
    """The plain MISP types a CTIM observable type reads back as (``ip`` -> ip-src, ip-dst), for inbound."""
    wanted = "ip" if ctim_type in ("ip", "ipv6") else ctim_type
    return tuple(t for t, kinds in MISP_TO_CTIM.items() if kinds == (wanted,))


def _ip_kind(value: str) -> str | None:
    try:
        address: Any = ipaddress.ip_address(value)
    except ValueError:
        return None
    return "ipv6" if address.version == 6 else "ip"
