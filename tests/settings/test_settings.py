"""Settings.from_parser: every key, its default, and errors that name the section and key."""
from __future__ import annotations

import os
from dataclasses import replace
from configparser import ConfigParser
from pathlib import Path

import pytest

from dxlmispservice.errors import ConfigError, InvalidArguments
from dxlmispservice.settings import FeedSettings, FormatSettings, PoolSettings, Settings, ZmqSettings

KEY = "settingsKey0123456789abcdefghijklmnopqrs"
PACKAGE_CONFIG = Path(__file__).resolve().parents[2] / "dxlmispservice" / "_config" / "app"


def parse(text: str, environ: dict[str, str] | None = None, base_dir: str | None = None) -> Settings:
    parser = ConfigParser()
    parser.read_string(text)
    return Settings.from_parser(parser, environ=environ or {}, base_dir=base_dir)


def general(extra: str = "", host: str = "misp.example") -> str:
    return f"[General]\nhost={host}\napiKey={KEY}\n{extra}\n"


def config_error(text: str, environ: dict[str, str] | None = None, base_dir: str | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text, environ, base_dir)
    return caught.value.message


def test_defaults() -> None:
    """With only host and apiKey, every other setting takes its documented default."""
    s = parse(general())
    assert s.misp_url == "https://misp.example/"
    assert s.api_key == KEY
    assert (s.api_names, s.service_unique_id) == ((), "")
    assert (s.verify_certificate, s.verify_cert_bundle, s.client_certificate, s.client_key) == (
        True, None, None, None)
    assert (s.timeout, dict(s.proxies), s.max_response_size) == (30.0, {}, 1_000_000)
    assert s.incoming_pool == s.callback_pool == PoolSettings(10, 1000)
    assert (s.zeromq, s.feed) == (None, None)


def test_every_general_key(tmp_path: Path) -> None:
    """Each [General] key reaches its Settings field."""
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    s = parse(general(
        "apiPort=8443\nverifyCertificate=no\nverifyCertBundle=ca.pem\nclientCertificate=client.pem\n"
        "clientKey=client.key\napiNames=new_event, search ,,new_event,get_event\nserviceUniqueId=east\n"
        "requestTimeout=2.5\nmaxResponseSize=2048\nzeroMqNotificationTopics=misp_json_event,misp_json\n"
        "zeroMqHost=zmq.example\nzeroMqPort=50001\nzeroMqUsername=sub\nzeroMqPassword=secret"),
        base_dir=str(tmp_path))
    assert s.misp_url == "https://misp.example:8443/"
    assert s.verify_certificate is False
    assert s.verify_cert_bundle == str(tmp_path / "ca.pem")
    assert (s.client_certificate, s.client_key) == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    assert s.api_names == ("new_event", "search", "get_event")
    assert (s.service_unique_id, s.timeout, s.max_response_size) == ("east", 2.5, 2048)
    assert s.zeromq == ZmqSettings(topics=("misp_json_event", "misp_json"), host="zmq.example", port=50001,
                                   username="sub", password="secret")


def test_pools_and_proxies() -> None:
    """[IncomingMessagePool], [MessageCallbackPool] and [Proxies] are read."""
    s = parse(general() + "[IncomingMessagePool]\nthreadCount=4\nqueueSize=50\n"
              "[MessageCallbackPool]\nthreadCount=2\nqueueSize=7\n"
              "[Proxies]\nhttps=http://user:pw@proxy.example:3128\nhttp=socks5h://proxy.example:1080\n"
              "no_proxy=localhost\n")
    assert s.incoming_pool == PoolSettings(4, 50)
    assert s.callback_pool == PoolSettings(2, 7)
    assert dict(s.proxies) == {"https": "http://user:pw@proxy.example:3128",
                               "http": "socks5h://proxy.example:1080", "no_proxy": "localhost"}


def test_feed_keys(tmp_path: Path) -> None:
    """[Feed] with every key; stateFile relative to the config directory."""
    s = parse(general() + "[Feed]\nenabled=true\ninterval=2\nlookback=2024-01-31\ntags=tlp:green, tlp:white\n"
              "notTags=internal\norgs=ORGNAME,7\npublishedOnly=yes\nthreatLevels=1,2\npageSize=25\n"
              "stateFile=state/feed.json\n", base_dir=str(tmp_path))
    assert s.feed == FeedSettings(enabled=True, interval=2.0, lookback="2024-01-31",
                                  tags=("tlp:green", "tlp:white"), not_tags=("internal",),
                                  orgs=("ORGNAME", "7"), published_only=True, threat_levels=(1, 2),
                                  page_size=25, state_file=str(tmp_path / "state" / "feed.json"))


def test_feed_defaults_and_disabled(tmp_path: Path) -> None:
    """[Feed] enabled=false gives None; enabled alone gives the defaults, state file in the config dir."""
    assert parse(general() + "[Feed]\nenabled=false\ninterval=bad\n").feed is None
    feed = parse(general() + "[Feed]\nenabled=on\n", base_dir=str(tmp_path)).feed
    assert feed is not None
    assert (feed.interval, feed.lookback, feed.page_size) == (60.0, "1d", 100)
    assert feed.state_file == str(tmp_path / "misp-feed-state.json")


