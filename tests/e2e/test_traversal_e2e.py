"""The allow-list cannot be walked around: traversal strings in every path parameter of every allowed
method, admin ones included, are refused before MISP is called; the dev MISP's request log proves that no
request reached any route, and the event that 'start_worker ../../events/delete/1' once deleted is there."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from pymisp import PyMISP

from dxlmisp_devstack.testing import Requester, StackHandle
from dxlmispservice.api import legacy, passthrough
from dxlmispservice.api.pathprobe import path_parameters
from dxlmispservice.names import request_topic
from tests.e2e.helpers import make_event

UNIQUE = "traversal"
FEED_POLL = ("POST", "/events/restSearch")


def _targets() -> dict[str, list[str]]:
    """Every allowed pass-through method (admin ones too) with the parameters the probe sees in its path."""
    found = {}
    for name in passthrough.public_names():
        if name in legacy.LEGACY or passthrough.refusal_reason(name) is not None:
            continue
        probed = path_parameters(name)
        if probed.names or probed.kwargs:
            found[name] = sorted(probed.names) + (["**kwargs"] if probed.kwargs else [])
    return found


def _payload(method: str, target: str, value: str) -> dict[str, Any]:
    """``target`` set to ``value``, every other required parameter to a harmless number."""
    parameters = list(inspect.signature(getattr(PyMISP, method)).parameters.values())[1:]
    payload: dict[str, Any] = {p.name: 1 for p in parameters
                               if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if target == "**kwargs":
        payload["zz"] = value
    else:
        payload[target] = value
    return payload


def test_traversal_strings_reach_no_route(devstack: StackHandle, dxl_requester: Requester, misp: Any,
                                          tmp_path: Path) -> None:
    """Three traversal strings in each path parameter of every allowed method: invalid_arguments naming it,
    and not one request in MISP's log."""
    targets = _targets()
    config = devstack.config_dir(tmp_path / "svc", {"General": {
        "apiNames": ",".join(targets), "allowAdminApis": "true", "serviceUniqueId": UNIQUE}})
    sent = 0
    with devstack.run_service(config):
        devstack.reset_misp()  # empties the request log too; the victim is made again below
        victim = make_event(misp, "must survive")
        before = len(devstack.misp_requests())
        for method, params in targets.items():
            for target in params:
                for value in ("../../events/delete/" + victim["id"], "..%2f..%2fevents", "a/../../b"):
                    reply = dxl_requester.request(request_topic(method, UNIQUE), _payload(method, target, value))
                    sent += 1
                    assert (reply.ok, reply.error_code) == (False, 2), (method, target, reply.payload)
                    name = "'zz'" if target == "**kwargs" else f"'{target}'"
                    assert name in reply.error_message, (method, target, reply.error_message)
        # the feeds of the stack's service and of this one poll restSearch every second: nothing else may show
        reached = [r for r in devstack.misp_requests()[before:] if (r["method"], r["path"]) != FEED_POLL]
        assert reached == []
    assert misp.get_event(victim["id"], pythonify=True).info == "must survive"
    print(f"traversal: {sent} requests over {len(targets)} methods, none reached MISP")
