"""feedstate: positions in either watermark order, the state file's two-step replace, cursors and start times."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dxlmispservice.events import feedstate
from dxlmispservice.errors import ConfigError, InvalidArguments
from dxlmispservice.events.feedstate import (PUBLICATIONS, Position, decode_cursor, encode_cursor, load_position,
                                      parse_since, prepare_position, save_position)

NOW = 2_000_000_000
DAY = 86_400


@pytest.fixture()
def state_file(tmp_path: Path) -> str:
    """A state file path in a fresh directory."""
    return str(tmp_path / "state" / "feed.json")


# --- positions ------------------------------------------------------------------------------------

def test_position_moves_forward_only() -> None:
    """A position is the keyset (value, uuid) of the last change: it moves to later uuids at its value and
    to later values, and refuses anything at or behind it."""
    p = Position(10).after("a", 10).after("b", 10)
    assert p == Position(10, "b")
    assert p.after("c", 11) == Position(11, "c")
    assert p.delivered("zzz", 9) and p.delivered("a", 10) and p.delivered("b", 10) and not p.delivered("c", 10)
    for uuid, value in (("d", 9), ("a", 10), ("b", 10)):
        with pytest.raises(ValueError):
            p.after(uuid, value)


def test_a_position_stays_small_whatever_shares_its_value(state_file: str) -> None:
    """Ten thousand changes at one value leave a position (and its state file) of one uuid."""
    p = Position(10)
    for number in range(10_000):
        p = p.after(f"{number:08d}", 10)
    save_position(state_file, p)
    assert p == Position(10, "00009999") and len(Path(state_file).read_bytes()) < 200


def test_position_keeps_its_field_as_it_moves() -> None:
    """A position in publish_timestamp order stays in it; an unknown field is refused."""
    p = Position(10, field=PUBLICATIONS).after("a", 10).after("b", 12)
    assert p == Position(12, "b", PUBLICATIONS)
    with pytest.raises(ValueError):
        Position(10, field="date")


# --- the state file -------------------------------------------------------------------------------

def test_state_file_round_trips_the_field(state_file: str) -> None:
    """A saved position reads back with its field, uuid and value; the file names its field."""
    position = Position(1234, "u2", PUBLICATIONS)
    save_position(state_file, position)
    assert load_position(state_file) == position
    assert json.loads(Path(state_file).read_text())["field"] == "publish_timestamp"


def test_a_version_1_state_file_is_read_in_timestamp_order(state_file: str) -> None:
    """A state file written before the field was recorded (version 1) is a position in timestamp order;
    its sent set becomes "nothing at that value yet" (those events are sent again, none is lost)."""
    os.makedirs(os.path.dirname(state_file))
    Path(state_file).write_text('{"version":1,"timestamp":77,"sent":["x"]}')
    assert load_position(state_file) == Position(77, "", "timestamp")


def test_a_version_2_state_file_keeps_its_field_and_value(state_file: str) -> None:
    """A version 2 state file (field, value and sent set) is read at its value, in its field."""
    os.makedirs(os.path.dirname(state_file))
    Path(state_file).write_text('{"version":2,"field":"publish_timestamp","timestamp":77,"sent":["x","y"]}')
    assert load_position(state_file) == Position(77, "", PUBLICATIONS)


@pytest.mark.parametrize("body", ['{"version":4,"timestamp":1}', '{"version":3,"field":"timestamp","timestamp":1}',
                                  '{"version":3,"field":"timestamp","timestamp":1,"uuid":5}', '{"version":2,"timestamp":1}',
                                  '{"version":2,"field":"date","timestamp":1}', '[1]'])
def test_a_state_file_of_an_unknown_form_is_a_config_error(state_file: str, body: str) -> None:
    """An unknown version, a version 2 file without a known field, or no object at all: ConfigError naming it."""
    os.makedirs(os.path.dirname(state_file))
    Path(state_file).write_text(body)
    with pytest.raises(ConfigError, match="feed.json"):
        load_position(state_file)


def test_prepare_leaves_the_state_file_alone_until_commit(state_file: str) -> None:
    """prepare writes <state>.next and leaves the state file as it was; commit puts the new one in place."""
    save_position(state_file, Position(100))
    prepared = prepare_position(state_file, Position(101, "a"))
    assert load_position(state_file) == Position(100)
    assert load_position(state_file + ".next") == Position(101, "a")
    prepared.commit()
    assert load_position(state_file) == Position(101, "a")
    assert sorted(os.listdir(os.path.dirname(state_file))) == ["feed.json"]


def test_discard_removes_the_prepared_file(state_file: str) -> None:
    """discard drops <state>.next; the state file keeps the previous position."""
    save_position(state_file, Position(100))
    prepare_position(state_file, Position(200)).discard()
    assert load_position(state_file) == Position(100)
    assert os.listdir(os.path.dirname(state_file)) == ["feed.json"]


def test_save_is_atomic_when_the_rename_fails(state_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the write fails before the rename, the old state file is intact and no temporary file remains."""
    save_position(state_file, Position(100, "a"))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(feedstate.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_position(state_file, Position(200))
    assert load_position(state_file) == Position(100, "a")
    assert os.listdir(os.path.dirname(state_file)) == ["feed.json"]


def test_save_fsyncs_the_new_file_before_renaming_it(state_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file is fsync'ed before os.replace puts it in place, then the directory is."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(feedstate.os, "fsync", lambda fd: (steps.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(feedstate.os, "replace", lambda a, b: (steps.append("replace"), real_replace(a, b))[1])
    save_position(state_file, Position(5))
    assert steps == ["fsync", "replace", "fsync"]


# --- cursors --------------------------------------------------------------------------------------

def test_cursor_round_trips_position_field_and_filters() -> None:
    """A cursor decodes to the position (with its field) and the filters it was made with."""
    position = Position(55, "u", PUBLICATIONS)
    assert decode_cursor(encode_cursor(position, {"published_only": True})) == (position,
                                                                                {"published_only": True})


def test_a_version_1_cursor_is_a_position_in_timestamp_order() -> None:
    """A cursor handed out before the field was recorded still decodes, in timestamp order."""
    raw = json.dumps({"v": 1, "timestamp": 9, "sent": ["a"], "filters": {}}).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert decode_cursor(cursor) == (Position(9, ""), {})


@pytest.mark.parametrize("data", [{"v": 7, "timestamp": 1, "filters": {}}, {"v": 2, "timestamp": 1, "filters": {}},
                                  {"v": 2, "field": "timestamp", "timestamp": 1}])
def test_a_cursor_of_an_unknown_form_is_refused(data: dict[str, Any]) -> None:
    """An unknown version, no field in version 2, or no filters: InvalidArguments."""
    cursor = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    with pytest.raises(InvalidArguments):
        decode_cursor(cursor)


# --- where the first run starts ------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("30m", NOW - 1800), ("12h", NOW - 43200), ("7d", NOW - 7 * DAY), ("2w", NOW - 14 * DAY),
    ("2024-01-31", 1706659200), ("2024-01-31T01:00:00Z", 1706662800),
    ("2024-01-31T02:00:00+01:00", 1706662800), (1700000000, 1700000000), ("1700000000", 1700000000),
])
def test_parse_since(value: Any, expected: int) -> None:
    """Durations count back from now; dates are UTC unless zoned; numbers are epoch seconds."""
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["soon", "", "-5", -5, True, None, "7x"])
def test_parse_since_rejects_non_times(value: Any) -> None:
    """Anything that is not a duration, a date or epoch seconds is a ValueError."""
    with pytest.raises(ValueError):
        parse_since(value, NOW)


@pytest.mark.parametrize("value", [1e300, "9" * 400, 253_402_300_800, float("inf")])
def test_since_out_of_range_is_refused(value: object) -> None:
    """A timestamp past year 9999 is a ValueError naming the range, not an overflow later on."""
    with pytest.raises(ValueError, match="out of range"):
        feedstate.parse_since(value, 1_700_000_000)