@pytest.mark.parametrize("host,port,url", [
    ("https://misp.example:8443/misp/", None, "https://misp.example:8443/misp/"),
    ("https://misp.example:8443/misp", "8443", "https://misp.example:8443/misp/"),
    ("http://127.0.0.1:8080", None, "http://127.0.0.1:8080/"),
    ("http://misp.example", None, "http://misp.example/"),
    ("misp.example:9443", None, "https://misp.example:9443/"),
    ("misp.example", "443", "https://misp.example/"),
    ("10.1.2.3", "8443", "https://10.1.2.3:8443/"),
    ("https://[::1]:8443/", None, "https://[::1]:8443/"),
])
def test_host_forms(host: str, port: str | None, url: str) -> None:
    """host takes a name, an address, host:port or a full URL; the base URL always ends with '/'."""
    extra = f"apiPort={port}" if port else ""
    assert parse(general(extra, host=host)).misp_url == url


def test_zeromq_host_defaults_to_misp_host() -> None:
    """zeroMqHost defaults to the host of MISP's URL, zeroMqPort to 50000."""
    zmq = parse(general("zeroMqNotificationTopics=misp_json", host="https://misp.example:8443/misp/")).zeromq
    assert zmq is not None and (zmq.host, zmq.port, zmq.username) == ("misp.example", 50000, None)


def test_api_key_from_environment() -> None:
    """apiKey=env:NAME reads the key from the environment; so does zeroMqPassword."""
    s = parse("[General]\nhost=misp.example\napiKey=env:MISP_KEY\nzeroMqNotificationTopics=misp_json\n"
              "zeroMqUsername=u\nzeroMqPassword=env:ZMQ_PW\n", environ={"MISP_KEY": KEY, "ZMQ_PW": "pw"})
    assert s.api_key == KEY
    assert s.zeromq is not None and s.zeromq.password == "pw"


def test_api_key_env_missing() -> None:
    """apiKey=env:NAME with NAME unset is an error naming the variable."""
    message = config_error("[General]\nhost=misp.example\napiKey=env:MISP_KEY\n")
    assert "[General] apiKey" in message and "MISP_KEY" in message


def test_key_not_in_repr() -> None:
    """repr(Settings) shows neither the API key nor the ZeroMQ password."""
    s = parse(general("zeroMqNotificationTopics=misp_json\nzeroMqUsername=u\nzeroMqPassword=zmqSecret42"))
    assert KEY not in repr(s) and "zmqSecret42" not in repr(s)
    assert KEY not in str(s)


def test_default_config_file_parses(tmp_path: Path) -> None:
    """The packaged dxlmispservice.config, with host and apiKey filled in, parses to the defaults."""
    parser = ConfigParser()
    parser.read(PACKAGE_CONFIG / "dxlmispservice.config")
    parser.set("General", "host", "misp.example")
    parser.set("General", "apiKey", KEY)
    s = Settings.from_parser(parser, environ={}, base_dir=str(tmp_path))
    assert s == Settings(misp_url="https://misp.example/", api_key=KEY)


