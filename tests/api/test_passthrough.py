"""Unit tests for dxlmispservice.api.passthrough: the allow-list rules, binding a payload to a PyMISP
signature, JSON entities in, MISP's JSON out."""
from __future__ import annotations

import inspect
import secrets
from datetime import date, datetime, timezone
from typing import Any, Iterator
from uuid import UUID

import pytest
from pymisp import MISPAttribute, MISPEvent, MISPNote, MISPObject, MISPSighting, MISPTag, PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError

from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import serve
from dxlmispservice.api import passthrough
from dxlmispservice.errors import InternalError, InvalidArguments, MispRefused
from dxlmispservice.misp import MispConnection
from dxlmispservice.settings import Settings


class RecordingPyMISP:
    """Any PyMISP method name: the call is bound to the real signature, recorded, and answered by
    ``answers[name]`` (a value, or an exception to raise)."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers = answers or {}

    def __getattr__(self, name: str) -> Any:
        signature = inspect.signature(getattr(PyMISP, name))

        def method(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            self.calls.append((name, {k: v for k, v in bound.arguments.items() if k != "self"}))
            answer = self.answers.get(name, {"ok": name})
            if isinstance(answer, Exception):
                raise answer
            return answer
        return method


class FakeClient:
    """The MispConnection interface: ``call(fn)`` runs ``fn`` on the recording PyMISP."""

    def __init__(self, pymisp: RecordingPyMISP) -> None:
        self.pymisp = pymisp

    def call(self, fn: Any) -> Any:
        return fn(self.pymisp)


@pytest.fixture
def misp() -> RecordingPyMISP:
    return RecordingPyMISP()


@pytest.fixture
def client(misp: RecordingPyMISP) -> FakeClient:
    return FakeClient(misp)


class Synthetic:
    """A class whose methods hit each rule once."""

    def fine(self, event: "MISPEvent | int", pythonify: bool = False) -> "dict[str, Any]":
        return {}

    def _private(self) -> "dict[str, Any]":
        return {}

    def reads_path(self, source: "str | Path") -> "dict[str, Any]":
        return {}

    def reads_stream(self, data: "BufferedIOBase") -> "dict[str, Any]":
        return {}

    def named_filepath(self, filepath: str) -> "dict[str, Any]":
        return {}

    def writes_file(self, out_file: str) -> "dict[str, Any]":
        return {}

    def raw(self, attribute: int) -> "bytes":
        return b""

    def raw_io(self, attribute: int) -> "BytesIO | None":
        return None

    def response(self) -> "requests.Response":
        raise NotImplementedError

    @property
    def prop(self) -> int:
        return 1

    @staticmethod
    def helper() -> "dict[str, Any]":
        return {}


# --- the rules --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, reason", [
    ("_private", "private and dunder"),
    ("__init__", "private and dunder"),
    ("reads_path", "reads or writes files"),
    ("reads_stream", "reads or writes files"),
    ("named_filepath", "reads or writes files"),
    ("writes_file", "reads or writes files"),
    ("raw", "returns raw bytes"),
    ("raw_io", "returns raw bytes"),
    ("response", "returns raw bytes"),
    ("prop", "property or attribute"),
    ("helper", "static helper"),
])
def test_rules_refuse_each_kind_of_method(name: str, reason: str) -> None:
    """Private, file, raw-bytes, property and static members are refused with the matching reason."""
    assert reason in (passthrough.refusal_reason(name, Synthetic) or "")


def test_rules_accept_a_plain_method() -> None:
    """A public method with JSON-able parameters and a JSON result passes the rules."""
    assert passthrough.refusal_reason("fine", Synthetic) is None
    assert passthrough.allowed_names(Synthetic) == ["fine"]


@pytest.mark.parametrize("name, reason", [
    ("upload_stix", "reads or writes files on the service's host (parameter 'path'"),
    ("direct_call", "bypass this allow-list"),
    ("toggle_global_pythonify", "shared client"),
    ("get_all_functions", "reads PyMISP's source file"),
    ("version", "property or attribute"),
    ("misp_instance_version", "property or attribute"),
    ("build_complex_query", "static helper"),
    ("_prepare_request", "private and dunder"),
])
def test_real_pymisp_refusals_carry_their_reason(name: str, reason: str) -> None:
    """On the pinned PyMISP, file, deny-listed, property, static and private names are refused."""
    assert reason in (passthrough.refusal_reason(name) or "")
    assert name not in passthrough.allowed_names()


def test_denied_names_exist_and_common_names_are_allowed() -> None:
    """Every deny-listed name is a PyMISP member, and everyday methods stay allowed."""
    assert all(hasattr(PyMISP, name) and reason for name, reason in passthrough.DENIED.items())
    allowed = passthrough.allowed_names()
    for name in ("add_event", "add_attribute", "add_sighting", "get_event", "publish", "tag", "untag", "search"):
        assert name in allowed


def test_build_handler_refuses_with_the_reason_and_unknown_names() -> None:
    """build_handler raises ValueError(reason) for a refused name and KeyError for an unknown one."""
    with pytest.raises(ValueError, match="files on the service's host"):
        passthrough.build_handler("upload_stix")
    with pytest.raises(KeyError):
        passthrough.build_handler("no_such_method")


# --- binding -----------------------------------------------------------------------------------------------------
def test_unknown_argument_lists_the_accepted_ones(client: FakeClient, misp: RecordingPyMISP) -> None:
    """An unknown key is InvalidArguments listing the accepted arguments; MISP is not called."""
    with pytest.raises(InvalidArguments) as raised:
        passthrough.build_handler("get_event")(client, {"event": 1, "colour": "red"})
    assert "colour" in raised.value.message
    assert "event (required), deleted, extended, no_sightings" in raised.value.message
    assert "pythonify" not in raised.value.message.split("Accepted arguments:")[1]
    assert misp.calls == []


def test_missing_argument_lists_the_accepted_ones(client: FakeClient, misp: RecordingPyMISP) -> None:
    """A missing required argument is InvalidArguments naming it; MISP is not called."""
    with pytest.raises(InvalidArguments) as raised:
        passthrough.build_handler("add_attribute")(client, {"event": 1})
    assert "'attribute'" in raised.value.message and "event (required), attribute (required)" in raised.value.message
    assert misp.calls == []


def test_pythonify_is_refused_from_payloads_and_forced_off(client: FakeClient, misp: RecordingPyMISP) -> None:
    """pythonify cannot be sent; the service always calls with pythonify=False."""
    handler = passthrough.build_handler("get_event")
    with pytest.raises(InvalidArguments, match="'pythonify' is set by the service"):
        handler(client, {"event": 1, "pythonify": True})
    handler(client, {"event": 7})
    assert misp.calls == [("get_event", {"event": 7, "pythonify": False})]


def test_method_without_pythonify_gets_no_pythonify(client: FakeClient, misp: RecordingPyMISP) -> None:
    """pythonify is only passed to methods that have it."""
    passthrough.build_handler("publish")(client, {"event": 3, "alert": False})
    assert misp.calls == [("publish", {"event": 3, "alert": False})]


def test_var_keyword_methods_take_other_keys(client: FakeClient, misp: RecordingPyMISP) -> None:
    """A method with **kwargs passes other keys on, and its accepted list says so."""
    handler = passthrough.build_handler("freetext")
    handler(client, {"event": 1, "string": "1.2.3.4", "custom_flag": 1})
    assert misp.calls[-1][1]["kwargs"] == {"custom_flag": 1}
    assert "any other key" in handler.accepted()


def test_no_argument_method_accepts_an_empty_payload(client: FakeClient, misp: RecordingPyMISP) -> None:
    """A method without arguments is called with {} and refuses any key."""
    handler = passthrough.build_handler("server_settings")
    handler(client, {})
    assert misp.calls == [("server_settings", {})]
    with pytest.raises(InvalidArguments, match="none"):
        handler(client, {"x": 1})


@pytest.mark.parametrize("name, payload", [
    ("get_event", {"event": "1/../../admin/users"}),
    ("delete_attribute", {"attribute": "a?b=1"}),
    ("get_event_reports", {"event_id": "../x"}),
    ("update_event", {"event": {"info": "x", "uuid": "../../servers/x"}}),
])
def test_identifiers_cannot_change_the_url_path(client: FakeClient, misp: RecordingPyMISP, name: str,
                                                payload: dict[str, Any]) -> None:
    """An identifier with '/', '?', '..' (bare or inside an entity) is refused before MISP is called."""
    with pytest.raises(InvalidArguments, match=r"goes into MISP's URL, so it must be (a number, a UUID or a plain name|a number from 0 to 2\*\*63 - 1, or a UUID)"):
        passthrough.build_handler(name)(client, payload)
    assert misp.calls == []


def test_uuid_and_numeric_identifiers_pass(client: FakeClient, misp: RecordingPyMISP) -> None:
    """Numbers, digit strings and UUIDs are fine identifiers."""
    handler = passthrough.build_handler("get_event")
    for ref in (5, "5", "5acb875e-a7e4-4a73-b5f5-196cac110002"):
        handler(client, {"event": ref})
    assert [args["event"] for _, args in misp.calls] == [5, "5", "5acb875e-a7e4-4a73-b5f5-196cac110002"]


# --- entities in -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", [{"info": "bare"}, {"Event": {"info": "bare"}}])
def test_event_json_becomes_a_misp_event(client: FakeClient, misp: RecordingPyMISP, event: dict[str, Any]) -> None:
    """add_event takes the event bare or wrapped in {"Event": ...} and passes a MISPEvent."""
    passthrough.build_handler("add_event")(client, {"event": event})
    sent = misp.calls[-1][1]["event"]
    assert isinstance(sent, MISPEvent) and sent.info == "bare"


@pytest.mark.parametrize("name, payload, key, cls", [
    ("add_attribute", {"event": 1, "attribute": {"type": "ip-dst", "value": "1.2.3.4"}}, "attribute", MISPAttribute),
    ("add_sighting", {"sighting": {"source": "s", "type": "0"}, "attribute": 3}, "sighting", MISPSighting),
    ("add_tag", {"tag": {"Tag": {"name": "t", "colour": "#ffffff"}}}, "tag", MISPTag),
    ("add_object", {"event": 1, "misp_object": {"name": "domain-ip", "Attribute": [
        {"object_relation": "domain", "type": "domain", "value": "example.com"}]}}, "misp_object", MISPObject),
    ("attach_galaxy_cluster", {"misp_entity": {"Attribute": {"type": "text", "value": "v"}}, "galaxy_cluster": 1},
     "misp_entity", MISPAttribute),
    ("attach_galaxy_cluster", {"misp_entity": {"Event": {"info": "i"}}, "galaxy_cluster": 1},
     "misp_entity", MISPEvent),
])
def test_entity_parameters_get_their_class(client: FakeClient, misp: RecordingPyMISP, name: str,
                                           payload: dict[str, Any], key: str, cls: type) -> None:
    """Each entity parameter gets the class its annotation names (or its wrapper picks)."""
    passthrough.build_handler(name)(client, payload)
    assert isinstance(misp.calls[-1][1][key], cls)


def test_list_of_attributes_becomes_a_list_of_entities(client: FakeClient, misp: RecordingPyMISP) -> None:
    """add_attribute takes a list of attribute objects, each turned into a MISPAttribute."""
    passthrough.build_handler("add_attribute")(client, {"event": 1, "attribute": [
        {"type": "ip-dst", "value": "1.2.3.4"}, {"type": "domain", "value": "example.com"}]})
    sent = misp.calls[-1][1]["attribute"]
    assert [type(a) for a in sent] == [MISPAttribute, MISPAttribute]
    assert [a.value for a in sent] == ["1.2.3.4", "example.com"]


UUID_A = "5acb875e-44a0-402d-8265-013cac110002"


@pytest.mark.parametrize("name, payload, key, expected", [
    ("get_event", {"event": {"Event": {"id": "5", "uuid": UUID_A, "info": "i"}}}, "event", UUID_A),
    ("publish", {"event": {"id": 3}}, "event", 3),
    ("tag", {"misp_entity": {"Attribute": {"uuid": UUID_A, "type": "text"}}, "tag": "t"}, "misp_entity", UUID_A),
    ("add_sighting", {"sighting": {"source": "s"}, "attribute": {"uuid": UUID_A}}, "attribute", UUID_A),
    ("accept_attribute_proposal", {"proposal": {"id": 4, "uuid": UUID_A}}, "proposal", 4),
])
def test_object_where_an_id_is_accepted_stands_for_its_id(client: FakeClient, misp: RecordingPyMISP, name: str,
                                                           payload: dict[str, Any], key: str, expected: Any) -> None:
    """Where a parameter takes an entity or its id, a JSON object stands for its uuid (id for proposals)."""
    passthrough.build_handler(name)(client, payload)
    assert misp.calls[-1][1][key] == expected


def test_generic_entity_without_identifier_stays_a_dict(client: FakeClient, misp: RecordingPyMISP) -> None:
    """A parameter that takes any entity or a dict keeps a bare dict without id or uuid as it is."""
    passthrough.build_handler("tag")(client, {"misp_entity": {"name": "x"}, "tag": "t"})
    assert misp.calls[-1][1]["misp_entity"] == {"name": "x"}


def test_several_candidate_classes_need_the_wrapper(client: FakeClient, misp: RecordingPyMISP) -> None:
    """Where an annotation names several classes, a bare object is refused and a wrapped one is built."""
    handler = passthrough.build_handler("update_analyst_data")
    with pytest.raises(InvalidArguments, match=r'wrap it as .*\{"Note": \{\.\.\.\}\}'):
        handler(client, {"analyst_data": {"note": "n"}})
    handler(client, {"analyst_data": {"Note": {"note": "n", "object_type": "Event",
                                                "object_uuid": "5acb875e-a7e4-4a73-b5f5-196cac110002"}},
                     "analyst_data_id": 7})
    assert isinstance(misp.calls[-1][1]["analyst_data"], MISPNote)


def test_a_method_the_probe_cannot_classify_is_refused() -> None:
    """add_analyst_data puts entity fields the probe cannot see into MISP's URL: it is refused, saying why."""
    reason = passthrough.refusal_reason("add_analyst_data") or ""
    assert "the probe could not see where PyMISP.add_analyst_data puts its arguments" in reason
    with pytest.raises(ValueError, match="probe could not see"):
        passthrough.build_handler("add_analyst_data")


