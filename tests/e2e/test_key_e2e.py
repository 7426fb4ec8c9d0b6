"""The API key in no log line, answer or error, with every logger of the service at DEBUG, over the real stack.

Two services run beside the stack's own, each under its own serviceUniqueId and with a logging.config that
sets the root logger and every library's logger (PyMISP, urllib3, dxlclient, dxlbootstrap, the service's)
to DEBUG: one with the right key and its feed on, one with a key MISP refuses. The e2e flow goes through
both; then their logs and every answer are scanned for the keys.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dxlmisp_devstack.testing import API_KEY_ENV, Reply, Requester, ServiceProcess, StackHandle
from dxlmispservice.names import request_topic

WRONG_KEY = secrets.token_hex(20)
LOGGERS = ("pymisp", "urllib3", "requests", "dxlclient", "dxlbootstrap", "dxlmispservice")
DEBUG_LOGGING = f"""[loggers]
keys=root,{",".join(name.replace(".", "_") for name in LOGGERS)}

[handlers]
keys=stream

[formatters]
keys=plain

[logger_root]
level=DEBUG
handlers=stream

{"".join(f"[logger_{name}]{chr(10)}level=DEBUG{chr(10)}qualname={name}{chr(10)}handlers=stream{chr(10)}propagate=0{chr(10)}{chr(10)}" for name in LOGGERS)}
[handler_stream]
class=StreamHandler
level=DEBUG
formatter=plain
args=(sys.stdout,)

[formatter_plain]
format=%(asctime)s %(name)s %(levelname)s %(message)s
"""


@pytest.fixture(scope="module")
def debug_services(devstack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    """``right`` (the stack's key, feed on) and ``wrong`` (a key MISP refuses), both logging at DEBUG."""
    contexts: dict[str, Any] = {}
    running: dict[str, ServiceProcess] = {}
    failures: list[BaseException] = []

    def start(name: str, env: dict[str, str], feed: str) -> None:
        config = devstack.config_dir(tmp_path_factory.mktemp(f"key-{name}") / "config", {
            "General": {"serviceUniqueId": f"e2e-key-{name}", "zeroMqNotificationTopics": None, "zeroMqPort": None},
            "Feed": {"enabled": feed}})
        (config / "logging.config").write_text(DEBUG_LOGGING)
        contexts[name] = devstack.run_service(config, env=env)
        try:
            running[name] = contexts[name].__enter__()
        except BaseException as exc:  # reported once both have been tried
            failures.append(exc)

    threads = [threading.Thread(target=start, args=("right", {}, "true")),
               threading.Thread(target=start, args=("wrong", {API_KEY_ENV: WRONG_KEY}, "false"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if failures:
            raise failures[0]
        yield running
    finally:
        for name in running:
            contexts[name].__exit__(None, None, None)


def _ask(requester: Requester, name: str, api_name: str, payload: Any) -> Reply:
    return requester.request(request_topic(api_name, f"e2e-key-{name}"), payload)


def test_no_key_in_debug_logs_answers_or_errors(devstack: StackHandle, dxl_requester: Requester, misp: Any,
                                                debug_services: dict[str, ServiceProcess]) -> None:
    """The e2e flow (legacy and modern names, the feed, refusals, bad input, a wrong key) with every logger
    at DEBUG: PyMISP's DEBUG lines are there, and neither key is in any log line or answer."""
    keys = [devstack.info["misp_api_key"], WRONG_KEY]
    made = _ask(dxl_requester, "right", "new_event", {"info": "key scan", "distribution": 0})
    assert made.ok, made.error_message
    event_id = made.payload["Event"]["id"]
    replies = [made]
    flow: list[tuple[str, Any]] = [
        ("add_named_attribute", {"event": event_id, "type_value": "domain", "value": "key-scan.example"}),
        ("add_internal_comment", {"event": event_id, "reference": "a comment"}),
        ("search", {"eventid": event_id}),
        ("search", {"controller": "attributes", "value": "key-scan.example"}),
        ("get_event", {"event_id": event_id}),
        ("sighting", {"value": "key-scan.example"}),
        ("publish", {"event": event_id, "alert": False}),
        ("search_index", {"eventinfo": "key scan"}),
        ("fetch_events", {"since": 0, "limit": 10}),
        ("get_event", {"event_id": 987654}),
        ("sighting", {"uuid": "00000000-0000-0000-0000-000000000000"}),
        ("new_event", {"info": 5}),
        ("new_event", b"not json"),
    ]
    for api_name, payload in flow:
        replies.append(_ask(dxl_requester, "right", api_name, payload))
    attribute = misp.search(controller="attributes", value="key-scan.example", pythonify=False)["Attribute"][0]
    replies.append(_ask(dxl_requester, "right", "tag", {"uuid": attribute["uuid"], "tag": "tlp:green"}))
    for api_name, payload in [("new_event", {"info": "refused"}), ("get_event", {"event_id": event_id})]:
        replies.append(_ask(dxl_requester, "wrong", api_name, payload))
    assert [r.ok for r in replies[:10]] == [True] * 10 and replies[-1].error_code == 3
    for reply in replies:
        text = reply.raw.decode("utf-8", "replace") + reply.error_message
        assert not [key for key in keys if key in text or key[:16] in text]
    logs = {name: service.log_text() for name, service in debug_services.items()}
    assert " pymisp DEBUG " in logs["right"] and " urllib3.connectionpool DEBUG " in logs["right"]
    assert "<redacted>" in logs["right"]  # PyMISP's request headers were logged, the key cut out
    assert "refused the service's API key" in logs["wrong"]
    for name, text in logs.items():
        for key in keys:
            assert key not in text and key[:16] not in text, f"a key in the {name} service's DEBUG log"
