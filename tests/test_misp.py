"""MispConnection: lazy, shared, tuned PyMISP; MISP's answers mapped to service errors (real HTTP stub)."""
from __future__ import annotations

import threading

import pytest

from dxlmispservice.errors import MispRefused, MispUnavailable
from dxlmispservice.misp import MispConnection, TunedPyMISP, build_pymisp
from dxlmispservice.transport import pool_size
from tests.mispstub import KEY, USER, MispStub, settings_for


class CountingFactory:
    def __init__(self, result: object = None, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures
        self.result = result if result is not None else object()

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"stub down, key {KEY}")
        return self.result


def test_constructor_does_not_build() -> None:
    """Creating a MispConnection does not build PyMISP (no network I/O)."""
    factory = CountingFactory()
    MispConnection(settings_for("https://misp.test"), factory=factory)
    assert factory.calls == 0


def test_builds_once_and_shares() -> None:
    """The first call builds PyMISP; later calls reuse the same instance."""
    factory = CountingFactory()
    client = MispConnection(settings_for("https://misp.test"), factory=factory)
    seen = [client.call(lambda m: m), client.call(lambda m: m)]
    assert factory.calls == 1
    assert seen == [factory.result, factory.result]


def test_concurrent_first_calls_build_once() -> None:
    """Threads calling at once while nothing is built still build PyMISP only once."""
    gate = threading.Event()

    class Slow(CountingFactory):
        def __call__(self) -> object:
            gate.wait(5)
            return super().__call__()

    factory = Slow()
    client = MispConnection(settings_for("https://misp.test"), factory=factory)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(client.call(lambda m: m))) for _ in range(6)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert factory.calls == 1
    assert results == [factory.result] * 6


def test_failed_build_is_unavailable_then_retried() -> None:
    """A failed build answers MispUnavailable without the key; the next call builds again and works."""
    factory = CountingFactory(failures=1)
    client = MispConnection(settings_for("https://misp.test"), factory=factory)
    with pytest.raises(MispUnavailable) as caught:
        client.call(lambda m: m)
    assert KEY not in str(caught.value) and "stub down" in str(caught.value)
    assert client.call(lambda m: m) is factory.result
    assert factory.calls == 2


def test_build_against_stub_tunes_session(stub: MispStub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real build ignores *_PROXY variables from its first request and pools one connection per thread."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = settings_for(stub.url, sections="[IncomingMessagePool]\nthreadCount=17\n")
    pymisp = build_pymisp(settings)
    assert isinstance(pymisp, TunedPyMISP)
    assert pymisp.session.trust_env is False
    assert pymisp.session.get_adapter(stub.url)._pool_maxsize == pool_size(settings) == 19
    assert "users/view/me" in stub.requests


def test_build_passes_tls_timeout_and_proxies(stub: MispStub) -> None:
    """verifyCertificate, clientCertificate/clientKey, requestTimeout and [Proxies] reach PyMISP."""
    settings = settings_for(stub.url, extra="verifyCertificate=false\nrequestTimeout=7.5\n",
                            sections="[Proxies]\nhttps=http://proxy.test:3128\nno_proxy=127.0.0.1\n")
    pymisp = build_pymisp(settings)
    assert pymisp.ssl is False
    assert pymisp.timeout == 7.5
    assert pymisp.proxies == {"https": "http://proxy.test:3128", "no_proxy": "127.0.0.1"}
    assert pymisp.session.trust_env is True


def test_client_cert_and_bundle_reach_pymisp(stub: MispStub, tmp_path) -> None:
    """A cert bundle becomes PyMISP's ssl value and the certificate and key its cert pair."""
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    settings = settings_for(stub.url, extra=f"verifyCertBundle={tmp_path / 'ca.pem'}\n"
                            f"clientCertificate={tmp_path / 'client.pem'}\nclientKey={tmp_path / 'client.key'}")
    pymisp = build_pymisp(settings)
    assert pymisp.ssl == str(tmp_path / "ca.pem")
    assert pymisp.cert == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))


