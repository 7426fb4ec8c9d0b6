"""The dev MISP server over raw HTTP: the legacy REST routes old clients use, routing quirks, errors, the wire."""
from __future__ import annotations

import http.client
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pymisp import PyMISP

from dxlmisp_devstack.fabric.pki import make_pki, make_server_cert
from dxlmisp_devstack.misp.exceptions import AUTH_FAILED, INVALID_JSON
from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.server import RunningServer, serve

ADMIN_KEY = "http-admin-key-" + "d" * 25


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One in-process dev MISP server for the module."""
    models = MispModels()
    with serve(models, admin_key=ADMIN_KEY) as running:
        yield running
    models.close()


@pytest.fixture()
def api(server: RunningServer) -> Iterator[requests.Session]:
    """A requests session that sends the admin key, on an emptied server."""
    server.models.reset()
    session = requests.Session()
    session.headers.update({"Authorization": ADMIN_KEY, "Accept": "application/json",
                            "Content-Type": "application/json"})
    yield session
    session.close()


def call(api: requests.Session, server: RunningServer, method: str, path: str, body: Any = None,
         status: int = 200) -> Any:
    """One request; checks the status and returns the JSON answer."""
    response = api.request(method, server.url + path, json=body, timeout=5)
    assert response.status_code == status, response.text
    return response.json()


class TestLegacyRoutes:
    def test_connect_like_old_pymisp(self, api: requests.Session, server: RunningServer) -> None:
        """Old PyMISP's start-up calls: getPyMISPVersion.json, getVersion.json, describeTypes.json."""
        assert "version" in call(api, server, "GET", "/servers/getPyMISPVersion.json")
        assert call(api, server, "GET", "/servers/getVersion.json")["version"].count(".") == 2
        assert "md5" in call(api, server, "GET", "/attributes/describeTypes.json")["result"]["types"]

    def test_event_resource_routes(self, api: requests.Session, server: RunningServer) -> None:
        """POST /events, GET, POST and PUT /events/{id}, DELETE /events/{id}."""
        event = call(api, server, "POST", "/events", {"Event": {"info": "legacy", "distribution": 0}})["Event"]
        assert call(api, server, "GET", f"/events/{event['id']}")["Event"]["uuid"] == event["uuid"]
        assert call(api, server, "POST", f"/events/{event['id']}", {"Event": {"info": "posted"}})["Event"]["info"] \
            == "posted"
        assert call(api, server, "PUT", f"/events/{event['uuid']}", {"info": "put"})["Event"]["info"] == "put"
        assert call(api, server, "DELETE", f"/events/{event['id']}")["message"] == "Event deleted."
        assert call(api, server, "GET", f"/events/{event['id']}", status=404)["name"] == "Invalid event"

    def test_attribute_resource_routes(self, api: requests.Session, server: RunningServer) -> None:
        """attributes/add/{id} with old PyMISP's list body, POST /attributes, GET/PUT/POST/DELETE /attributes/{id}."""
        event = call(api, server, "POST", "/events", {"Event": {"info": "attrs"}})["Event"]
        added = call(api, server, "POST", f"/attributes/add/{event['id']}",
                     [{"type": "comment", "category": "Internal reference", "value": "old", "comment": "c"}])
        assert added["Attribute"]["value1"] == "old" and added["Attribute"]["category"] == "Internal reference"
        second = call(api, server, "POST", "/attributes", {"event_id": event["id"], "type": "comment",
                                                           "value": "second"})["Attribute"]
        assert call(api, server, "GET", f"/attributes/{second['id']}")["Attribute"]["value"] == "second"
        assert call(api, server, "PUT", f"/attributes/{second['id']}", {"comment": "p"})["Attribute"]["comment"] == "p"
        assert call(api, server, "POST", f"/attributes/{second['uuid']}",
                    {"Attribute": {"comment": "q"}})["Attribute"]["comment"] == "q"
        assert call(api, server, "DELETE", f"/attributes/{second['id']}") == {"message": "Attribute deleted."}

    def test_tag_sighting_search_like_dxlmispservice_0_1_5(self, api: requests.Session,
                                                             server: RunningServer) -> None:
        """tags/attachTagToObject, sightings/add/ with uuid or values, events/restSearch/download with request."""
        event = call(api, server, "POST", "/events", {"Event": {"info": "sample"}})["Event"]
        attr = call(api, server, "POST", f"/attributes/add/{event['id']}",
                    [{"type": "comment", "value": "seen"}])["Attribute"]
        tagged = call(api, server, "POST", "/tags/attachTagToObject", {"uuid": attr["uuid"], "tag": "Sample tag"})
        assert tagged["saved"] is True and tagged["url"] == "/tags/attachTagToObject"
        by_uuid = call(api, server, "POST", "/sightings/add/", {"uuid": attr["uuid"], "source": "s", "type": "0"})
        assert by_uuid["Sighting"]["attribute_id"] == attr["id"] and by_uuid["Sighting"]["source"] == "s"
        assert call(api, server, "POST", "/sightings/add/", {"values": ["seen"]})["Sighting"]["type"] == "0"
        found = call(api, server, "POST", "/events/restSearch/download", {"request": {"eventid": event["id"]}})
        attribute = found["response"][0]["Event"]["Attribute"][0]
        assert attribute["Tag"][0]["name"] == "Sample tag" and len(attribute["Sighting"]) == 2


