"""The dev MISP server's models without HTTP: MISP's behaviour, validation, searches, notifications, persistence."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dxlmisp_devstack.misp.exceptions import EVENT_EXISTS, MethodNotAllowed, NotFound, SaveFailed
from dxlmisp_devstack.misp.models import MispModels

OLD = 1_000_000  # an event timestamp far in the past, so that any change moves it forward


@pytest.fixture()
def notes() -> list[tuple[str, dict[str, Any]]]:
    """The notifications the models sent, in order."""
    return []


@pytest.fixture()
def models(notes: list[tuple[str, dict[str, Any]]]) -> Iterator[MispModels]:
    """Models over an in-memory database, recording notifications."""
    m = MispModels(notifier=lambda topic, payload: notes.append((topic, payload)))
    yield m
    m.close()


def new_event(models: MispModels, **fields: Any) -> dict[str, Any]:
    """Add an event (info 'e' unless given) and return its inner Event dict."""
    return models.add_event({"Event": {"info": "e", **fields}})["Event"]


def topics(notes: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """(topic, action) of each notification."""
    return [(topic, payload.get("action", "")) for topic, payload in notes]


class TestEvents:
    def test_add_returns_misp_types(self, models: MispModels) -> None:
        """An added event has string ids, counts and timestamps and boolean flags."""
        event = new_event(models, Attribute=[{"type": "ip-dst", "value": "1.2.3.4"}])
        assert event["id"].isdigit() and event["attribute_count"] == "1" and event["timestamp"].isdigit()
        assert event["published"] is False and event["Attribute"][0]["to_ids"] is True
        assert event["Orgc"]["name"] == "ORGNAME" and event["Org"]["id"] == "1"

    def test_add_fills_sane_defaults(self, models: MispModels) -> None:
        """An attribute without a category gets the type's default category and to_ids."""
        attr = new_event(models, Attribute=[{"type": "md5", "value": "A" * 32}])["Attribute"][0]
        assert (attr["category"], attr["to_ids"], attr["value"]) == ("Payload delivery", True, "a" * 32)

    def test_add_reports_failed_attributes(self, models: MispModels) -> None:
        """A bad attribute in events/add is left out and reported under errors, the event is saved."""
        result = models.add_event({"info": "e", "Attribute": [{"type": "md5", "value": "xyz"},
                                                              {"type": "comment", "value": "ok"}]})
        assert result["Event"]["attribute_count"] == "1"
        assert "Checksum" in result["errors"]["Attribute"]["0"]["value"][0]

    def test_add_without_info_fails_validation(self, models: MispModels) -> None:
        """An event without info is MISP's save-fail with the field's message."""
        with pytest.raises(SaveFailed) as failed:
            models.add_event({"Event": {"threat_level_id": 9}})
        body = failed.value.body("/events/add")
        assert (body["saved"], body["name"], body["url"]) == (False, "Could not add Event", "/events/add")
        assert set(body["errors"]["Event"]) == {"info", "threat_level_id"}

    def test_duplicate_uuid_is_refused_with_location(self, models: MispModels) -> None:
        """Adding an event whose uuid exists answers MISP's 404 with a Location header."""
        event = new_event(models)
        with pytest.raises(NotFound) as refused:
            models.add_event({"info": "again", "uuid": event["uuid"]})
        assert refused.value.message == EVENT_EXISTS
        assert refused.value.headers["Location"] == f"/events/{event['id']}"

    def test_view_by_id_and_uuid(self, models: MispModels) -> None:
        """An event is found by its id and by its uuid; an unknown one is MISP's 404."""
        event = new_event(models)
        assert models.get_event(event["uuid"])["Event"]["id"] == event["id"]
        with pytest.raises(NotFound, match="Invalid event"):
            models.get_event("999999")

    def test_edit_keeps_unset_fields_and_unpublishes(self, models: MispModels) -> None:
        """An edit changes the given fields, keeps the others, unpublishes and moves the timestamp."""
        event = new_event(models, threat_level_id=1, timestamp=OLD)
        models.publish_event(event["id"])
        edited = models.edit_event(event["id"], {"Event": {"info": "new"}})["Event"]
        assert (edited["info"], edited["threat_level_id"], edited["published"]) == ("new", "1", False)
        assert int(edited["timestamp"]) > OLD

    def test_edit_not_newer_is_refused(self, models: MispModels) -> None:
        """An edit whose timestamp is not newer than the stored one is refused."""
        event = new_event(models)
        with pytest.raises(SaveFailed) as refused:
            models.edit_event(event["id"], {"Event": {"info": "x", "timestamp": event["timestamp"]}})
        assert "not newer than the local copy" in refused.value.errors

    def test_edit_updates_attributes_by_uuid_and_adds_new(self, models: MispModels) -> None:
        """An edit updates an attribute matched by uuid and adds the ones it does not know."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}])
        attr = dict(event["Attribute"][0], comment="changed")
        del attr["timestamp"]
        edited = models.edit_event(event["id"], {"Attribute": [attr, {"type": "comment", "value": "b"}]})["Event"]
        assert [(a["value"], a["comment"]) for a in edited["Attribute"]] == [("a", "changed"), ("b", "")]

    def test_publish_and_unpublish(self, models: MispModels) -> None:
        """Publishing sets published and publish_timestamp; unpublishing keeps the timestamp."""
        event = new_event(models, timestamp=OLD)
        models.publish_event(event["uuid"])
        published = models.get_event(event["id"])["Event"]
        assert published["published"] is True and int(published["publish_timestamp"]) > 0
        models.unpublish_event(event["id"])
        unpublished = models.get_event(event["id"])["Event"]
        assert unpublished["published"] is False and unpublished["timestamp"] == str(OLD)

    def test_delete(self, models: MispModels) -> None:
        """A deleted event is gone; deleting an unknown one is MISP's save-fail."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}])
        models.delete_event(event["id"])
        assert not models.event_exists(event["id"])
        with pytest.raises(SaveFailed, match="Could not delete Event"):
            models.delete_event(event["id"])