def test_misp_down_then_back(stub: MispStub) -> None:
    """While MISP answers 503 calls raise MispUnavailable; once it is back the same client serves."""
    stub.down = True
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispUnavailable):
        client.call(lambda m: m.get_user())
    assert not client.built
    stub.down = False
    assert client.call(lambda m: m.get_user()) == USER


def test_refused_json_maps_status_and_body(stub: MispStub) -> None:
    """A 404 with MISP's JSON raises MispRefused carrying the status, the body and MISP's message."""
    body = {"name": "Invalid event", "message": "Invalid event", "url": "/events/view/99"}
    stub.route("events/view/99", 404, body)
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispRefused) as caught:
        client.call(lambda m: m.get_event(99))
    assert caught.value.status == 404
    assert caught.value.to_payload() == body
    assert "404" in caught.value.message and "Invalid event" in caught.value.message


def test_refused_message_includes_field_errors(stub: MispStub) -> None:
    """MISP's save-fail shape: the message names the failing field and MISP's words for it."""
    body = {"saved": False, "name": "Could not add Attribute", "message": "Could not add Attribute",
            "url": "/attributes/add", "errors": {"value": ["A similar attribute already exists."]}}
    stub.route("attributes/add/1", 403, body)
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispRefused) as caught:
        client.call(lambda m: m.add_attribute(1, {"type": "ip-dst", "value": "10.0.0.1"}))
    assert "value: A similar attribute already exists." in caught.value.message
    assert caught.value.payload == body


def test_refused_without_json(stub: MispStub) -> None:
    """A 4xx whose body is not JSON is still a refusal with its status, and the default error payload."""
    stub.route("events/view/5", 405, b"<html>Method Not Allowed</html>", "text/html")
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispRefused) as caught:
        client.call(lambda m: m.get_event(5))
    assert caught.value.status == 405
    assert caught.value.to_payload()["code"] == MispRefused.code
    assert "Method Not Allowed" in caught.value.message


def test_server_error_is_unavailable(stub: MispStub) -> None:
    """A 5xx from MISP raises MispUnavailable."""
    stub.route("events/view/7", 500, b"boom", "text/plain")
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispUnavailable) as caught:
        client.call(lambda m: m.get_event(7))
    assert "boom" in caught.value.message


def test_connection_refused_after_build_is_unavailable(stub: MispStub) -> None:
    """MISP going away after the build raises MispUnavailable naming MISP's URL."""
    client = MispConnection(settings_for(stub.url))
    client.call(lambda m: m.get_user())
    stub.close()
    with pytest.raises(MispUnavailable) as caught:
        client.call(lambda m: m.get_user())
    assert stub.url in caught.value.message


def test_timeout_is_unavailable(stub: MispStub) -> None:
    """A MISP that does not answer within requestTimeout raises MispUnavailable."""
    stub.route("events/view/8", 0, b"")
    client = MispConnection(settings_for(stub.url, extra="requestTimeout=0.3"))
    client.call(lambda m: m.get_user())
    with pytest.raises(MispUnavailable) as caught:
        client.call(lambda m: m.get_event(8))
    assert "Timeout" in caught.value.message


def test_answer_cut_short_is_unavailable(stub: MispStub) -> None:
    """A connection that closes before the whole answer arrived raises MispUnavailable."""
    stub.route("events/view/6", -1, b'{"Event": {"id": "6"')
    client = MispConnection(settings_for(stub.url))
    client.call(lambda m: m.get_user())
    with pytest.raises(MispUnavailable):
        client.call(lambda m: m.get_event(6))


