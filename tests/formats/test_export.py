"""formats.export: the dispatch by name, the copy for the converters that change their input, the failures."""
from __future__ import annotations

import copy
import importlib

import pytest

from dxlmispservice.errors import ExportFailed, InvalidArguments
from dxlmispservice.formats import export
from dxlmispservice.settings.formats import FORMAT_NAMES, FormatSettings
from tests.formats.events import rich_event

SETTINGS = FormatSettings(event_url="https://misp.example/events/view/{uuid}")


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_export_leaves_the_event_it_is_given_as_it_was(name: str) -> None:
    """Whatever the converter does with the event, the caller's dict is unchanged afterwards."""
    event = rich_event()
    before = copy.deepcopy(event)
    export(name, event, SETTINGS)
    assert event == before


@pytest.mark.parametrize("name", ("ctim", "xsoar"))
def test_our_converters_only_read_the_event(name: str) -> None:
    """ctim and xsoar are handed the event itself (no copy: it was most of their time) and change nothing."""
    module = importlib.import_module(f"dxlmispservice.formats.{name}")
    assert not getattr(module, "CHANGES_ITS_INPUT", False)
    event = rich_event()
    before = copy.deepcopy(event)
    module.convert(event, SETTINGS)
    assert event == before


def test_two_exports_of_one_event_are_the_same() -> None:
    """Exporting twice gives equal documents in every format (nothing carried over from the first)."""
    event = rich_event()
    for name in FORMAT_NAMES:
        assert export(name, event, SETTINGS).document == export(name, event, SETTINGS).document, name


def test_an_unknown_format_is_refused_naming_the_formats() -> None:
    """A format that is not one is InvalidArguments listing the accepted names."""
    with pytest.raises(InvalidArguments, match="accepted: stix2, stix1, ctim, xsoar"):
        export("pdf", rich_event(), SETTINGS)


def test_a_converter_failure_is_export_failed() -> None:
    """An event the converter cannot read (no date, which an XSOAR incident needs) is ExportFailed, code 8."""
    with pytest.raises(ExportFailed) as raised:
        export("xsoar", {"Event": {"uuid": "5f1e2d3c-4b5a-4c6d-8e7f-901234567890", "info": "x", "date": "someday"}},
               SETTINGS)
    assert raised.value.code == 8