class TestAttributes:
    def test_add_moves_timestamp_and_count(self, models: MispModels) -> None:
        """Adding an attribute moves the event's timestamp, unpublishes it and keeps attribute_count true."""
        event = new_event(models, timestamp=OLD)
        models.publish_event(event["id"])
        created, fails = models.add_attributes(event["id"], [{"type": "comment", "value": "x"}])
        after = models.get_event(event["id"])["Event"]
        assert fails == {} and created[0]["Attribute"]["value1"] == "x"
        assert (after["attribute_count"], after["published"]) == ("1", False) and int(after["timestamp"]) > OLD

    def test_duplicate_is_refused(self, models: MispModels) -> None:
        """The same type, category and value twice in an event is MISP's duplicate error."""
        event = new_event(models, Attribute=[{"type": "domain", "value": "evil.example"}])
        created, fails = models.add_attributes(event["id"], [{"type": "domain", "value": "EVIL.example."}])
        assert created == []
        assert fails == {"attribute_0": {"value": ["A similar attribute already exists for this event."]}}

    def test_validation_errors(self, models: MispModels) -> None:
        """Unknown types, categories that do not fit, bad composites and bad IPs fail with MISP's keys."""
        event = new_event(models)
        _, fails = models.add_attributes(event["id"], [
            {"type": "no-such-type", "value": "x"}, {"type": "md5", "category": "Person", "value": "a" * 32},
            {"type": "filename|md5", "value": "only-one"}, {"type": "ip-src", "value": "999.1.1.1"}])
        assert set(fails["attribute_0"]) >= {"type"} and set(fails["attribute_1"]) == {"category"}
        assert "composite" in fails["attribute_2"]["value"][0] and "IP" in fails["attribute_3"]["value"][0]

    def test_uuids_are_unique(self, models: MispModels) -> None:
        """An attribute or object uuid already in use is MISP's uuid validation error."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}])
        _, fails = models.add_attributes(event["id"], [{"type": "comment", "value": "b",
                                                        "uuid": event["Attribute"][0]["uuid"]}])
        assert fails == {"attribute_0": {"uuid": ["The UUID provided is not unique"]}}
        obj = models.add_object(event["id"], {"name": "file"})["Object"]
        with pytest.raises(SaveFailed) as failed:
            models.add_object(event["id"], {"name": "file", "uuid": obj["uuid"]})
        assert failed.value.errors == {"uuid": ["The UUID provided is not unique"]}

    def test_composite_value_is_split(self, models: MispModels) -> None:
        """A composite attribute is stored as value1|value2 and shown whole."""
        event = new_event(models)
        created, _ = models.add_attributes(event["id"], [{"type": "ip-dst|port", "value": "1.2.3.4|443"}])
        attr = created[0]["Attribute"]
        assert (attr["value"], attr["value1"], attr["value2"]) == ("1.2.3.4|443", "1.2.3.4", "443")

    def test_edit_and_not_newer(self, models: MispModels) -> None:
        """An attribute edit changes the given fields; one not newer than the stored copy is MISP's 405."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}])
        attr = event["Attribute"][0]
        edited = models.edit_attribute(attr["uuid"], {"Attribute": {"comment": "c", "to_ids": True}})["Attribute"]
        assert (edited["comment"], edited["to_ids"], edited["value"]) == ("c", True, "a")
        with pytest.raises(MethodNotAllowed, match="not newer"):
            models.edit_attribute(attr["id"], {"value": "b", "timestamp": edited["timestamp"]})

    def test_soft_and_hard_delete(self, models: MispModels) -> None:
        """A soft-deleted attribute leaves the event view and the count; a hard delete removes the row."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}, {"type": "comment", "value": "b"}])
        first, second = event["Attribute"]
        models.delete_attribute(first["id"])
        view = models.get_event(event["id"])["Event"]
        assert [a["value"] for a in view["Attribute"]] == ["b"] and view["attribute_count"] == "1"
        assert models.get_event(event["id"], deleted=True)["Event"]["Attribute"][0]["deleted"] is True
        models.delete_attribute(second["uuid"], hard=True)
        with pytest.raises(NotFound):
            models.get_attribute(second["id"])


class TestTagsSightingsObjects:
    def test_global_tag_unpublishes_local_does_not(self, models: MispModels) -> None:
        """A global tag unpublishes the event and moves its timestamp; a local tag changes neither."""
        event = new_event(models, timestamp=OLD)
        models.publish_event(event["id"])
        models.attach_tag(event["uuid"], "local-one", local=True)
        local = models.get_event(event["id"])["Event"]
        assert (local["published"], local["timestamp"]) == (True, str(OLD))
        message = models.attach_tag(event["uuid"], "tlp:green")
        tagged = models.get_event(event["id"])["Event"]
        assert tagged["published"] is False and int(tagged["timestamp"]) > OLD
        assert f"({event['id']})" in message and {t["name"] for t in tagged["Tag"]} == {"local-one", "tlp:green"}

    def test_unknown_tag_is_created_case_insensitively(self, models: MispModels) -> None:
        """An unknown tag is created once; the same name in another case is the same tag."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}])
        models.attach_tag(event["Attribute"][0]["uuid"], "New-Tag")
        models.attach_tag(event["uuid"], "new-tag")
        view = models.get_event(event["id"])["Event"]
        assert view["Tag"][0]["id"] == view["Attribute"][0]["Tag"][0]["id"]

    def test_tag_errors(self, models: MispModels) -> None:
        """Tagging an unknown uuid or removing a tag that is not there fails as MISP does; tagging twice
        succeeds with MISP's "no changes had to be made" message."""
        event = new_event(models)
        with pytest.raises(MethodNotAllowed, match="Invalid Target"):
            models.attach_tag("00000000-0000-4000-8000-000000000000", "x")
        first = models.attach_tag(event["uuid"], "x")
        assert first == f"Global tag x({models.get_event(event['id'])['Event']['Tag'][0]['id']}) " \
                        f"successfully attached to Event({event['id']})."
        assert models.attach_tag(event["uuid"], "x") == (
            "Event already has the requested tag attached, no changes had to be made for tag x.")
        with pytest.raises(SaveFailed) as unknown_id:
            models.attach_tag(event["uuid"], "999")
        assert "Invalid Tag." in unknown_id.value.errors
        with pytest.raises(MethodNotAllowed, match="Invalid Tag"):
            models.remove_tag(event["uuid"], "tlp:none")
        other = new_event(models, Tag=["tlp:none"])
        with pytest.raises(MethodNotAllowed, match="not attached"):
            models.remove_tag(event["uuid"], "tlp:none")
        models.attach_tag(event["uuid"], "tlp:none")
        assert other["Tag"][0]["name"] == "tlp:none"
        assert "successfully removed" in models.remove_tag(event["uuid"], "TLP:NONE")

    def test_sightings_by_value_id_and_uuid(self, models: MispModels) -> None:
        """Sightings land by value (every match, any case), by attribute id and by uuid; no match is refused."""
        one = new_event(models, Attribute=[{"type": "domain", "value": "seen.example"}])
        two = new_event(models, Attribute=[{"type": "hostname", "value": "seen.example"}])
        models.add_sightings(values=["SEEN.Example"], source="by value")
        models.add_sightings(attribute_ref=one["Attribute"][0]["id"], sighting_type=1)
        last = models.add_sightings(attribute_ref=two["Attribute"][0]["uuid"])["Sighting"]
        assert last["attribute_id"] == two["Attribute"][0]["id"] and last["type"] == "0"
        assert len(models.get_event(one["id"])["Event"]["Attribute"][0]["Sighting"]) == 2
        with pytest.raises(ValueError, match="No valid attributes"):
            models.add_sightings(values=["never.example"])

    def test_search_sightings(self, models: MispModels) -> None:
        """Sighting searches filter by context, type and source."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}, {"type": "comment", "value": "b"}])
        models.add_sightings(attribute_ref=event["Attribute"][0]["id"], source="s1")
        models.add_sightings(attribute_ref=event["Attribute"][1]["id"], sighting_type=1)
        assert len(models.search_sightings({"id": event["id"]}, "event")) == 2
        by_type = models.search_sightings({"type": "1", "includeAttribute": True, "includeEvent": True}, None)
        assert [s["Sighting"]["Attribute"]["value"] for s in by_type] == ["b"]
        assert by_type[0]["Sighting"]["Event"]["id"] == event["id"]
        assert [s["Sighting"]["source"] for s in models.search_sightings({"source": "s1"}, None)] == ["s1"]

    def test_object_add_and_view(self, models: MispModels) -> None:
        """An object is stored with its attributes and viewed by id or uuid; a bad one fails whole."""
        event = new_event(models)
        obj = models.add_object(event["id"], {"Object": {"name": "file", "Attribute": [
            {"type": "filename", "value": "a.exe", "object_relation": "filename"}]}})["Object"]
        view = models.get_object(obj["uuid"])["Object"]
        assert view["Attribute"][0]["object_relation"] == "filename" and view["Event"]["id"] == event["id"]
        assert models.get_event(event["id"])["Event"]["attribute_count"] == "1"
        with pytest.raises(SaveFailed):
            models.add_object(event["id"], {"name": "file", "Attribute": [{"type": "md5", "value": "bad",
                                                                          "object_relation": "md5"}]})
        assert len(models.get_event(event["id"])["Event"]["Object"]) == 1


class TestSearch:
    @pytest.fixture()
    def three(self, models: MispModels) -> list[dict[str, Any]]:
        """Three events with distinct tags, dates, timestamps and attributes."""
        first = new_event(models, info="first", date="2020-01-01", timestamp=1000, Tag=[{"name": "red"}],
                          Attribute=[{"type": "ip-dst", "value": "10.0.0.1", "timestamp": 1000},
                                     {"type": "comment", "value": "x", "timestamp": 1000}])
        second = new_event(models, info="second", date="2021-06-01", timestamp=2000, threat_level_id=1,
                           Tag=[{"name": "blue"}],
                           Attribute=[{"type": "domain", "value": "b.example", "to_ids": 0, "timestamp": 2000}])
        third = new_event(models, info="third", date="2022-01-01", timestamp=3000, Tag=["red", "green"])
        models.publish_event(third["id"])
        return [first, second, third]

    @staticmethod
    def infos(models: MispModels, **filters: Any) -> list[str]:
        return [e["Event"]["info"] for e in models.search_events(filters)]

    def test_attribute_filters(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """value, type, category and to_ids pick events, and only the matching attributes come back."""
        found = models.search_events({"value": "10.0.0.%"})
        assert [e["Event"]["info"] for e in found] == ["first"] and len(found[0]["Event"]["Attribute"]) == 1
        assert self.infos(models, type=["domain", "md5"]) == ["second"]
        assert self.infos(models, category="Other") == ["first"]
        assert self.infos(models, to_ids=0) == ["first", "second"]

    def test_tags(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """tags take a string, a list with ! negation, or PyMISP's OR/AND/NOT query."""
        assert self.infos(models, tags="red") == ["first", "third"]
        assert self.infos(models, tags=["red", "!green"]) == ["first"]
        assert self.infos(models, tags={"AND": ["red", "green"]}) == ["third"]
        assert self.infos(models, tags={"NOT": ["red"]}) == ["second"]

    def test_event_filters(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """eventid, uuid, org, published, threat level and info filters select events."""
        first, second, third = three
        assert self.infos(models, eventid=[first["id"], third["uuid"]]) == ["first", "third"]
        assert self.infos(models, uuid=second["Attribute"][0]["uuid"]) == ["second"]
        assert self.infos(models, org="ORGNAME") == ["first", "second", "third"]
        assert self.infos(models, org="!1") == []
        assert self.infos(models, published=True) == ["third"]
        assert self.infos(models, threat_level_id=[1]) == ["second"]
        assert self.infos(models, eventinfo="sec%") == ["second"]

    def test_time_filters(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """timestamp (inclusive, or a range), last, publish_timestamp and the date bounds."""
        assert self.infos(models, timestamp=2000) == ["second", "third"]
        assert self.infos(models, timestamp=[1000, 2000]) == ["first", "second"]
        assert self.infos(models, last="1d") == ["third"]
        assert self.infos(models, publish_timestamp="1h") == ["third"]
        assert self.infos(models, date_from="2021-01-01", date_to="2021-12-31") == ["second"]
        assert self.infos(models, **{"from": "2021-06-01"}) == ["second", "third"]

    def test_order_and_paging(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """order sorts by timestamp either way; limit and page walk the result."""
        assert self.infos(models, order="Event.timestamp DESC") == ["third", "second", "first"]
        assert self.infos(models, order="timestamp asc", limit=2, page=2) == ["third"]

    def test_attribute_search(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """Attribute searches return attributes with their event and tags (event tags on request)."""
        found = models.search_attributes({"tags": "red", "includeEventTags": True, "includeEventUuid": True})
        assert [a["value"] for a in found["Attribute"]] == ["10.0.0.1", "x"]
        assert found["Attribute"][0]["event_uuid"] == three[0]["uuid"]
        assert found["Attribute"][0]["Tag"][0]["name"] == "red"
        assert [a["value"] for a in models.search_attributes({"timestamp": [1500, 2500]})["Attribute"]] == ["b.example"]

    def test_index_filters(self, models: MispModels, three: list[dict[str, Any]]) -> None:
        """events/index takes its own filter names and sorts newest first by default."""
        assert [e["info"] for e in models.index_events({})] == ["third", "second", "first"]
        assert [e["info"] for e in models.index_events({"attribute": "example"})] == ["second"]
        assert [e["info"] for e in models.index_events({"tag": "!red"})] == ["second"]
        assert [e["info"] for e in models.index_events({"threatlevel": "1|2", "sort": "date"})] == ["second"]
        minimal = models.index_events({"minimal": True})
        assert {e["id"] for e in minimal} == {three[0]["id"], three[1]["id"]} and "info" not in minimal[0]


class TestNotifications:
    def test_topics_and_actions(self, models: MispModels, notes: list[tuple[str, dict[str, Any]]]) -> None:
        """Each change sends MISP's topic with MISP's action, after it committed."""
        event = new_event(models, Attribute=[{"type": "comment", "value": "a"}])
        models.attach_tag(event["uuid"], "t")
        models.add_sightings(attribute_ref=event["Attribute"][0]["id"])
        models.publish_event(event["id"])
        models.delete_attribute(event["Attribute"][0]["id"])
        assert topics(notes) == [
            ("misp_json_event", "add"), ("misp_json_attribute", "add"),
            ("misp_json_event", "edit"), ("misp_json_tag", "attached to event"),
            ("misp_json_sighting", "add"),
            ("misp_json_event", "edit"), ("misp_json", "publish"),
            ("misp_json_attribute", "soft-delete"), ("misp_json_event", "edit")]
        published = dict(notes)["misp_json"]
        assert published["Event"]["published"] is True and published["Event"]["Tag"][0]["name"] == "t"

    def test_failed_change_sends_nothing(self, models: MispModels, notes: list[tuple[str, dict[str, Any]]]) -> None:
        """A change that fails validation sends no notification."""
        with pytest.raises(SaveFailed):
            models.add_event({"Event": {}})
        assert notes == []

    def test_failing_notifier_does_not_fail_the_change(self) -> None:
        """A notifier that raises is logged; the change is still saved."""
        def broken(topic: str, payload: dict[str, Any]) -> None:
            raise RuntimeError("publisher down")

        models = MispModels(notifier=broken)
        event = models.add_event({"info": "kept"})["Event"]
        assert models.event_exists(event["uuid"])
        models.close()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    """With a database file, events, tags and sightings are there after reopening it."""
    path = str(tmp_path / "misp.sqlite3")
    first = MispModels(path)
    event = first.add_event({"info": "durable", "Tag": ["kept"], "Attribute": [{"type": "comment", "value": "a"}]})
    first.add_sightings(attribute_ref=event["Event"]["Attribute"][0]["id"])
    first.close()
    second = MispModels(path)
    view = second.get_event(event["Event"]["uuid"])["Event"]
    assert view["info"] == "durable" and view["Tag"][0]["name"] == "kept"
    assert len(view["Attribute"][0]["Sighting"]) == 1
    second.close()


def test_reset_empties_everything(models: MispModels) -> None:
    """The dev-only reset empties events, attributes, objects, sightings and tags."""
    event = new_event(models, Tag=["t"], Attribute=[{"type": "comment", "value": "a"}])
    models.add_sightings(attribute_ref=event["Attribute"][0]["id"])
    models.reset()
    assert models.search_events({}) == [] and models.search_sightings({}, None) == []
    fresh = new_event(models, Tag=["t"])
    assert int(fresh["id"]) > int(event["id"]) and fresh["Tag"][0]["colour"]
