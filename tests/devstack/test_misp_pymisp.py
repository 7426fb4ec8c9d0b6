"""Unmodified PyMISP against the in-process dev MISP server: every endpoint, the error paths, the read-only key."""
from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from pymisp import MISPEvent, MISPObject, MISPSighting, PyMISP
from pymisp.exceptions import PyMISPError

from dxlmisp_devstack.misp.exceptions import AUTH_FAILED, PERMISSION_DENIED
from dxlmisp_devstack.misp.identity import PYMISP_VERSION
from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import RunningServer, serve

ADMIN_KEY = "pymisp-admin-key-" + "b" * 23
READONLY_KEY = "pymisp-readonly-key-" + "c" * 20


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One in-process dev MISP server with both keys for the module."""
    models = MispModels()
    with serve(models, admin_key=ADMIN_KEY, readonly_key=READONLY_KEY) as running:
        yield running
    models.close()


@pytest.fixture(scope="module")
def misp(server: RunningServer) -> PyMISP:
    """PyMISP on the admin key."""
    return PyMISP(server.url, ADMIN_KEY)


@pytest.fixture(scope="module")
def readonly(server: RunningServer) -> PyMISP:
    """PyMISP on the read-only key."""
    return PyMISP(server.url, READONLY_KEY)


@pytest.fixture(autouse=True)
def clean(server: RunningServer) -> None:
    """Each test starts on an empty server."""
    server.models.reset()


def new_event(misp: PyMISP, info: str = "pymisp", **fields: Any) -> MISPEvent:
    """Add an event through PyMISP and return it pythonified."""
    event = MISPEvent()
    event.from_dict(info=info, **fields)
    return misp.add_event(event, pythonify=True)


def refused(answer: Any) -> tuple[int, dict[str, Any]]:
    """The (status, MISP error body) PyMISP hands back for a 4xx."""
    assert isinstance(answer, dict) and "errors" in answer, answer
    return answer["errors"]


class TestConnect:
    def test_pymisp_constructs_and_sees_the_server(self, misp: PyMISP) -> None:
        """PyMISP builds against the server: version, recommended PyMISP, user, remote describeTypes."""
        assert misp.recommended_pymisp_version == {"version": PYMISP_VERSION}
        local = json.loads(resources.files("pymisp").joinpath("data", "describeTypes.json").read_text())
        assert misp.describe_types == local["result"]
        user, role, _ = misp.get_user(pythonify=True, expanded=True)
        assert user.email == "admin@admin.test" and role.perm_add is True

    def test_wrong_key_fails_construction(self, server: RunningServer) -> None:
        """A wrong key makes PyMISP's constructor fail on MISP's 403 authentication error."""
        with pytest.raises(PyMISPError, match="Authentication failed"):
            PyMISP(server.url, "not-a-key")

    def test_readonly_user(self, readonly: PyMISP) -> None:
        """The read-only key belongs to a user whose role may not add."""
        user, role, _ = readonly.get_user(pythonify=True, expanded=True)
        assert user.email == "readonly@admin.test" and role.perm_add is False


class TestEvents:
    def test_lifecycle(self, misp: PyMISP) -> None:
        """add, exists (HEAD), view by id and uuid, edit, publish, unpublish, publish with alert, delete."""
        event = new_event(misp, Attribute=[{"type": "ip-src", "value": "192.0.2.1"}])
        assert misp.event_exists(event.id) and misp.event_exists(event.uuid) and not misp.event_exists(987654)
        assert misp.get_event(event.uuid, pythonify=True).id == event.id
        event.info = "edited"
        assert misp.update_event(event, pythonify=True).info == "edited"
        assert misp.publish(event)["message"] == "Event published without alerts"
        assert misp.get_event(event.id, pythonify=True).published is True
        assert misp.unpublish(event.id)["message"] == "Event unpublished."
        assert misp.publish(event.uuid, alert=True)["name"] == "Alert"
        assert misp.get_event(event.id, pythonify=True).published is True
        assert misp.delete_event(event.id)["message"] == "Event deleted."
        status, body = refused(misp.get_event(event.id))
        assert (status, body["name"], body["url"]) == (404, "Invalid event", f"/events/view/{event.id}")

    def test_metadata_and_deleted_options(self, misp: PyMISP) -> None:
        """add_event(metadata=True) leaves attributes out; get_event(deleted=True) shows soft-deleted ones."""
        answer = misp.add_event({"info": "meta", "Attribute": [{"type": "comment", "value": "a"}]}, metadata=True)
        assert "Attribute" not in answer["Event"] and answer["Event"]["attribute_count"] == "1"
        attribute = misp.get_event(answer["Event"]["id"])["Event"]["Attribute"][0]
        misp.delete_attribute(attribute["id"])
        assert misp.get_event(answer["Event"]["id"])["Event"]["Attribute"] == []
        assert misp.get_event(answer["Event"]["id"], deleted=True)["Event"]["Attribute"][0]["deleted"] is True

    def test_errors(self, misp: PyMISP) -> None:
        """A failed validation is a 403 save-fail; a duplicate uuid is MISP's 404; edit/delete of unknowns fail."""
        status, body = refused(misp.add_event({"distribution": 1}))
        assert (status, body["saved"], body["name"]) == (403, False, "Could not add Event")
        event = new_event(misp)
        status, body = refused(misp.add_event({"info": "twin", "uuid": event.uuid}))
        assert status == 404 and body["name"].startswith("Event already exists")
        status, _ = refused(misp.update_event({"info": "x"}, 987654))
        assert status == 404
        status, body = refused(misp.delete_event(987654))
        assert (status, body["errors"]) == (403, "Event was not deleted.")


