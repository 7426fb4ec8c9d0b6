"""The real validators the format tests run: stix2-validator for STIX 2.1, stix-validator (the STIX 1.2 XML
schemas) for STIX 1.2."""
from __future__ import annotations

import io
from typing import Any


def stix2_errors(bundle: dict[str, Any]) -> list[str]:
    """stix2-validator's errors on a STIX 2.1 bundle (empty when it is valid)."""
    from stix2validator import ValidationOptions, validate_instance

    result = validate_instance(bundle, ValidationOptions(version="2.1"))
    return [str(error) for error in result.errors]


def stix1_errors(xml: str) -> list[str]:
    """The STIX 1.2 XML schemas' errors on a document (empty when it is valid)."""
    from sdv import validate_xml

    result = validate_xml(io.BytesIO(xml.encode("utf-8")), version="1.2")
    return [str(error) for error in result.errors]
