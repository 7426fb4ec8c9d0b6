"""The docs mirror the code: the error table, the legacy names and the sample set-up."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dxlmispservice.errors import ERROR_CODES

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _error_rows() -> dict[int, str]:
    """Return code -> name as docs/errors.rst's list-table states them."""
    text = (DOCS / "errors.rst").read_text(encoding="utf-8")
    rows = re.findall(r"^\s*\* - (\d+)\s*\n\s*- ``([a-z_]+)``", text, re.M)
    return {int(code): name for code, name in rows}


def test_errors_page_lists_every_code_with_its_name() -> None:
    """docs/errors.rst has one row for each code in ERROR_CODES, with the same name."""
    rows = _error_rows()
    expected = {code: name for code, (name, _meaning) in ERROR_CODES.items()}
    assert rows == expected


def test_errors_page_states_each_meaning() -> None:
    """Each code's one-line meaning from errors.py appears in docs/errors.rst."""
    text = " ".join((DOCS / "errors.rst").read_text(encoding="utf-8").split())
    missing = [meaning for _name, meaning in ERROR_CODES.values() if meaning not in text]
    assert missing == []


def test_methods_page_documents_every_legacy_name() -> None:
    """Every legacy api name in legacy.LEGACY has its own section on docs/methods.rst."""
    legacy = pytest.importorskip("dxlmispservice.legacy")
    text = (DOCS / "methods.rst").read_text(encoding="utf-8")
    headings = set(re.findall(r"^``([a-z_]+)``\n[-~^=]+$", text, re.M))
    missing = sorted(set(legacy.LEGACY) - headings)
    assert missing == []


def _documented_keys(text: str) -> set[str]:
    """Every ``name`` written as a literal in ``text``."""
    return set(re.findall(r"``([A-Za-z_]+)``", text))


@pytest.mark.parametrize("page", ["docs/configuration.rst", "README.rst"])
def test_config_reference_lists_every_key(page: str) -> None:
    """Every section and key settings.py accepts is named in the config reference."""
    settings = pytest.importorskip("dxlmispservice.settings")
    text = (DOCS.parent / page).read_text(encoding="utf-8")
    literals = _documented_keys(text)
    keys = set(settings.GENERAL_KEYS) | set(settings.FEED_KEYS) | set(settings.POOL_KEYS)
    missing = sorted(keys - literals) + sorted(s for s in settings.SECTIONS if f"[{s}]" not in text)
    assert missing == []


def test_readme_renders_without_warnings() -> None:
    """README.rst (the package's long description) is valid reStructuredText."""
    docutils_core = pytest.importorskip("docutils.core")
    text = (DOCS.parent / "README.rst").read_text(encoding="utf-8")
    docutils_core.publish_string(text, writer_name="null",
                                 settings_overrides={"report_level": 5, "halt_level": 2})