class TestAttributes:
    def test_lifecycle(self, misp: PyMISP) -> None:
        """add, exists, view by uuid, edit, soft delete, hard delete."""
        event = new_event(misp)
        attr = misp.add_attribute(event, {"type": "domain", "value": "a.example"}, pythonify=True)
        assert misp.attribute_exists(attr.uuid) and not misp.attribute_exists(987654)
        assert misp.get_attribute(attr.uuid, pythonify=True).value == "a.example"
        attr.comment = "noted"
        assert misp.update_attribute(attr, pythonify=True).comment == "noted"
        assert misp.delete_attribute(attr.id) == {"message": "Attribute deleted."}
        assert misp.delete_attribute(attr.id, hard=True) == {"message": "Attribute deleted."}
        assert refused(misp.get_attribute(attr.id))[0] == 404

    def test_many_at_once(self, misp: PyMISP) -> None:
        """A list of attributes is added at once; a failing one is reported beside the added ones."""
        event = new_event(misp, Attribute=[{"type": "comment", "value": "dup"}])
        answer = misp.add_attribute(event.id, [{"type": "comment", "value": "x"}, {"type": "comment", "value": "y"},
                                               {"type": "comment", "value": "dup"}], pythonify=True)
        assert [a.value for a in answer["attributes"]] == ["x", "y"]
        assert answer["errors"]["attribute_2"]["value"] == ["A similar attribute already exists for this event."]

    def test_duplicate_and_unknown(self, misp: PyMISP) -> None:
        """A duplicate is a 403 with MISP's value error; an unknown event or attribute is a 404."""
        event = new_event(misp, Attribute=[{"type": "domain", "value": "dup.example"}])
        status, body = refused(misp.add_attribute(event.id, {"type": "domain", "value": "dup.example"}))
        assert (status, body["errors"]) == (403, {"value": ["A similar attribute already exists for this event."]})
        assert refused(misp.add_attribute(987654, {"type": "comment", "value": "x"}))[0] == 404
        assert refused(misp.update_attribute({"comment": "x"}, 987654))[0] == 404
        assert refused(misp.delete_attribute(987654))[0] == 404


