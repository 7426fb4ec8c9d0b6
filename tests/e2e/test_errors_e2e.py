"""Every error code of dxlmispservice/errors.py over the real fabric, from a real cause: what the requester
gets (code, message, payload), that MISP is left unchanged, and that the API key shows nowhere.

Services configured differently (read-only key, wrong key, dead MISP, small maxResponseSize) run beside the
stack's own, each under its own serviceUniqueId so that no two services answer one topic; they are started
together, once for this module.
"""
from __future__ import annotations

import inspect
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pymisp import PyMISP

from dxlmispservice.api import legacy
from dxlmispservice.errors import ERROR_CODES
from dxlmisp_devstack.testing import (API_KEY_ENV, Reply, Requester, ServiceProcess, StackHandle, dead_url,
                                    read_service_config)
from dxlmispservice.names import request_topic
from tests.e2e import helpers

WRONG_KEY = secrets.token_hex(20)
SMALL_LIMIT = 1024
#: The variants run without notifications and feed: those belong to the stack's own service.
QUIET = {"zeroMqNotificationTopics": None, "zeroMqPort": None}

Variant = tuple[ServiceProcess, str]


@pytest.fixture(scope="module")
def variants(devstack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Variant]]:
    """The four service variants ``name -> (process, serviceUniqueId)``, started and stopped together."""
    settings: dict[str, tuple[dict[str, str], dict[str, str]]] = {  # name -> ([General] overrides, environment)
        "readonly": ({}, {API_KEY_ENV: devstack.info["misp_readonly_api_key"]}),
        "wrongkey": ({}, {API_KEY_ENV: WRONG_KEY}),
        "dead": ({"host": dead_url()}, {}),
        "small": ({"maxResponseSize": str(SMALL_LIMIT)}, {}),
    }
    contexts: dict[str, Any] = {}
    running: dict[str, Variant] = {}
    failures: list[BaseException] = []

    def start(name: str) -> None:
        general, env = settings[name]
        unique_id = f"e2e-errors-{name}"
        config = devstack.config_dir(tmp_path_factory.mktemp(unique_id) / "config", {
            "General": {**QUIET, "serviceUniqueId": unique_id, **general}, "Feed": {"enabled": "false"}})
        contexts[name] = devstack.run_service(config, env=env)
        try:
            running[name] = (contexts[name].__enter__(), unique_id)
        except BaseException as exc:  # reported once all have been tried
            failures.append(exc)

    def stop(name: str) -> None:
        contexts[name].__exit__(None, None, None)

    in_parallel(start, settings)  # a start or a stop takes ~1 s: do them together
    try:
        if failures:
            raise failures[0]
        yield running
    finally:
        in_parallel(stop, running)