def test_wrong_wrapper_is_refused(client: FakeClient, misp: RecordingPyMISP) -> None:
    """An object wrapped as another entity than the parameter takes is refused."""
    with pytest.raises(InvalidArguments, match="'event' takes MISPEvent, not a Attribute"):
        passthrough.build_handler("add_event")(client, {"event": {"Attribute": {"type": "text", "value": "v"}}})
    assert misp.calls == []


def test_invalid_entity_names_the_parameter(client: FakeClient, misp: RecordingPyMISP) -> None:
    """An entity PyMISP cannot build (an event without info) is InvalidArguments naming the parameter."""
    with pytest.raises(InvalidArguments, match="'event' is not a valid MISPEvent: .*info"):
        passthrough.build_handler("add_event")(client, {"event": {"distribution": 1}})
    assert misp.calls == []


# --- calling and JSON out ----------------------------------------------------------------------------------------
def test_results_come_back_as_misp_json(client: FakeClient) -> None:
    """Entities in a result become their MISP dicts (numbers as strings); tuples, dates and UUIDs get JSON forms."""
    event = MISPEvent()
    event.from_dict(info="out", distribution=1)
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    misp = RecordingPyMISP({"get_user": (event, [event], {"when": when, "day": date(2024, 1, 2),
                                                         "id": UUID(int=1)})})
    result = passthrough.build_handler("get_user")(FakeClient(misp), {})
    assert isinstance(result, list) and result[0]["info"] == "out" and result[0]["distribution"] == "1"
    assert result[1] == [result[0]]
    assert result[2] == {"when": when.isoformat(), "day": "2024-01-02", "id": str(UUID(int=1))}