@pytest.mark.parametrize("text,names", [
    ("[General]\napiKey=k\n", ["[General] host", "missing"]),
    ("[General]\nhost=misp.example\n", ["[General] apiKey", "missing"]),
    (general("apiPort=abc"), ["[General] apiPort", "'abc'", "integer from 1 to 65535"]),
    (general("apiPort=70000"), ["[General] apiPort", "integer from 1 to 65535"]),
    (general("apiPort=8443", host="https://misp.example:9443/"), ["[General] apiPort", "9443"]),
    (general(host="ftp://misp.example"), ["[General] host", "http(s) URL"]),
    (general(host="https://misp.example:99999"), ["[General] host"]),
    (general("verifyCertificate=maybe"), ["[General] verifyCertificate", "true, false"]),
    (general("verifyCertBundle=/nonexistent/ca.pem"), ["[General] verifyCertBundle", "existing file"]),
    (general("clientKey=/etc/hostname"), ["[General] clientKey", "clientCertificate"]),
    (general("serviceUniqueId=a/b"), ["[General] serviceUniqueId", "'/'"]),
    (general("requestTimeout=soon"), ["[General] requestTimeout", "'soon'", "a number"]),
    (general("requestTimeout=0"), ["[General] requestTimeout", "a number >= 0.001"]),
    (general("maxResponseSize=10"), ["[General] maxResponseSize", "integer >= 1024"]),
    (general("maxResponseSize=1048000"), ["[General] maxResponseSize", "fabricMessageLimit 1048576",
                                          "at most 1044480"]),
    (general("fabricMessageLimit=100000\nmaxResponseSize=99000"), ["[General] maxResponseSize", "at most 95904"]),
    (general("fabricMessageLimit=1000"), ["[General] fabricMessageLimit", "integer >= 65536"]),
    (general("zeroMqPort=x\nzeroMqNotificationTopics=misp_json"), ["[General] zeroMqPort"]),
    (general("zeroMqUsername=u"), ["[General] zeroMqPassword", "missing", "both"]),
    (general("zeroMqPassword=p"), ["[General] zeroMqUsername", "missing", "both"]),
    (general("apiname=new_event"), ["[General] apiname", "unknown key", "apiNames"]),
    (general() + "[feed]\nenabled=true\n", ["[feed]", "[Feed]", "case-sensitive"]),
    (general() + "[Proxies]\nhttps=proxy.example\n", ["[Proxies] https", "proxy URL"]),
    (general() + "[Formats]\nctimTlp=purple\n", ["[Formats] ctimTlp", "'purple'", "red, amber, green, white"]),
    (general() + "[Formats]\neventUrl=ftp://x\n", ["[Formats] eventUrl", "http(s) URL"]),
    (general() + "[Formats]\nctimPrefix=x\n", ["[Formats] ctimprefix", "unknown key", "ctimExternalIdPrefix"]),
    (general() + "[IncomingMessagePool]\nthreadCount=0\n", ["[IncomingMessagePool] threadCount", "1 to 1000"]),
    (general() + "[MessageCallbackPool]\nqueueSize=-1\n", ["[MessageCallbackPool] queueSize", ">= 1"]),
    (general() + "[Feed]\nenabled=true\nlookback=yesterday\n", ["[Feed] lookback", "30m", "ISO date"]),
    (general() + "[Feed]\nenabled=true\nthreatLevels=1,5\n", ["[Feed] threatLevels", "1 (high)"]),
    (general() + "[Feed]\nenabled=true\npageSize=0\n", ["[Feed] pageSize"]),
    (general() + "[Feed]\nenabled=true\ninterval=-1\n", ["[Feed] interval"]),
    (general() + "[Feed]\nenabled=sure\n", ["[Feed] enabled", "true, false"]),
    (general() + "[Feed]\nenabled=true\nsince=1d\n", ["[Feed] since", "unknown key", "lookback"]),
])
def test_bad_values_name_section_key_and_accepted(text: str, names: list[str]) -> None:
    """A bad value raises ConfigError naming the section and key and what is accepted."""
    message = config_error(text)
    for name in names:
        assert name in message
    assert KEY not in message


def test_proxy_password_not_in_error() -> None:
    """A rejected proxy URL is quoted without its password."""
    message = config_error(general() + "[Proxies]\nhttps=http://user:hunter2@proxy.example\n")
    assert "hunter2" not in message and "[Proxies] https" in message


def test_values_are_literal() -> None:
    """A '%' in a value is kept as it is (no interpolation)."""
    s = parse("[General]\nhost=misp.example\napiKey=abc%def\n")
    assert s.api_key == "abc%def"


def test_relative_cert_paths_from_cwd_when_not_in_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative path missing in the config directory is looked up from the working directory."""
    (tmp_path / "ca.pem").write_text("x")
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "conf"
    other.mkdir()
    s = parse(general("verifyCertBundle=ca.pem"), base_dir=str(other))
    assert s.verify_cert_bundle == os.path.join(str(tmp_path), "ca.pem")


def test_fabric_message_limit_defaults_to_the_brokers_and_bounds_the_answer_size() -> None:
    """fabricMessageLimit defaults to 1,048,576; a smaller one lowers maxResponseSize's default to fit."""
    assert parse(general()).fabric_message_limit == 1_048_576 and parse(general()).max_response_size == 1_000_000
    small = parse(general("fabricMessageLimit=200000"))
    assert (small.fabric_message_limit, small.max_response_size) == (200_000, 200_000 - 4096)


def test_formats_defaults_and_keys() -> None:
    """[Formats] defaults to the documented values, eventUrl to MISP's event page; every key is read."""
    s = parse(general())
    assert s.formats == FormatSettings(event_url="https://misp.example/events/view/{uuid}")
    s = parse(general() + "[Formats]\nctimSource=Lab\nctimSchemaVersion=1.2.0\nctimTlp=green\n"
              "ctimExternalIdPrefix=lab\nstix1OrgName=Lab Org\neventUrl=https://ui.example/e/{id}\n")
    assert s.formats == FormatSettings("Lab", "1.2.0", "green", "lab", "Lab Org", "https://ui.example/e/{id}")


def test_format_options_override_one_request() -> None:
    """A request's options replace the named keys; an unknown key or a bad value is InvalidArguments."""
    base = parse(general()).formats
    assert base.with_options({"ctimTlp": "red"}) == replace(base, ctim_tlp="red")
    for options, words in (({"tlp": "red"}, ["unknown key 'tlp'", "ctimTlp"]), ({"ctimTlp": 3}, ["non-empty string"]),
                           ({"ctimTlp": "blue"}, ["ctimTlp 'blue'"])):
        with pytest.raises(InvalidArguments) as caught:
            base.with_options(options)
        assert all(word in caught.value.message for word in words)
