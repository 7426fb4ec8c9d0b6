"""The dev stack's pytest plugin, used as a user would: a test project outside this repository."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

USER_TEST = '''
from dxlmispservice.names import request_topic


def test_new_event_over_the_fabric(misp_clean, misp, dxl_requester, dxl_events):
    """A user's test: the plugin's fixtures give an empty MISP, PyMISP on it, a requester and event waiters."""
    assert misp.search_index() == []
    waiter = dxl_events("/opendxl-misp/event/zeromq-notifications/misp_json_event")
    reply = dxl_requester.request(request_topic("new_event"), {"info": "plugin user", "distribution": 0,
                                                              "analysis": 0, "threat_level_id": 4})
    assert reply.ok, reply.payload
    assert [e["info"] for e in misp.search_index()] == ["plugin user"]
    assert waiter.wait_for(lambda e: e.get("Event", {}).get("info") == "plugin user", timeout=30)


def test_fixtures_are_opt_in(request):
    """No plugin fixture runs unless a test asks for it."""
    assert not {"devstack", "misp_clean", "misp", "dxl_requester", "dxl_events"} & set(request.fixturenames)
'''


def _pytest(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=directory, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A directory outside the checkout with one user test file and no conftest."""
    assert CHECKOUT not in tmp_path.parents
    (tmp_path / "test_user.py").write_text(USER_TEST)
    return tmp_path


def test_user_project_runs_on_the_plugins_fixtures(project: Path) -> None:
    """Outside the repository, pytest finds the plugin by its entry point and the user's tests pass."""
    result = _pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_without_mosquitto_the_plugin_fails_in_one_line(project: Path) -> None:
    """Without mosquitto the devstack fixture fails with one line saying how to install it."""
    result = _pytest(project, "-k", "new_event", env={"DXLMISP_DEVSTACK_MOSQUITTO": str(project / "absent")})
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if "mosquitto not found" in line]
    assert lines and "apt-get install mosquitto" in lines[0]
    assert "Traceback" not in result.stdout