class TestRouting:
    def test_named_parameters(self, api: requests.Session, server: RunningServer) -> None:
        """CakePHP named parameters act as filters and options (sort, direction, limit, metadata)."""
        for info in ("a", "b", "c"):
            call(api, server, "POST", "/events/add", {"info": info})
        index = call(api, server, "GET", "/events/index/sort:info/direction:desc/limit:2")
        assert [e["info"] for e in index] == ["c", "b"]
        found = call(api, server, "POST", "/events/restSearch/json/limit:1/page:3", {"returnFormat": "json"})
        assert [e["Event"]["info"] for e in found["response"]] == ["c"]
        added = call(api, server, "POST", "/events/add/metadata:1", {"info": "m"})
        assert "Attribute" not in added["Event"]

    def test_x_misp_auth_header(self, server: RunningServer) -> None:
        """The key is accepted in X-MISP-AUTH as well as Authorization."""
        response = requests.get(f"{server.url}/users/view/me.json", headers={"X-MISP-AUTH": ADMIN_KEY}, timeout=5)
        assert response.status_code == 200 and response.json()["User"]["email"] == "admin@admin.test"

    def test_unknown_route_fails_loudly(self, api: requests.Session, server: RunningServer,
                                        caplog: pytest.LogCaptureFixture) -> None:
        """An unknown route is a logged 404 whose JSON names the route."""
        with caplog.at_level(logging.WARNING, logger="dxlmisp_devstack.misp"):
            body = call(api, server, "POST", "/galaxies/import", {}, status=404)
        assert "POST /galaxies/import" in body["name"] and body["url"] == "/galaxies/import"
        assert any("/galaxies/import" in record.getMessage() for record in caplog.records)

    def test_wrong_method(self, api: requests.Session, server: RunningServer) -> None:
        """A known path with a wrong method is a 405 with Allow; without a key it is the 403 first."""
        response = api.get(f"{server.url}/events/add", timeout=5)
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        assert response.json()["url"] == "/events/add"
        anonymous = requests.get(f"{server.url}/events/add", timeout=5)
        assert anonymous.status_code == 403 and anonymous.json()["name"] == AUTH_FAILED

    def test_invalid_json(self, api: requests.Session, server: RunningServer) -> None:
        """A body that is not JSON is MISP's 400."""
        response = api.post(f"{server.url}/events/add", data=b"{not json", timeout=5)
        assert response.status_code == 400 and response.json()["name"] == INVALID_JSON

    def test_head(self, api: requests.Session, server: RunningServer) -> None:
        """HEAD on a view answers 200 or 404 with no body."""
        event = call(api, server, "POST", "/events/add", {"info": "h"})["Event"]
        assert api.head(f"{server.url}/events/view/{event['uuid']}", timeout=5).status_code == 200
        missing = api.head(f"{server.url}/events/{int(event['id']) + 1000}", timeout=5)
        assert missing.status_code == 404 and missing.content == b""


class TestWire:
    def test_keep_alive_on_one_connection(self, server: RunningServer) -> None:
        """Several requests travel over one kept-alive HTTP/1.1 connection."""
        connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
        try:
            sockets = []
            for _ in range(3):
                connection.request("GET", "/servers/getVersion", headers={"Authorization": ADMIN_KEY})
                response = connection.getresponse()
                assert response.status == 200 and response.version == 11
                response.read()
                sockets.append(connection.sock)
            assert sockets[0] is not None and all(s is sockets[0] for s in sockets)
        finally:
            connection.close()

    def test_nagle_is_off_on_accepted_sockets(self, server: RunningServer) -> None:
        """The server turns TCP_NODELAY on for the connections it accepts."""
        with socket.create_connection((server.host, server.port), timeout=5) as client:
            client.sendall(b"GET /servers/getVersion HTTP/1.1\r\nHost: x\r\nAuthorization: " +
                           ADMIN_KEY.encode() + b"\r\n\r\n")
            assert client.recv(12).startswith(b"HTTP/1.1 200")
            accepted = list(server._server._open.values())  # the server-side ends of the open connections
            assert accepted and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted)


def test_https_with_generated_certificate(tmp_path: Path) -> None:
    """With a certificate it speaks HTTPS that PyMISP verifies; a silent client does not stall new connections."""
    pki = make_pki(tmp_path, ["service"])
    cert, key = make_server_cert(pki, "misp")
    models = MispModels()
    with serve(models, admin_key=ADMIN_KEY, tls=(str(cert), str(key))) as running:
        assert running.url.startswith("https://")
        misp = PyMISP(running.url, ADMIN_KEY, ssl=str(pki.ca_cert))
        assert misp.add_event({"info": "over tls"})["Event"]["info"] == "over tls"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{running.url}/servers/getVersion", headers={"Authorization": ADMIN_KEY}, timeout=5)
        with socket.create_connection((running.host, running.port), timeout=5):  # connects, never says hello
            fresh = requests.get(f"{running.url}/servers/getVersion", headers={"Authorization": ADMIN_KEY},
                                 verify=str(pki.ca_cert), timeout=5)  # a new connection, while that one waits
            assert fresh.status_code == 200
    models.close()
