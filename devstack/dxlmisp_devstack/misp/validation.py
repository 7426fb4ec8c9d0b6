"""MISP's input rules for events, attributes and objects: defaults, normalisation and validation errors.

The attribute types, categories and their defaults come from PyMISP's own ``data/describeTypes.json``,
read at run time from the installed package (the same file ``attributes/describeTypes.json`` serves).
Validation errors use MISP's model messages, keyed by field as CakePHP's ``validationErrors`` are:
``{"value": ["A similar attribute already exists for this event."]}``.

Checked: the type, the category (must fit the type), a non-empty value, the ``value1|value2`` shape of
composite types, the format of hashes and IP addresses, uuids, the event's info, threat level, analysis and
distribution. Not checked (documented limits): the other per-type value formats MISP validates (domains,
e-mail addresses, ports, ...), sharing groups, and object template conformity.
"""
from __future__ import annotations

import ipaddress
import json
import re
import uuid as uuid_module
from functools import lru_cache
from importlib import resources
from typing import Any

Errors = dict[str, list[str]]

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128,
                 "sha512/224": 56, "sha512/256": 64, "sha3-224": 56, "sha3-256": 64, "sha3-384": 96,
                 "sha3-512": 128, "imphash": 32, "x509-fingerprint-md5": 32, "x509-fingerprint-sha1": 40,
                 "x509-fingerprint-sha256": 64}
_LOWERCASE_TYPES = {"domain", "hostname", "email", "email-src", "email-dst", "target-email"}
_IP_TYPES = {"ip-src", "ip-dst"}


@lru_cache(maxsize=1)
def describe_types() -> dict[str, Any]:
    """The ``result`` of PyMISP's ``data/describeTypes.json`` (types, categories, mappings, sane defaults)."""
    text = resources.files("pymisp").joinpath("data", "describeTypes.json").read_text(encoding="utf-8")
    return json.loads(text)["result"]


@lru_cache(maxsize=1)
def _category_types() -> dict[str, frozenset[str]]:
    return {cat: frozenset(types) for cat, types in describe_types()["category_type_mappings"].items()}


def is_uuid(text: object) -> bool:
    """True for a canonical 8-4-4-4-12 hex uuid."""
    return isinstance(text, str) and bool(_UUID_RE.match(text))


def new_uuid() -> str:
    """A fresh random uuid, as MISP generates them."""
    return str(uuid_module.uuid4())


def is_composite(attr_type: str) -> bool:
    """Composite types hold ``value1|value2`` (``filename|md5``, ``ip-dst|port``, ``malware-sample``...)."""
    return "|" in attr_type or attr_type == "malware-sample"


def as_bool(value: Any) -> bool:
    """MISP's loose booleans: true, 1, "1", "true" are true; false, 0, "0", "", "false", None are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


def as_int(value: Any, default: int) -> int:
    """An integer from an int or a numeric string; ``default`` for anything else."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def normalise_value(attr_type: str, value: str) -> str:
    """MISP's clean-up before validation: trim, lower-case hashes and host names, drop a trailing dot."""
    value = value.strip()
    if attr_type in _HASH_LENGTHS or attr_type in _LOWERCASE_TYPES:
        value = value.lower()
    if attr_type in ("domain", "hostname"):
        value = value.rstrip(".")
    return value


def split_value(attr_type: str, value: str) -> tuple[str, str]:
    """``value1`` and ``value2`` as MISP stores them (``value2`` is ``""`` for a simple type)."""
    if is_composite(attr_type) and "|" in value:
        first, second = value.split("|", 1)
        return first, second
    return value, ""