class TestTagsSightingsObjects:
    def test_tag_and_untag(self, misp: PyMISP) -> None:
        """tag() creates an unknown tag and attaches it; untag() removes it; an unknown uuid is MISP's 405."""
        event = new_event(misp, Attribute=[{"type": "comment", "value": "a"}])
        answer = misp.tag(event, "brand-new:tag")
        assert answer["saved"] is True and f"({event.id})" in answer["message"]
        assert misp.get_event(event.id, pythonify=True).tags[0].name == "brand-new:tag"
        assert "successfully removed" in misp.untag(event.uuid, "brand-new:tag")["message"]
        misp.tag(event.attributes[0].uuid, "attr-tag", local=True)
        assert misp.get_attribute(event.attributes[0].id, pythonify=True).tags[0].local is True
        assert refused(misp.tag("00000000-0000-4000-8000-000000000000", "x"))[0] == 405

    def test_sightings(self, misp: PyMISP) -> None:
        """Sightings by value, by attribute id and by uuid, then found by sighting searches."""
        event = new_event(misp, Attribute=[{"type": "domain", "value": "s.example"}])
        attr = event.attributes[0]
        by_value = misp.add_sighting({"value": "s.example"}, pythonify=True)
        assert isinstance(by_value, MISPSighting) and int(by_value.attribute_id) == attr.id
        sighting = MISPSighting()
        sighting.from_dict(source="by id", type="1")
        assert misp.add_sighting(sighting, attr.id, pythonify=True).source == "by id"
        assert misp.add_sighting({"source": "by uuid"}, attr.uuid, pythonify=True).source == "by uuid"
        found = misp.search_sightings(context="attribute", context_id=attr.id, include_attribute=True,
                                      pythonify=True)
        assert sorted(entry["sighting"].source for entry in found) == ["", "by id", "by uuid"]
        assert misp.search_sightings(type_sighting="1", pythonify=True)[0]["sighting"].source == "by id"
        assert misp.add_sighting({"value": "never.example"})["message"].startswith("Could not add the Sighting")

    def test_objects(self, misp: PyMISP) -> None:
        """add_object stores an object; get_object and object_exists find it by id or uuid."""
        event = new_event(misp)
        obj = MISPObject("domain-ip")
        obj.add_attribute("domain", value="o.example")
        added = misp.add_object(event, obj, pythonify=True)
        assert misp.object_exists(added.uuid) and not misp.object_exists(987654)
        assert misp.get_object(added.id, pythonify=True).attributes[0].value == "o.example"
        assert refused(misp.get_object(987654))[0] == 404
        assert refused(misp.add_object(987654, obj))[0] == 404