def test_plain_json_comes_back_equal_as_a_copy() -> None:
    """Plain JSON (pythonify=False) comes back equal, as new containers, with non-string keys made strings."""
    value = {"Event": {"id": "1", "n": 2, "f": 1.5, "ok": True, "none": None, "Attribute": [{"v": "x"}, [1, "2"]]},
             3: ["a"]}
    result = passthrough.to_json(value)
    assert result == {"Event": value["Event"], "3": ["a"]}
    assert result["Event"] is not value["Event"] and result["Event"]["Attribute"] is not value["Event"]["Attribute"]


def test_entities_nested_in_plain_json_are_converted() -> None:
    """An entity, a tuple or a set inside plain dicts and lists still gets its JSON form."""
    event = MISPEvent()
    event.from_dict(info="inside", distribution=1)
    result = passthrough.to_json({"list": [{"event": event}], "pair": (1, 2), "when": date(2024, 1, 2)})
    assert result["list"][0]["event"]["info"] == "inside"
    assert result["pair"] == [1, 2] and result["when"] == "2024-01-02"


def test_result_without_json_form_is_an_internal_error() -> None:
    """A result that has no JSON form raises InternalError rather than sending garbage."""
    with pytest.raises(InternalError):
        passthrough.to_json({"x": object()})


