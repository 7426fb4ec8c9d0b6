"""The docs mirror the code: the error table, the legacy names and the sample set-up."""
from __future__ import annotations

import ast
import configparser
import json
import re
import textwrap
from pathlib import Path

import docutils.core
import pytest

from dxlmispservice.api import legacy, legacysearch

from dxlmispservice.api import passthrough

from dxlmispservice import settings
from dxlmispservice.settings import formats

from dxlmispservice.api import topics
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
    text = (DOCS / "methods.rst").read_text(encoding="utf-8")
    headings = set(re.findall(r"^``([a-z_]+)``\n[-~^=]+$", text, re.M))
    missing = sorted(set(legacy.LEGACY) - headings)
    assert missing == []


def _documented_keys(text: str) -> set[str]:
    """Every ``name`` written as a literal in ``text``."""
    return set(re.findall(r"``([A-Za-z0-9_]+)``", text))


@pytest.mark.parametrize("page", ["docs/configuration.rst", "README.rst"])
def test_config_reference_lists_every_key(page: str) -> None:
    """Every section and key settings.py accepts is named in the config reference."""
    text = (DOCS.parent / page).read_text(encoding="utf-8")
    literals = _documented_keys(text)
    keys = set(settings.GENERAL_KEYS) | set(settings.FEED_KEYS) | set(settings.POOL_KEYS) | set(formats.KEYS)
    missing = sorted(keys - literals) + sorted(s for s in settings.SECTIONS if f"[{s}]" not in text)
    assert missing == []


def test_readme_renders_without_warnings() -> None:
    """README.rst (the package's long description) is valid reStructuredText."""
    text = (DOCS.parent / "README.rst").read_text(encoding="utf-8")
    docutils.core.publish_string(text, writer_name="null",
                                 settings_overrides={"report_level": 5, "halt_level": 2})


