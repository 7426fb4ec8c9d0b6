"""The samples run unmodified against the dev stack and print what the docs say they print."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from dxlmispservice.testing import StackHandle

SAMPLES = Path(__file__).resolve().parents[2] / "sample" / "basic"


def run_sample(stack: StackHandle, name: str) -> subprocess.CompletedProcess[str]:
    """Run one sample as the user would, with DXLCLIENT_CONFIG naming the stack's requester config."""
    env = dict(os.environ, DXLCLIENT_CONFIG=stack.info["dxlclient_config"])
    return subprocess.run([sys.executable, str(SAMPLES / name)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(SAMPLES))


def answers(stdout: str) -> dict[str, Any]:
    """The printed answers: ``Response to the <what>:`` line -> the JSON printed under it."""
    parts = re.split(r"^Response to the (.+):$", stdout, flags=re.M)
    return {what: json.loads(body) for what, body in zip(parts[1::2], parts[2::2])}


def test_update_event_sample_prints_the_five_answers_of_the_seed(stack: StackHandle) -> None:
    """basic_update_event_example prints the new event, the comment, tag, sighting and the search result."""
    result = run_sample(stack, "basic_update_event_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    printed = answers(result.stdout)
    assert list(printed) == ["new event request", "add internal comment request", "tag request",
                             "sighting request", "search request for the new MISP event"]
    event = printed["new event request"]["Event"]
    assert event["info"] == "OpenDXL MISP update event example"
    comment = printed["add internal comment request"]
    assert len(comment) == 1 and comment[0]["Attribute"]["type"] == "comment"
    assert comment[0]["Attribute"]["event_id"] == event["id"]
    assert printed["tag request"]["url"] == "/tags/attachTagToObject"
    assert printed["sighting request"]["message"] == "Sighting added."
    found = printed["search request for the new MISP event"]["response"]
    assert [e["Event"]["id"] for e in found] == [event["id"]]
    attribute = found[0]["Event"]["Attribute"][0]
    assert attribute["uuid"] == comment[0]["Attribute"]["uuid"]
    assert [t["name"] for t in attribute["Tag"]] == ["Tagged by the OpenDXL MISP update event example"]
    assert [s["source"] for s in attribute["Sighting"]] == ["Seen by the OpenDXL MISP update event example"]


def test_new_event_sample_prints_the_stored_event(stack: StackHandle) -> None:
    """basic_new_event_example prints MISP's {"Event": ...} for the event it made, which MISP then has."""
    result = run_sample(stack, "basic_new_event_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    event = answers(result.stdout)["new event request"]["Event"]
    assert event["info"] == "OpenDXL MISP new event example"
    assert stack.misp().get_event(event["id"])["Event"]["uuid"] == event["uuid"]


def test_search_sample_finds_the_attribute_it_stored(stack: StackHandle) -> None:
    """basic_search_example prints an attributes-controller answer holding the attribute it added."""
    result = run_sample(stack, "basic_search_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    printed = answers(result.stdout)
    found = printed["search request for the value 198.51.100.7"]["response"]["Attribute"]
    assert [(a["type"], a["value"]) for a in found] == [("ip-dst", "198.51.100.7")]