def in_parallel(fn: Callable[[str], None], names: Iterable[str]) -> None:
    """``fn(name)`` for every name, each on its own thread; returns when all are done."""
    threads = [threading.Thread(target=fn, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def readonly(variants: dict[str, Variant]) -> Variant:
    """A service whose MISP key is the read-only user's."""
    return variants["readonly"]


@pytest.fixture
def wrong_key(variants: dict[str, Variant]) -> Variant:
    """A service whose MISP key MISP does not know."""
    return variants["wrongkey"]


@pytest.fixture
def dead(variants: dict[str, Variant]) -> Variant:
    """A service whose MISP host is a port where nothing listens."""
    return variants["dead"]


@pytest.fixture
def small(variants: dict[str, Variant]) -> Variant:
    """A service with the smallest maxResponseSize the settings accept."""
    return variants["small"]


def ask(dxl_requester: Requester, api_name: str, payload: Any, unique_id: str = "") -> Reply:
    """Send one request to the stack's service, or to the variant ``unique_id``."""
    return dxl_requester.request(request_topic(api_name, unique_id), payload)


def assert_error(reply: Reply, code: int) -> None:
    """An ErrorResponse with ``code`` whose payload is the service's own {"code", "error", "message"}."""
    assert not reply.ok and reply.error_code == code, (reply.error_code, reply.error_message)
    assert reply.payload == {"code": code, "error": ERROR_CODES[code][0], "message": reply.error_message}


def event_count(misp: Any) -> int:
    """How many events MISP holds."""
    return len(misp.search_index())


def make_event(misp: Any, info: str = "e2e errors") -> dict[str, Any]:
    """An event made directly in MISP (not through the service)."""
    return helpers.make_event(misp, info)


def accepted_pymisp_names(method: str) -> list[str]:
    """The keyword names a pass-through topic accepts: the PyMISP method's, bar self and pythonify."""
    names = list(inspect.signature(getattr(PyMISP, method)).parameters)[1:]
    return [name for name in names if name != "pythonify"]


# --- 1 invalid_payload --------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [b"this is not JSON", b'["info", "an array"]', b'"a string"', b"\xff\xfe{}"],
                         ids=["not-json", "array", "string", "not-utf8"])
def test_a_payload_that_is_no_json_object_is_invalid_payload(dxl_requester: Requester, misp: Any, payload: bytes) -> None:
    """A payload that is not a UTF-8 JSON object answers invalid_payload, and new_event makes no event."""
    reply = ask(dxl_requester, "new_event", payload)
    assert_error(reply, 1)
    assert event_count(misp) == 0


def test_a_json_object_nested_too_deeply_to_decode_is_invalid_payload(dxl_requester: Requester, misp: Any) -> None:
    """A JSON object nested deeper than the decoder can go answers invalid_payload, not internal_error."""
    depth = 50_000
    reply = ask(dxl_requester, "new_event", '{"info": ' + "[" * depth + "]" * depth + "}")
    assert_error(reply, 1)
    assert event_count(misp) == 0


# --- 2 invalid_arguments ------------------------------------------------------------------------------------
def test_legacy_unknown_key_is_invalid_arguments_listing_the_accepted_keys(dxl_requester: Requester, misp: Any) -> None:
    """new_event with an unknown key names it, lists every accepted key, and MISP gets no event."""
    reply = ask(dxl_requester, "new_event", {"info": "e2e", "colour": "blue"})
    assert_error(reply, 2)
    assert "'colour'" in reply.error_message
    assert all(key in reply.error_message for key in legacy.NEW_EVENT)
    assert event_count(misp) == 0


def test_legacy_missing_key_is_invalid_arguments_listing_the_accepted_keys(dxl_requester: Requester, misp: Any) -> None:
    """add_internal_comment without 'reference' says so, lists the accepted keys, and adds no attribute."""
    event = make_event(misp)
    reply = ask(dxl_requester, "add_internal_comment", {"event": event["id"], "comment": "no reference"})
    assert_error(reply, 2)
    assert "missing 'reference'" in reply.error_message
    assert all(key in reply.error_message for key in legacy.ADD_INTERNAL_COMMENT)
    assert misp.get_event(event["id"])["Event"]["Attribute"] == []


def test_modern_unknown_key_is_invalid_arguments_listing_the_signature(dxl_requester: Requester, misp: Any) -> None:
    """add_attribute with an unknown key names it, lists PyMISP's parameters, and adds no attribute."""
    event = make_event(misp)
    reply = ask(dxl_requester, "add_attribute", {"event": event["id"], "colour": "blue",
                                             "attribute": {"type": "domain", "value": "example.org"}})
    assert_error(reply, 2)
    assert "'colour'" in reply.error_message
    assert all(name in reply.error_message for name in accepted_pymisp_names("add_attribute"))
    assert misp.get_event(event["id"])["Event"]["Attribute"] == []


def test_modern_missing_key_is_invalid_arguments_listing_the_signature(dxl_requester: Requester, misp: Any) -> None:
    """add_event without 'event' names the missing argument and lists PyMISP's parameters; MISP gets no event."""
    reply = ask(dxl_requester, "add_event", {"metadata": True})
    assert_error(reply, 2)
    assert "'event'" in reply.error_message
    assert all(name in reply.error_message for name in accepted_pymisp_names("add_event"))
    assert event_count(misp) == 0


# --- 3 misp_refused -----------------------------------------------------------------------------------------
def test_unknown_event_is_misp_refused_with_misps_404_json(dxl_requester: Requester, misp: Any) -> None:
    """get_event of an unknown id answers misp_refused whose payload is MISP's own 404 JSON."""
    reply = ask(dxl_requester, "get_event", {"event_id": 987654})
    status, body = misp.get_event(987654)["errors"]
    assert (status, reply.ok, reply.error_code) == (404, False, 3)
    assert reply.payload == body
    assert "HTTP 404" in reply.error_message and body["message"] in reply.error_message


def test_duplicate_attribute_is_misp_refused_with_misps_403_json(dxl_requester: Requester, misp: Any) -> None:
    """A duplicate attribute answers misp_refused whose payload is MISP's 403 validation JSON; MISP keeps one."""
    event = make_event(misp)
    attribute = {"type": "ip-dst", "value": "198.51.100.77"}
    misp.add_attribute(event["id"], attribute)
    reply = ask(dxl_requester, "add_attribute", {"event": event["id"], "attribute": attribute})
    status, body = misp.add_attribute(event["id"], attribute)["errors"]
    assert (status, reply.ok, reply.error_code) == (403, False, 3)
    assert reply.payload == body
    assert "HTTP 403" in reply.error_message
    assert len(misp.get_event(event["id"])["Event"]["Attribute"]) == 1


def test_write_with_the_read_only_key_is_misp_refused_with_misps_json(
        dxl_requester: Requester, devstack: StackHandle, misp: Any, readonly: Variant) -> None:
    """With the read-only key a read works, a write answers misp_refused with MISP's own JSON and status."""
    event = make_event(misp)
    _, unique_id = readonly
    assert ask(dxl_requester, "get_event", {"event_id": event["id"]}, unique_id).payload["Event"]["uuid"] == event["uuid"]
    reply = ask(dxl_requester, "new_event", {"info": "e2e read-only"}, unique_id)
    status, body = devstack.misp(readonly=True).add_event({"info": "e2e read-only direct"})["errors"]
    assert (reply.ok, reply.error_code) == (False, 3)
    assert reply.payload == body
    assert f"HTTP {status}" in reply.error_message
    assert event_count(misp) == 1


def test_wrong_api_key_is_misp_refused_with_misps_403_json(
        dxl_requester: Requester, devstack: StackHandle, misp: Any, wrong_key: Variant) -> None:
    """A key MISP rejects answers misp_refused (HTTP 403, MISP's authentication message), not misp_unavailable."""
    direct = requests.get(devstack.info["misp_url"].rstrip("/") + "/users/view/me", timeout=10,
                          headers={"Authorization": WRONG_KEY, "Accept": "application/json"})
    reply = ask(dxl_requester, "new_event", {"info": "e2e wrong key"}, wrong_key[1])
    assert direct.status_code == 403
    assert (reply.ok, reply.error_code) == (False, 3), reply.error_message
    assert isinstance(reply.payload, dict) and reply.payload.get("message") == direct.json()["message"]
    assert "HTTP 403" in reply.error_message
    assert event_count(misp) == 0


# --- 4 misp_unavailable -------------------------------------------------------------------------------------
def test_unreachable_misp_is_misp_unavailable(dxl_requester: Requester, misp: Any, dead: Variant) -> None:
    """A service whose MISP does not listen answers misp_unavailable, naming MISP's address."""
    process, unique_id = dead
    reply = ask(dxl_requester, "new_event", {"info": "e2e dead"}, unique_id)
    assert_error(reply, 4)
    host = read_service_config(process.log.parent)["General"]["host"]
    assert host.rstrip("/") in reply.error_message
    assert process.process.poll() is None


# --- 5 response_too_large -----------------------------------------------------------------------------------
def test_answer_over_max_response_size_is_response_too_large(dxl_requester: Requester, misp: Any, small: Variant) -> None:
    """An answer over maxResponseSize answers response_too_large naming its size, the limit and limit/page."""
    event = make_event(misp)
    for number in range(8):
        misp.add_attribute(event["id"], {"type": "domain", "value": f"host{number}.example.org"})
    full = ask(dxl_requester, "get_event", {"event_id": event["id"]})
    assert full.ok and len(full.raw) > SMALL_LIMIT
    reply = ask(dxl_requester, "get_event", {"event_id": event["id"]}, small[1])
    assert_error(reply, 5)
    assert f"is more than {SMALL_LIMIT} bytes" in reply.error_message  # the service stopped reading there
    assert '"metadata": true' in reply.error_message and '"controller": "attributes"' in reply.error_message
    assert ask(dxl_requester, "search", {"eventid": 987654}, small[1]).payload == {"response": []}


# --- 6 internal_error ---------------------------------------------------------------------------------------
def test_unexpected_failure_is_internal_error_with_a_log_reference(devstack: StackHandle, dxl_requester: Requester) -> None:
    """A failure nobody foresaw (PyMISP's KeyError on a tag list from MISP without its 'Tag' key) answers
    internal_error with a reference, and the service log holds the traceback under that reference."""
    devstack.answer_route("/tags/index", {"unexpected": []})
    try:
        reply = ask(dxl_requester, "tags", {})
    finally:
        devstack.answer_route("/tags/index", None, status=0)
    assert_error(reply, 6)
    reference = re.search(r"reference ([0-9a-f]{12})", reply.error_message)
    assert reference is not None
    assert "KeyError" not in reply.error_message
    log = Path(devstack.info["logs"]["service"]).read_text(errors="replace")
    entry = re.split(r"\n\d{4}-\d\d-\d\d ", log[log.index(f"reference {reference.group(1)}"):], maxsplit=1)[0]
    assert "Traceback" in entry and "KeyError" in entry


# --- all codes, and the key -----------------------------------------------------------------------------------
def test_every_error_code_reaches_the_requester_without_the_api_key(
        devstack: StackHandle, dxl_requester: Requester, misp: Any, readonly: Variant, wrong_key: Variant,
        dead: Variant, small: Variant) -> None:
    """Each code in ERROR_CODES comes over the wire, and no answer, message or service log holds an API key."""
    event = make_event(misp)
    for number in range(8):
        misp.add_attribute(event["id"], {"type": "domain", "value": f"host{number}.example.org"})
    provoke: dict[int, list[tuple[str, Any, str]]] = {
        1: [("new_event", b"[1]", "")],
        2: [("add_event", {"bogus": 1}, "")],
        3: [("get_event", {"event_id": 987654}, ""), ("new_event", {"info": "x"}, readonly[1])],
        4: [("new_event", {"info": "x"}, dead[1])],
        5: [("get_event", {"event_id": event["id"]}, small[1])],
        6: [("tags", {}, "")],
        8: [("export_event", {"event": 4242, "format": "xsoar"}, "")],
    }
    devstack.answer_route("/tags/index", {"unexpected": []})  # see the internal_error test
    devstack.answer_route("/events/view/4242", {"Event": {"id": "4242", "uuid": "5f1e2d3c-4b5a-4c6d-8e7f-901234567890",
                                                          "info": "no date", "date": "someday"}})  # xsoar needs one
    assert set(provoke) | {7} == set(ERROR_CODES)  # 7, service_busy, takes a burst: test_faults_e2e.py
    keys = [devstack.info["misp_api_key"], devstack.info["misp_readonly_api_key"], WRONG_KEY]
    seen: dict[int, set[int]] = {}
    also = [("new_event", {"info": "x"}, wrong_key[1])]  # its code is the subject of its own test
    for code, asked in [*provoke.items(), (None, also)]:
        for api_name, payload, unique_id in asked:
            reply = ask(dxl_requester, api_name, payload, unique_id)
            if code is not None:
                seen.setdefault(code, set()).add(reply.error_code)
            text = reply.raw.decode("utf-8", "replace") + reply.error_message
            assert not [key for key in keys if key in text], f"an API key in the answer to {api_name}"
    assert seen == {code: {code} for code in provoke}
    logs = [Path(devstack.info["logs"]["service"])] + [variant[0].log for variant in (readonly, wrong_key, dead, small)]
    for log in logs:
        text = log.read_text(errors="replace")
        assert not [key for key in keys if key in text], f"an API key in {log}"