class TestSearch:
    def test_events_search(self, misp: PyMISP) -> None:
        """search() on events with tags, negation, time, publication, to_ids, order and paging."""
        first = new_event(misp, info="first", timestamp=1000, Tag=[{"name": "keep"}],
                          Attribute=[{"type": "ip-dst", "value": "198.51.100.1", "to_ids": True}])
        second = new_event(misp, info="second", timestamp=2000, date="2021-02-03", Tag=[{"name": "drop"}],
                           Attribute=[{"type": "comment", "value": "c", "to_ids": False}])
        misp.publish(second)

        def infos(**kwargs: Any) -> list[str]:
            return [e.info for e in misp.search(controller="events", pythonify=True, **kwargs)]

        assert infos(tags=["keep"]) == ["first"] and infos(tags=["!keep"]) == ["second"]
        assert infos(tags=misp.build_complex_query(or_parameters=["keep", "drop"])) == ["first", "second"]
        assert infos(timestamp=1500) == ["second"] and infos(published=True) == ["second"]
        assert infos(to_ids=1) == ["first"] and infos(eventid=first.uuid) == ["first"]
        assert infos(date_from="2021-02-01", date_to="2021-02-28") == ["second"]
        assert infos(publish_timestamp="1d") == ["second"] and infos(last="1d") == ["second"]
        assert infos(order="Event.timestamp DESC", limit=1, page=1) == ["second"]
        assert infos(order="Event.timestamp ASC", limit=1, page=2) == ["second"]
        assert [a.value for a in misp.search(controller="attributes", type_attribute="ip-dst", pythonify=True)] == \
            ["198.51.100.1"]
        assert [e.info for e in misp.search_index(sort="timestamp", desc=True, pythonify=True)] == ["second", "first"]
        assert [e.info for e in misp.search_index(published=False, pythonify=True)] == ["first"]

    def test_objects_search_pages_an_events_objects(self, misp: PyMISP) -> None:
        """objects/restSearch gives an event's live objects with their attributes, by page, in PyMISP's shape."""
        objects = [{"name": "domain-ip", "comment": f"o{n}", "Attribute": [
            {"type": "domain", "object_relation": "domain", "value": f"d{n}.example"}]} for n in range(3)]
        event = new_event(misp, Object=objects)
        new_event(misp, "other", Object=[{"name": "domain-ip", "Attribute": [
            {"type": "domain", "object_relation": "domain", "value": "other.example"}]}])

        def page(n: int) -> list[tuple[str, list[str]]]:
            found = misp.search(controller="objects", eventid=event.id, limit=2, page=n, pythonify=True)
            return [(o.comment, [a.value for a in o.attributes]) for o in found]

        assert page(1) == [("o0", ["d0.example"]), ("o1", ["d1.example"])] and page(2) == [("o2", ["d2.example"])]
        assert [o.comment for o in misp.search(controller="objects", object_name="domain-ip", pythonify=True)] == \
            ["o0", "o1", "o2", ""]

    def test_only_json(self, misp: PyMISP) -> None:
        """restSearch answers json only; another returnFormat is a 400 that says so."""
        answer = misp.search(controller="attributes", return_format="csv")
        assert isinstance(answer, dict) and answer["errors"][0] == 400
        assert "json only" in answer["errors"][1]["message"]


class TestReadOnly:
    def test_reads_pass(self, misp: PyMISP, readonly: PyMISP) -> None:
        """The read-only key views, searches and lists."""
        event = new_event(misp, Attribute=[{"type": "comment", "value": "r"}])
        assert readonly.get_event(event.id, pythonify=True).uuid == event.uuid
        assert len(readonly.search(controller="events", value="r")) == 1
        assert len(readonly.search_index()) == 1 and readonly.search_sightings() == []

    def test_writes_fail_with_misp_permission_error(self, misp: PyMISP, readonly: PyMISP) -> None:
        """Every write by the read-only key is MISP's 405 permission error, and changes nothing."""
        event = new_event(misp, Attribute=[{"type": "comment", "value": "w"}])
        attempts = [
            readonly.add_event({"info": "no"}), readonly.update_event({"info": "no"}, event.id),
            readonly.delete_event(event.id), readonly.publish(event.id), readonly.unpublish(event.id),
            readonly.publish(event.id, alert=True),
            readonly.add_attribute(event.id, {"type": "comment", "value": "no"}),
            readonly.update_attribute({"comment": "no"}, event.attributes[0].id),
            readonly.delete_attribute(event.attributes[0].id), readonly.tag(event.uuid, "no"),
            readonly.untag(event.uuid, "no"), readonly.add_sighting({"value": "w"}),
            readonly.add_object(event.id, MISPObject("file")),
            readonly.direct_call("devstack/reset", {}),
        ]
        for answer in attempts:
            assert refused(answer) == (405, {"name": PERMISSION_DENIED, "message": PERMISSION_DENIED,
                                             "url": refused(answer)[1]["url"]})
        after = misp.get_event(event.id, pythonify=True)
        assert (after.info, after.tags, after.attributes[0].comment) == ("pymisp", [], "")


def test_wrong_key_error_body(server: RunningServer) -> None:
    """A missing or wrong key answers MISP's 403 authentication body, whatever the endpoint."""
    import requests

    for headers in ({}, {"Authorization": "wrong"}):
        response = requests.get(f"{server.url}/events/index", headers=headers, timeout=5)
        assert response.status_code == 403
        assert response.json() == {"name": AUTH_FAILED, "message": AUTH_FAILED, "url": "/events/index"}
