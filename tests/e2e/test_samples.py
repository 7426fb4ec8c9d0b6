"""The new-event and search samples print what docs/samples.rst says they print (test_samples_e2e.py covers
the update-event sample and that every sample runs)."""
from __future__ import annotations

import json
import os
import re
import socket
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


def _run_failing(name: str, config: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DXLCLIENT_CONFIG=str(config))
    return subprocess.run([sys.executable, str(SAMPLES / name)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(SAMPLES))


def test_a_sample_without_its_config_says_so_in_one_line(tmp_path: Path) -> None:
    """With DXLCLIENT_CONFIG naming a missing file, a sample prints one line naming it and exits 1."""
    done = _run_failing("basic_new_event_example.py", tmp_path / "missing.config")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"DXL client configuration not found: {tmp_path / 'missing.config'} (set DXLCLIENT_CONFIG or fill in "
        f"{SAMPLES.parent / 'dxlclient.config'})"]


def test_a_sample_that_cannot_reach_a_broker_says_so_in_one_line(devstack: StackHandle, tmp_path: Path) -> None:
    """With the stack's client config pointed at a port where no broker listens, a sample gives up after a
    few tries, prints one line about the fabric and exits 1."""
    text = Path(devstack.info["dxlclient_config"]).read_text()
    port = re.search(r";(\d+);", text).group(1)  # type: ignore[union-attr]
    config = tmp_path / "dxlclient.config"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config.write_text(text.replace(f";{port};", f";{dead_port};"))
    done = _run_failing("basic_search_example.py", config)
    lines = [line for line in done.stderr.strip().splitlines() if " sample - INFO - " not in line]
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("basic_search_example.py: error: DXL fabric: "), done.stderr


def test_a_sample_timeout_is_one_line_naming_the_likely_causes(tmp_path: Path) -> None:
    """A request that gets no answer in time (dxlclient's WaitTimeoutException) ends the sample with one
    line and status 1; the samples' helper does it for every sample, with no change to their code."""
    script = tmp_path / "times_out.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(SAMPLES.parent)!r})\nimport common\n"
                      "from dxlclient.exceptions import WaitTimeoutException\n"
                      "raise WaitTimeoutException('Timeout waiting for response to message: 1234')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "times_out.py: error: no answer from the MISP DXL service in time: is it running, connected to this "
        "fabric, and is the API name in its apiNames? (Timeout waiting for response to message: 1234)"]
