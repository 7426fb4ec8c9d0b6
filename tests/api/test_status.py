"""Unit tests for dxlmispservice.api.status: the status topic reports the parts it is given, as they are."""
from __future__ import annotations

from typing import Any

import pytest

from dxlmispservice import __version__
from dxlmispservice.api.status import StatusBoard
from dxlmispservice.api.topics import build_table, valid_api_names
from dxlmispservice.errors import InvalidArguments


class Part:
    """A feed or forwarder stand-in that reports a fixed status."""

    def __init__(self, **status: Any) -> None:
        self._status = status

    def status(self) -> dict[str, Any]:
        return dict(self._status)


class Misp:
    url = "https://misp.example/"

    def state(self) -> dict[str, Any]:
        return {"state": "down", "since": 1.5, "detail": "cannot reach MISP"}


class Handler:
    def counts(self) -> dict[str, int]:
        return {"ok": 3, "invalid_arguments": 1}


def test_status_reports_each_part_and_the_roles_held() -> None:
    """The answer holds the version, MISP's state, the request counts, the feed, the forwarder and roles."""
    board = StatusBoard(service_unique_id="east", misp=Misp(), requests=Handler(), feed=Part(published=7),
                        forwarder=Part(forwarded=2), forwarded_topics=("misp_json", "misp_json_event"))
    assert board.topic(None, {}) == {
        "version": __version__, "service_unique_id": "east",
        "misp": {"url": "https://misp.example/", "state": "down", "since": 1.5, "detail": "cannot reach MISP"},
        "requests": {"ok": 3, "invalid_arguments": 1}, "feed": {"published": 7}, "forwarder": {"forwarded": 2},
        "roles": ["feed", "forwarder:misp_json,misp_json_event"]}


def test_status_without_feed_or_forwarder_says_null_and_holds_no_role() -> None:
    """An instance that runs neither the feed nor the forwarder reports both as null and no role."""
    answer = StatusBoard(misp=Misp(), requests=Handler()).snapshot()
    assert (answer["feed"], answer["forwarder"], answer["roles"]) == (None, None, [])


def test_status_takes_no_arguments() -> None:
    """Any key in the payload is invalid_arguments naming it."""
    with pytest.raises(InvalidArguments, match="'verbose'"):
        StatusBoard().topic(None, {"verbose": True})


def test_status_is_an_api_name_served_by_the_board_it_is_given() -> None:
    """'status' is a valid api name, and the table serves it with the handler handed in."""
    board = StatusBoard()
    assert "status" in valid_api_names()
    assert build_table(["status"], status=board.topic)["status"] == board.topic
