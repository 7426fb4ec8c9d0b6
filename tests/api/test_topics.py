"""Unit tests for dxlmispservice.api.topics: the topic-name rule, building the table from apiNames, and the
errors that list the valid names."""
from __future__ import annotations

from typing import Any

import pytest

from dxlmispservice.events import feed

from dxlmispservice.api import legacy

from dxlmispservice.api import topics
from dxlmispservice.errors import ConfigError
from dxlmispservice.api.passthrough import PassthroughHandler


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Each test gets its own service-topic registry."""
    registry: dict[str, Any] = {}
    monkeypatch.setattr(topics, "EXTRA", registry)
    return registry


# --- topic names ---------------------------------------------------------------------------------------------
def test_service_type_without_and_with_unique_id() -> None:
    """The service type is /opendxl-misp/service/misp-api, with /<serviceUniqueId> when one is set."""
    assert topics.SERVICE_TYPE == "/opendxl-misp/service/misp-api"
    assert topics.service_type() == "/opendxl-misp/service/misp-api"
    assert topics.service_type("east") == "/opendxl-misp/service/misp-api/east"


def test_request_topic_appends_the_api_name() -> None:
    """Each API name's request topic is the service type plus /<name>."""
    assert topics.request_topic("new_event") == "/opendxl-misp/service/misp-api/new_event"
    assert topics.request_topic("search", "east") == "/opendxl-misp/service/misp-api/east/search"


@pytest.mark.parametrize("unique_id", ["a/b", "#", "x+", " padded "])
def test_unique_id_must_be_one_topic_level(unique_id: str) -> None:
    """A serviceUniqueId with '/', '#', '+' or surrounding blanks is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match="serviceUniqueId"):
        topics.request_topic("tag", unique_id)


# --- the table -----------------------------------------------------------------------------------------------
def test_legacy_names_get_their_adapters() -> None:
    """Every legacy name is served by its legacy adapter, also where PyMISP has the same name."""
    table = topics.build_table(list(legacy.LEGACY))
    assert table == legacy.LEGACY
    assert table["tag"] is legacy.tag and table["search"] is legacy.search


def test_modern_names_get_pass_through_handlers() -> None:
    """A PyMISP name that is not legacy gets a pass-through handler for that method."""
    table = topics.build_table(["add_event", "add_sighting"])
    assert list(table) == ["add_event", "add_sighting"]
    assert all(isinstance(h, PassthroughHandler) for h in table.values())
    assert [h.name for h in table.values()] == ["add_event", "add_sighting"]


def test_fetch_events_is_a_service_topic() -> None:
    """fetch_events is served by the feed's handler."""
    assert topics.build_table(["fetch_events"])["fetch_events"] is feed.fetch_events
    assert "fetch_events" in topics.valid_api_names()


def test_only_the_named_topics_are_in_the_table() -> None:
    """The table holds exactly the names asked for, once each, in order."""
    table = topics.build_table(["search", "new_event", "search", "add_event"])
    assert list(table) == ["search", "new_event", "add_event"]


def test_unknown_name_gives_close_matches_and_points_at_the_docs() -> None:
    """An unknown name is a ConfigError with 'did you mean' and a pointer to the docs' list of valid names."""
    with pytest.raises(ConfigError) as raised:
        topics.build_table(["new_event", "new_evnt"])
    message = raised.value.message
    assert message.startswith("apiNames: 'new_evnt' is not an API name (did you mean 'new_event'")
    assert message.endswith(topics.NAMES_DOC) and "docs/methods.rst" in message
    assert "search_index" not in message  # the full list is in the docs, not in the message


@pytest.mark.parametrize("name, reason", [
    ("upload_stix", "reads or writes files on the service's host"),
    ("direct_call", "bypass this allow-list"),
    ("_prepare_request", "private and dunder"),
    ("__init__", "private and dunder"),
    ("version", "property or attribute"),
    ("", "an empty name"),
])
def test_refused_name_says_why(name: str, reason: str) -> None:
    """A refused name is a ConfigError that gives the rule's reason."""
    with pytest.raises(ConfigError) as raised:
        topics.build_table([name])
    assert reason in raised.value.message and topics.NAMES_DOC in raised.value.message


def test_every_problem_is_reported_at_once() -> None:
    """Several bad names are all named in one ConfigError."""
    with pytest.raises(ConfigError) as raised:
        topics.build_table(["nope", "upload_stix", "tag"])
    assert "'nope'" in raised.value.message and "'upload_stix'" in raised.value.message


def test_valid_names_hold_every_source_and_no_refused_name() -> None:
    """valid_api_names holds legacy names, allowed PyMISP names and service topics, and no refused one."""
    valid = topics.valid_api_names()
    assert set(legacy.LEGACY) <= set(valid)
    assert {"add_event", "add_attribute", "publish", "fetch_events"} <= set(valid)
    assert not {"upload_stix", "direct_call", "toggle_global_pythonify", "version"} & set(valid)
    assert not [name for name in valid if name.startswith("_")]
    assert valid == sorted(valid)


# --- service topics ------------------------------------------------------------------------------------------
def test_register_topic_as_decorator_adds_a_served_name(own_registry: dict[str, Any]) -> None:
    """@register_topic(name) adds a service topic that build_table then serves."""
    @topics.register_topic("health_check")
    def health_check(misp: Any, payload: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    assert own_registry["health_check"] is health_check
    assert topics.build_table(["health_check"])["health_check"] is health_check
    assert "health_check" in topics.valid_api_names()


def test_register_topic_refuses_shadowing_and_a_second_handler() -> None:
    """A service topic may not reuse a legacy or PyMISP name, nor take a second handler."""
    def one(misp: Any, payload: dict[str, Any]) -> None:
        return None

    def two(misp: Any, payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(ValueError, match="shadow"):
        topics.register_topic("new_event", one)
    with pytest.raises(ValueError, match="shadow"):
        topics.register_topic("add_event", one)
    topics.register_topic("mine", one)
    topics.register_topic("mine", one)  # the same handler again is harmless
    with pytest.raises(ValueError, match="already registered"):
        topics.register_topic("mine", two)


def test_built_handlers_run_on_the_client() -> None:
    """A handler from the table runs its PyMISP call through the client it is given."""
    calls: list[tuple[str, Any]] = []

    class Client:
        def call(self, fn: Any) -> Any:
            return fn(self)

        def publish(self, event: Any, alert: bool = False) -> dict[str, Any]:
            calls.append(("publish", event, alert))
            return {"message": "Job queued"}

    table = topics.build_table(["publish", "unpublish"])
    assert table["publish"](Client(), {"event": 4}) == {"message": "Job queued"}
    assert calls == [("publish", 4, True)]
