"""Unit tests for dxlmispservice.roles: a role runs on the live instance that started first, and moves."""
from __future__ import annotations

import logging
from typing import Any

import pytest

from dxlmispservice.roles import Role, RoleKeeper, claims


class Part:
    """A feed or forwarder stand-in that records its starts and stops."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def start(self) -> None:
        self.log.append("start")

    def stop(self) -> None:
        self.log.append("stop")


def entry(roles: str, started_at: float, topics: str = "") -> dict[str, Any]:
    """A registry entry whose metadata claims ``roles``."""
    return {"metaData": {"roles": roles, "forwardedTopics": topics, "startedAt": f"{started_at:.6f}"}}


def keeper(roles: list[Role], registry: dict[str, Any], started_at: float = 100.0) -> RoleKeeper:
    return RoleKeeper(roles, own_guid=lambda: "{mine}", started_at=started_at, query=lambda: dict(registry),
                      interval=60)


def test_claims_name_the_roles_their_topics_and_the_start() -> None:
    """The registration metadata lists the roles, the forwarded topics and when the process started."""
    roles = [Role("feed", Part()), Role("forwarder", Part(), frozenset({"misp_json_event", "misp_json"}))]
    assert claims(roles, 12.5, "inst") == {"roles": "feed,forwarder", "forwardedTopics": "misp_json,misp_json_event",
                                           "startedAt": "12.500000", "instance": "inst"}


def test_alone_every_role_starts() -> None:
    """With no other instance registered, every role's part starts and is reported held."""
    feed, forwarder = Part(), Part()
    kept = keeper([Role("feed", feed), Role("forwarder", forwarder, frozenset({"misp_json"}))], {"{mine}": {}})
    kept.check()
    assert feed.log == ["start"] and forwarder.log == ["start"] and kept.held() == ["feed", "forwarder:misp_json"]


def test_an_earlier_holder_keeps_the_role_off_until_it_goes(caplog: pytest.LogCaptureFixture) -> None:
    """An instance that started earlier and claims the feed keeps ours off, said once; when its
    registration goes, the next check takes the feed."""
    feed = Part()
    registry = {"{other}": entry("feed", 50.0)}
    kept = RoleKeeper([Role("feed", feed)], own_guid=lambda: "{mine}", started_at=100.0,
                      query=lambda: dict(registry), interval=60)
    with caplog.at_level(logging.INFO, logger="dxlmispservice.roles"):
        kept.check()
        kept.check()
        assert feed.log == [] and kept.held() == []
        assert caplog.text.count("Keeping the feed off: instance {other} of this service holds it") == 1
        registry.clear()
        kept.check()
    assert feed.log == ["start"] and "Taking the feed" in caplog.text


def test_a_later_instance_does_not_take_a_role_away() -> None:
    """An instance that started after us, claiming the same role, leaves ours running."""
    feed = Part()
    kept = keeper([Role("feed", feed)], {"{later}": entry("feed", 200.0)})
    kept.check()
    kept.check()
    assert feed.log == ["start"]


def test_after_a_start_up_race_the_later_one_stops() -> None:
    """Both started the feed (neither saw the other yet); at the next check the later one stops its own."""
    feed = Part()
    registry: dict[str, Any] = {}
    kept = keeper([Role("feed", feed)], registry, started_at=100.0)
    kept.check()
    registry["{earlier}"] = entry("feed", 99.5)
    kept.check()
    assert feed.log == ["start", "stop"] and kept.held() == []


def test_forwarders_conflict_only_on_shared_topics() -> None:
    """An earlier forwarder of other topics leaves ours on; one that shares a topic keeps ours off."""
    ours = Part()
    kept = keeper([Role("forwarder", ours, frozenset({"misp_json_event"}))],
                  {"{a}": entry("forwarder", 1.0, "misp_json_sighting"), "{b}": entry("feed", 1.0)})
    kept.check()
    assert ours.log == ["start"]
    theirs = Part()
    kept = keeper([Role("forwarder", theirs, frozenset({"misp_json_event"}))],
                  {"{a}": entry("forwarder", 1.0, "misp_json,misp_json_event")})
    kept.check()
    assert theirs.log == []


def test_no_answer_from_the_registry_goes_on_as_before(caplog: pytest.LogCaptureFixture) -> None:
    """When the registry cannot be asked, a role not running yet starts (the service keeps working), with a
    warning."""
    feed = Part()

    def broken() -> dict[str, Any]:
        raise TimeoutError("no answer")

    kept = RoleKeeper([Role("feed", feed)], own_guid=lambda: "{mine}", started_at=1.0, query=broken, interval=60)
    with caplog.at_level(logging.WARNING, logger="dxlmispservice.roles"):
        kept.check()
    assert feed.log == ["start"] and "Could not ask the registry" in caplog.text


def test_a_registration_left_by_an_earlier_life_of_this_installation_is_no_holder() -> None:
    """After a kill -9 the old registration lingers; the restarted process (same installation) takes the
    feed at once, while another installation's earlier claim still keeps it off."""
    feed = Part()
    registry = {"{dead}": {"metaData": {**entry("feed", 50.0)["metaData"], "instance": "here"}}}
    kept = RoleKeeper([Role("feed", feed)], own_guid=lambda: "{mine}", started_at=100.0,
                      query=lambda: dict(registry), interval=60, instance="here")
    kept.check()
    assert feed.log == ["start"]
    other = Part()
    registry["{elsewhere}"] = {"metaData": {**entry("feed", 60.0)["metaData"], "instance": "there"}}
    RoleKeeper([Role("feed", other)], own_guid=lambda: "{new}", started_at=100.0, query=lambda: dict(registry),
               interval=60, instance="here").check()
    assert other.log == []


def test_no_forwarded_topic_is_left_to_nobody() -> None:
    """A forwards x,y (first), B y,z, C z: B is kept off by A, so C forwards z (B holds nothing)."""
    registry = {"{a}": entry("forwarder", 1.0, "x,y"), "{b}": entry("forwarder", 2.0, "y,z")}
    c = Part()
    RoleKeeper([Role("forwarder", c, frozenset({"z"}))], own_guid=lambda: "{c}", started_at=3.0,
               query=lambda: dict(registry), interval=60).check()
    assert c.log == ["start"]
    b = Part()
    RoleKeeper([Role("forwarder", b, frozenset({"y", "z"}))], own_guid=lambda: "{b}", started_at=2.0,
               query=lambda: {"{a}": registry["{a}"]}, interval=60).check()
    assert b.log == []
