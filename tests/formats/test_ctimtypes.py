"""formats.ctimtypes: the MISP ↔ CTIM observable type table."""
from __future__ import annotations

import pytest

from dxlmispservice.formats.ctimtypes import CTIM_TYPES, MISP_TO_CTIM, misp_types, observables


@pytest.mark.parametrize("misp_type,value,expected", [
    ("ip-dst", "198.51.100.7", [("ip", "198.51.100.7")]),
    ("ip-src", "2001:db8::1", [("ipv6", "2001:db8::1")]),
    ("ip-dst|port", "203.0.113.9|443", [("ip", "203.0.113.9")]),
    ("domain|ip", "evil.example|192.0.2.1", [("domain", "evil.example"), ("ip", "192.0.2.1")]),
    ("filename|md5", "a.exe|d41d8cd98f00b204e9800998ecf8427e", [("file_name", "a.exe"),
                                                                ("md5", "d41d8cd98f00b204e9800998ecf8427e")]),
    ("email-src", "x@example.org", [("email", "x@example.org")]),
    ("ip-dst", "not an ip", []), ("filename|sha1", "only-one-part", []), ("text", "anything", []),
])
def test_values_split_into_ctim_observables(misp_type: str, value: str, expected: list[tuple[str, str]]) -> None:
    """Composites split at |, ports dropped, ip or ipv6 by the address; unknown types and bad values give none."""
    found, _ = observables(misp_type, value)
    assert [(o["type"], o["value"]) for o in found] == expected


def test_composite_relations_name_both_parts() -> None:
    """domain|ip is Resolved_To; filename|hash is File_Name_Of; both ends are the observables."""
    found, relations = observables("domain|ip", "evil.example|192.0.2.1")
    assert relations == [(found[0], "Resolved_To", found[1])]


def test_every_mapped_type_is_a_ctim_type_and_reads_back() -> None:
    """The table maps only to CTIM types; inbound reads ip (and ipv6) back as ip-src and ip-dst."""
    assert {kind for kinds in MISP_TO_CTIM.values() for kind in kinds if kind} - {"ip"} <= set(CTIM_TYPES)
    assert misp_types("ipv6") == ("ip-src", "ip-dst") and misp_types("sha256") == ("sha256",)
    assert misp_types("file_name") == ("filename",)
