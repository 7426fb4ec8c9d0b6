"""The new-event and search samples print what docs/samples.rst says they print (test_samples_e2e.py covers
the update-event sample and that every sample runs)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from dxlmisp_devstack.testing import StackHandle

SAMPLES = Path(__file__).resolve().parents[2] / "sample" / "basic"


def run_sample(devstack: StackHandle, name: str) -> subprocess.CompletedProcess[str]:
    """Run one sample as the user would, with DXLCLIENT_CONFIG naming the stack's requester config."""
    env = dict(os.environ, DXLCLIENT_CONFIG=devstack.info["dxlclient_config"])
    return subprocess.run([sys.executable, str(SAMPLES / name)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(SAMPLES))


def answers(stdout: str) -> dict[str, Any]:
    """The printed answers: ``Response to the <what>:`` line -> the JSON printed under it."""
    parts = re.split(r"^Response to the (.+):$", stdout, flags=re.M)
    return {what: json.loads(body) for what, body in zip(parts[1::2], parts[2::2])}


def test_new_event_sample_prints_the_stored_event(devstack: StackHandle) -> None:
    """basic_new_event_example prints MISP's {"Event": ...} for the event it made, which MISP then has."""
    result = run_sample(devstack, "basic_new_event_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    event = answers(result.stdout)["new event request"]["Event"]
    assert event["info"] == "OpenDXL MISP new event example"
    assert devstack.misp().get_event(event["id"])["Event"]["uuid"] == event["uuid"]


def test_search_sample_finds_the_attribute_it_stored(devstack: StackHandle) -> None:
    """basic_search_example prints an attributes-controller answer holding the attribute it added."""
    result = run_sample(devstack, "basic_search_example.py")
    assert result.returncode == 0, result.stdout + result.stderr
    printed = answers(result.stdout)
    found = printed["search request for the value 198.51.100.7"]["response"]["Attribute"]
    assert [(a["type"], a["value"]) for a in found] == [("ip-dst", "198.51.100.7")]