def _value_error(attr_type: str, value: str) -> str | None:
    parts = value.split("|") if is_composite(attr_type) else [value]
    part_types = attr_type.split("|") if "|" in attr_type else [attr_type]
    for part_type, part in zip(part_types, parts):
        if part_type in _HASH_LENGTHS:
            length = _HASH_LENGTHS[part_type]
            if len(part) != length or not re.fullmatch(r"[0-9a-f]+", part):
                return (f"Checksum has an invalid length or format (expected: {length} hexadecimal characters). "
                        "Please double check the value or select type \"other\".")
        elif part_type in _IP_TYPES:
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                return "IP address has an invalid format."
    return None


def attribute_errors(attr: dict[str, Any]) -> Errors:
    """MISP's validation errors for a normalised attribute dict (``type``, ``category``, ``value``, ``uuid``)."""
    errors: Errors = {}
    types = describe_types()["types"]
    attr_type = attr.get("type")
    if attr_type not in types:
        errors["type"] = ["Options depend on the selected category."]
    category = attr.get("category")
    if category not in _category_types() or (attr_type in types and attr_type not in _category_types()[category]):
        errors["category"] = ["Options : Payload delivery, Antivirus detection, Payload installation, "
                              "Files dropped ..."]
    value = attr.get("value")
    if not isinstance(value, str) or value == "":
        errors["value"] = ["Value cannot be empty."]
    elif attr_type in types:
        if is_composite(attr_type) and "|" not in value:
            errors["value"] = ["Composite type found but the value not in the composite (value1|value2) format."]
        else:
            message = _value_error(attr_type, value)
            if message:
                errors["value"] = [message]
    if "uuid" in attr and not is_uuid(attr["uuid"]):
        errors["uuid"] = ["Please provide a valid UUID"]
    return errors


def prepare_attribute(data: dict[str, Any]) -> dict[str, Any]:
    """Fill MISP's defaults (category and to_ids from the type's sane defaults) and normalise the value."""
    attr = dict(data)
    attr_type = attr.get("type")
    defaults = describe_types()["sane_defaults"].get(attr_type, {}) if isinstance(attr_type, str) else {}
    if not attr.get("category") and defaults:
        attr["category"] = defaults["default_category"]
    if "to_ids" not in attr and defaults:
        attr["to_ids"] = bool(defaults["to_ids"])
    value = attr.get("value")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and isinstance(attr_type, str):
        attr["value"] = normalise_value(attr_type, value)
    return attr


def event_errors(event: dict[str, Any], *, creating: bool) -> Errors:
    """MISP's validation errors for an event's own fields (``info`` is required when creating)."""
    errors: Errors = {}
    info = event.get("info")
    if (creating or "info" in event) and (not isinstance(info, str) or not info.strip()):
        errors["info"] = ["Info cannot be empty."]
    if "threat_level_id" in event and as_int(event["threat_level_id"], 0) not in (1, 2, 3, 4):
        errors["threat_level_id"] = ["Options : 1, 2, 3, 4 (for High, Medium, Low, Undefined)"]
    if "analysis" in event and as_int(event["analysis"], -1) not in (0, 1, 2):
        errors["analysis"] = ["Options : 0, 1, 2 (for Initial, Ongoing, Completed)"]
    if "distribution" in event and as_int(event["distribution"], -1) not in (0, 1, 2, 3, 4):
        errors["distribution"] = ["Options : Your organisation only, This community only, Connected communities, "
                                  "All communities, Sharing group"]
    if "date" in event and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(event["date"])):
        errors["date"] = ["Expected date format: YYYY-MM-DD"]
    if "uuid" in event and not is_uuid(event["uuid"]):
        errors["uuid"] = ["Please provide a valid UUID"]
    return errors


def object_errors(obj: dict[str, Any]) -> Errors:
    """MISP's validation errors for an object's own fields (a name, a valid uuid)."""
    errors: Errors = {}
    if not isinstance(obj.get("name"), str) or not obj["name"].strip():
        errors["name"] = ["Object name cannot be empty."]
    if "uuid" in obj and not is_uuid(obj["uuid"]):
        errors["uuid"] = ["Please provide a valid UUID"]
    return errors
