"""api.pathprobe and api.pathargs: the parameters PyMISP puts into MISP's URL path, found by calling it, and
the values they may take."""
from __future__ import annotations

import pytest

from dxlmispservice.api import passthrough
from dxlmispservice.api.pathargs import check_path_kwargs, check_path_value
from dxlmispservice.api.pathprobe import Unclassified, path_parameters
from dxlmispservice.errors import InvalidArguments

TRAVERSALS = ["../../events/delete/1", "a/b", "a\\b", "..", "x?y=1", "x#y", "%2e%2e", "a b", "a\tb", "a\x00b",
              "a\nb", "x" * 300, ""]


def _classified() -> dict[str, object]:
    found = {}
    for name in passthrough.public_names():
        if passthrough.refusal_reason(name) is None:
            found[name] = path_parameters(name)
    return found


def test_the_probe_classes_every_allowed_method() -> None:
    """Every method the rules allow is classified, and well over a hundred path parameters are found."""
    found = _classified()
    with_path = {n: p for n, p in found.items() if p.names or p.kwargs}  # type: ignore[attr-defined]
    count = sum(len(p.names) for p in with_path.values())  # type: ignore[attr-defined]
    print(f"path probe: {len(found)} methods classified, {len(with_path)} with path parameters, "
          f"{count} path parameters")
    assert len(with_path) > 100 and count >= len(with_path)


@pytest.mark.parametrize("method, params", [
    ("start_worker", {"worker_type"}), ("get_event", {"event"}), ("update_event", {"event_id"}),
    ("users", {"organisation", "search"}), ("get_server_setting", {"setting"}), ("search_index", set()),
])
def test_the_probe_sees_what_goes_into_the_path(method: str, params: set[str]) -> None:
    """Known cases: the probe names exactly the parameters that end up in the URL path."""
    assert set(path_parameters(method).names) == params


def test_kwargs_in_the_path_are_found() -> None:
    """tags(**kwargs) puts /key:value into the path; the probe sees it."""
    assert path_parameters("tags").kwargs is True


def test_an_unclassifiable_method_raises() -> None:
    """add_analyst_data sends nothing for markers (it reads fields off an entity): Unclassified."""
    with pytest.raises(Unclassified, match="add_analyst_data"):
        path_parameters("add_analyst_data")


@pytest.mark.parametrize("value", TRAVERSALS)
def test_path_values_that_could_walk_are_refused(value: str) -> None:
    """Slashes, dots, query and fragment marks, percent, blanks, control characters, huge or empty names."""
    with pytest.raises(InvalidArguments, match="'worker_type'"):
        check_path_value("start_worker", "worker_type", value)


@pytest.mark.parametrize("value", [{"a": 1}, [1], 1.5, True, -1])
def test_non_scalars_and_bad_numbers_are_refused(value: object) -> None:
    """An object, a list, a float, a boolean or a negative number is no path value."""
    with pytest.raises(InvalidArguments):
        check_path_value("get_event", "event", value)


@pytest.mark.parametrize("value", [7, "7", "5acb875e-a7e4-4a73-b5f5-196cac110002", "default", "MISP.baseurl"])
def test_plain_values_pass(value: object) -> None:
    """Numbers, digit strings, UUIDs and plain names are fine."""
    check_path_value("get_server_setting", "setting", value)


def test_id_parameters_take_numbers_and_uuids_only() -> None:
    """An *_id parameter refuses a plain name."""
    check_path_value("update_event", "event_id", "12")
    with pytest.raises(InvalidArguments, match=r"a number from 0 to 2\*\*63 - 1, or a UUID"):
        check_path_value("update_event", "event_id", "twelve")


def test_path_kwargs_are_checked_key_and_value() -> None:
    """Both parts of a /key:value pair are plain names."""
    check_path_kwargs("tags", {"searchall": "tlp"})
    with pytest.raises(InvalidArguments):
        check_path_kwargs("tags", {"searchall": "../x"})
    with pytest.raises(InvalidArguments):
        check_path_kwargs("tags", {"a/b": "x"})