@pytest.mark.parametrize("error", [PyMISPError("tag must be a MISPTag"), ValueError("to_ids has to be in 0 or 1")])
def test_pymisp_argument_checks_become_invalid_arguments(error: Exception) -> None:
    """PyMISP's own argument errors during the call become InvalidArguments with its message."""
    client = FakeClient(RecordingPyMISP({"untag": error}))
    with pytest.raises(InvalidArguments, match=str(error)):
        passthrough.build_handler("untag")(client, {"misp_entity": "5acb875e-44a0-402d-8265-013cac110002",
                                                    "tag": "t"})


def test_server_errors_are_left_to_the_client_mapping() -> None:
    """MISPServerError is not an argument error: it reaches the MispConnection mapping unchanged."""
    client = FakeClient(RecordingPyMISP({"get_event": MISPServerError("Error code 500")}))
    with pytest.raises(MISPServerError):
        passthrough.build_handler("get_event")(client, {"event": 1})


# --- against real PyMISP and the dev MISP server -------------------------------------------------------------
@pytest.fixture(scope="module")
def real() -> Iterator[MispConnection]:
    """The real MispConnection (real PyMISP) on the dev MISP server, served in-process on a free port."""
    key = secrets.token_hex(20)
    with serve(MispModels(), admin_key=key) as server:
        yield MispConnection(Settings(misp_url=server.url, api_key=key))