def test_key_never_in_messages(stub: MispStub) -> None:
    """MISP echoing the key in an error never puts the key in the raised message."""
    stub.route("events/view/3", 403, {"name": "Forbidden", "message": f"key {KEY} may not read this"})
    stub.route("events/view/4", 500, f"trace with {KEY}".encode(), "text/plain")
    client = MispConnection(settings_for(stub.url))
    for event_id, error in ((3, MispRefused), (4, MispUnavailable)):
        with pytest.raises(error) as caught:
            client.call(lambda m, e=event_id: m.get_event(e))
        assert KEY not in caught.value.message and KEY not in str(caught.value)
        assert "<redacted>" in caught.value.message


def test_wrong_key_build_failure_is_refused_and_hides_key(stub: MispStub) -> None:
    """A key MISP rejects while PyMISP builds is MispRefused with MISP's 403 JSON, without the key."""
    wrong = "wrongKey0123456789abcdefghijklmnopqrstu"
    client = MispConnection(settings_for(stub.url, key=wrong))
    with pytest.raises(MispRefused) as caught:
        client.call(lambda m: m)
    assert wrong not in caught.value.message
    assert caught.value.status == 403
    assert caught.value.payload["message"] == "Authentication failed."
    assert "HTTP 403" in caught.value.message and not client.built


def test_get_user_refusal_after_build_is_not_a_build_refusal(stub: MispStub) -> None:
    """Once built, a refused get_user is an ordinary MispRefused and the client stays built."""
    stub.route("users/view/7", 404, {"name": "Invalid user", "message": "Invalid user", "url": "/users/view/7"})
    client = MispConnection(settings_for(stub.url))
    with pytest.raises(MispRefused) as caught:
        client.call(lambda m: m.get_user(7))
    assert caught.value.status == 404 and client.built


def test_plain_results_pass_through() -> None:
    """Results with no sign of a refusal (an empty 'errors' included) are returned as they are."""
    client = MispConnection(settings_for("https://misp.test"), factory=CountingFactory())
    for result in ({"errors": [], "saved": True}, {"message": "Event deleted."}, [{"Event": {}}], "text"):
        assert client.call(lambda m: result) is result


@pytest.mark.parametrize("result", [
    {"errors": ["not", "a", "tuple"], "saved": True},
    {"saved": False, "name": "Could not add Attribute", "message": "Could not add Attribute"},
    {"success": False, "message": "nothing done"},
    {"message": "Could not add the Sighting. Reason: No valid attributes found."},
    {"name": "could not tag", "url": "/tags/attachTagToObject"},
])
def test_refusals_answered_with_2xx_are_refusals(result: dict) -> None:
    """A 2xx answer that says MISP did not do it is MispRefused carrying MISP's JSON, never a success."""
    client = MispConnection(settings_for("https://misp.test"), factory=CountingFactory())
    with pytest.raises(MispRefused) as caught:
        client.call(lambda m: result)
    assert caught.value.payload == result and caught.value.status == 200


def test_pymisp_failing_on_a_refusal_it_read_as_an_answer_is_misp_refused() -> None:
    """tags on a MISP that answers 404 (PyMISP then reads answer["Tag"] from MISP's error and fails) is
    misp_refused with MISP's status and JSON, not an internal error."""
    from dxlmisp_devstack.misp.models import MispModels
    from dxlmisp_devstack.misp.server import serve

    with serve(MispModels(), admin_key=KEY) as server:
        connection = MispConnection(settings_for(server.url))
        connection.call(lambda pymisp: pymisp.misp_instance_version)
        with pytest.raises(MispRefused) as refused:
            connection.call(lambda pymisp: pymisp.warninglists())
    assert refused.value.status == 404 and "HTTP 404" in refused.value.message


def test_a_long_refusal_is_cut_after_the_key_is_cut_out() -> None:
    """MISP's text holding the key past the quoting limit leaves no part of the key in the message."""
    connection = MispConnection(settings_for("https://misp.test"), factory=CountingFactory())
    refused = connection._refused(403, {"message": "y" * 480 + KEY})
    assert KEY[:8] not in refused.message and "<redacted>" in refused.message