def _code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ``.. code-block:: <language>`` blocks in ``text``, dedented."""
    blocks = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}":
            continue
        indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[index + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip())
    return blocks


def test_json_examples_are_valid_json() -> None:
    """Every ``code-block:: json`` in the docs is valid JSON (shortened answers are marked ``text``)."""
    broken = []
    for page in sorted(DOCS.glob("*.rst")):
        for block in _code_blocks(page.read_text(encoding="utf-8"), "json"):
            try:
                json.loads(block)
            except ValueError:
                broken.append((page.name, block[:60]))
    assert broken == []


def test_complete_config_example_is_accepted(tmp_path: Path) -> None:
    """The complete example in docs/configuration.rst parses, and its apiNames build a topic table."""
    text = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    example = text[text.index("A complete example"):]
    block = _code_blocks(example, "ini")[0]
    (tmp_path / "misp-ca.pem").write_text("")
    parser = configparser.RawConfigParser()
    parser.read_string(block)
    parsed = settings.Settings.from_parser(parser, {"MISP_API_KEY": "k" * 40}, base_dir=str(tmp_path))
    table = topics.build_table(parsed.api_names)
    assert sorted(table) == sorted(parsed.api_names) and parsed.feed is not None and parsed.zeromq is not None


def test_methods_page_names_every_denied_method() -> None:
    """Each PyMISP method refused by name (passthrough.DENIED) is named on docs/methods.rst."""
    text = (DOCS / "methods.rst").read_text(encoding="utf-8")
    assert sorted(name for name in passthrough.DENIED if f"``{name}``" not in text) == []


def _method_section(text: str, name: str) -> str:
    """The text of the ``name`` section of docs/methods.rst, up to the next heading."""
    match = re.search(rf"^``{name}``\n~+\n(.*?)(?=^\S[^\n]*\n[~\-=]+\n)", text, re.M | re.S)
    assert match is not None, name
    return match.group(1)


LEGACY_SPECS = {
    "new_event": "NEW_EVENT", "add_internal_comment": "ADD_INTERNAL_COMMENT",
    "add_named_attribute": "ADD_NAMED_ATTRIBUTE", "tag": "TAG", "untag": "UNTAG", "sighting": "SIGHTING",
    "get_event": "GET_EVENT", "update_event": "UPDATE_EVENT", "delete_event": "DELETE_EVENT", "publish": "PUBLISH",
}


@pytest.mark.parametrize("name", sorted(LEGACY_SPECS))
def test_methods_page_lists_every_legacy_key(name: str) -> None:
    """Each key (and other name of a key) a legacy method accepts is named in its section of methods.rst."""
    section = _method_section((DOCS / "methods.rst").read_text(encoding="utf-8"), name)
    spec = getattr(legacy, LEGACY_SPECS[name])
    keys = {alias for key, arg in spec.items() for alias in (key, *arg.aliases)}
    assert sorted(k for k in keys if f"``{k}``" not in section) == []


def test_methods_page_lists_the_search_names_of_2_4() -> None:
    """The search section names the 2.4-only keys and the alternative spellings the legacy search takes."""
    section = _method_section((DOCS / "methods.rst").read_text(encoding="utf-8"), "search")
    old = set(legacysearch._SEARCH_OLD_ONLY) - set(legacysearch._PASSED_AS_IS)
    aliases = {alias for arg in legacysearch.SEARCH.values() for alias in arg.aliases}
    assert sorted(k for k in old | aliases | {"controller", "limit", "page"} if f"``{k}``" not in section) == []


def _devstack_info_keys() -> set[str]:
    """The keys of the dict that devstack/dxlmisp_devstack/stack.py writes as devstack.json (read from its source)."""
    tree = ast.parse((DOCS.parent / "devstack" / "dxlmisp_devstack" / "stack.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                isinstance(t, ast.Attribute) and t.attr == "info" for t in node.targets):
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    raise AssertionError("devstack/dxlmisp_devstack/stack.py no longer assigns self.info = {...}")


def test_devstack_page_lists_every_devstack_json_key() -> None:
    """Every key devstack.json holds is described on docs/devstack.rst."""
    text = (DOCS / "devstack.rst").read_text(encoding="utf-8")
    assert sorted(k for k in _devstack_info_keys() if f"``{k}``" not in text) == []


def test_methods_page_lists_every_api_name_by_access() -> None:
    """docs/methods.rst's 'All API names' holds exactly the valid names, each under its access class."""
    import re

    from dxlmispservice.api import access, legacy, topics

    text = (DOCS / "methods.rst").read_text(encoding="utf-8")
    section = text.split("All API names\n-------------", 1)[1].split(".. _fetch-events:", 1)[0]
    listed: dict[str, list[str]] = {}
    for block in section.split("\n\n"):
        found = re.match(r"\*\*(\w+)[\w ]*\*\*", block.strip())
        if found:
            listed[found.group(1)] = re.findall(r"``(\w+)``", block.split(":", 1)[1])
    valid = topics.valid_api_names()
    served = [n for n in valid if n not in legacy.LEGACY and n not in topics.EXTRA and n != topics.STATUS]
    assert listed["Legacy"] == sorted(legacy.LEGACY)
    assert listed["Read"] == [n for n in served if access.access_of(n) == "read"]
    assert listed["Write"] == [n for n in served if access.access_of(n) == "write"]
    assert [n for n in listed["Admin"] if n != "allowAdminApis"] == [n for n in served if access.is_admin(n)]
    assert listed["Service"] == sorted({*topics.EXTRA, topics.STATUS})


#: The feed's guarantee, stated the same way wherever it is stated.
FEED_GUARANTEE = ("Nothing is lost up to the broker's socket; after a crash of the service, at most the one change "
                  "in flight is sent again, with the same message id.")


@pytest.mark.parametrize("page", ["README.rst", "docs/index.rst", "docs/overview.rst", "docs/notifications.rst"])
def test_the_feed_guarantee_is_stated_the_same_way(page: str) -> None:
    """Each page that describes the feed states its guarantee in the one agreed sentence."""
    text = " ".join((DOCS.parent / page).read_text(encoding="utf-8").split())
    assert FEED_GUARANTEE in text


@pytest.mark.parametrize("name", ["stix2", "stix1", "ctim", "xsoar"])
def test_format_examples_are_what_the_code_produces(name: str) -> None:
    """docs/examples/format-<name>.* is the format's document of docs/examples/event.json today."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("regenerate", DOCS / "examples" / "regenerate.py")
    assert spec and spec.loader
    regenerate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regenerate)
    assert regenerate.path(name).read_text() == regenerate.render(name)