def test_real_add_event_attribute_and_sighting(real: MispConnection) -> None:
    """Modern names over real PyMISP: JSON entities in, MISP's JSON out, and the data is stored."""
    event = passthrough.build_handler("add_event")(real, {"event": {"Event": {"info": "modern", "distribution": 0}}})
    assert event["Event"]["info"] == "modern"
    attribute = passthrough.build_handler("add_attribute")(real, {
        "event": event["Event"], "attribute": {"type": "domain", "value": "example.org"}})
    assert attribute["Attribute"]["value"] == "example.org"
    sighting = passthrough.build_handler("add_sighting")(real, {
        "sighting": {"source": "modern", "type": "0"}, "attribute": attribute["Attribute"]})
    assert isinstance(sighting, dict)
    stored = passthrough.build_handler("get_event")(real, {"event": event["Event"]["id"]})
    assert [a["value"] for a in stored["Event"]["Attribute"]] == ["example.org"]
    assert [s["source"] for s in stored["Event"]["Attribute"][0]["Sighting"]] == ["modern"]


def test_real_refusal_is_misp_refused(real: MispConnection) -> None:
    """A modern call MISP refuses (an unknown event) raises MispRefused with MISP's own body."""
    with pytest.raises(MispRefused) as raised:
        passthrough.build_handler("get_event")(real, {"event": 987654})
    assert raised.value.status == 404 and isinstance(raised.value.payload, dict)


# --- types of pass-through values ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, payload, words", [
    ("update_attribute", {"attribute": [1, 2]}, "'attribute' takes a JSON object or a single value, not a JSON list"),
    ("get_event", {"event": 1, "deleted": {"a": 1}}, "'deleted' takes a list or a single value, not a JSON object"),
    ("search_index", {"published": "yes"}, "'published' takes true or false, not 'yes'"),
    ("search_index", {"limit": "5"}, "'limit' takes a whole number from 0 to 2**63 - 1, not '5'"),
    ("search_index", {"limit": -5}, "'limit' takes a whole number from 0 to 2**63 - 1, not -5"),
    ("search_index", {"page": 10**30}, "the number at 'page' is out of range"),
    ("search_index", {"timestamp": 1e300}, "the number at 'timestamp' is out of range"),
    ("search_index", {"timestamp": 10**12}, "'timestamp' takes epoch seconds from 0 to 253402300799"),
    ("search_index", {"date_from": -1}, "'date_from' takes epoch seconds"),
    ("add_sighting", {"sighting": {"value": "x", "timestamp": 1e300}}, "the number at 'sighting.timestamp' is out"),
    ("get_attribute", {"attribute": 10**30}, "is out of range"),
    ("get_event", {"event": "1\n"}, "'event'"),
    ("add_attribute", {"event": "abc", "attribute": {"type": "domain", "value": "a.b"}}, "'event' is 'abc'"),
    ("search_index", {"eventinfo": ["a"]}, "'eventinfo' takes a string, not a JSON list"),
    ("delete_attribute", {"attribute": 1, "hard": [True]}, "'hard' takes true or false, not a JSON list"),
])
def test_a_structure_or_type_where_the_signature_has_none_is_invalid_arguments(
        client: FakeClient, misp: RecordingPyMISP, name: str, payload: dict[str, Any], words: str) -> None:
    """An object or list where the PyMISP annotation takes a scalar, or a scalar of another type where it
    takes only bool, int or str, is refused naming the key, before PyMISP is called."""
    with pytest.raises(InvalidArguments) as raised:
        passthrough.build_handler(name)(client, payload)
    assert words in raised.value.message
    assert misp.calls == []


def test_zero_and_one_stand_for_false_and_true(client: FakeClient, misp: RecordingPyMISP) -> None:
    """A flag sent as 0 or 1 reaches PyMISP as False or True."""
    passthrough.build_handler("search_index")(client, {"published": 1, "minimal": 0})
    assert misp.calls[0][1]["published"] is True and misp.calls[0][1]["minimal"] is False


def test_a_pymisp_failure_before_any_request_is_invalid_arguments(client: FakeClient) -> None:
    """PyMISP failing on the arguments before it sent anything (a KeyError on a role without an id) is
    invalid_arguments naming PyMISP's complaint."""
    client.pymisp.answers["update_role"] = KeyError("id")
    with pytest.raises(InvalidArguments, match=r"update_role: PyMISP could not use these arguments \(KeyError: 'id'\)"):
        passthrough.build_handler("update_role")(client, {"role": {"name": "x"}})


def test_a_pymisp_failure_after_a_request_is_left_to_the_handler(client: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after PyMISP sent a request (its KeyError on MISP's answer) is not blamed on the arguments."""
    sent = iter([0, 1])
    monkeypatch.setattr(passthrough, "requests_sent", lambda: next(sent))
    client.pymisp.answers["tags"] = KeyError("Tag")
    with pytest.raises(KeyError):
        passthrough.build_handler("tags")(client, {})
