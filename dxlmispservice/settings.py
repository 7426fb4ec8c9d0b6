"""The service's settings, parsed from ``dxlmispservice.config`` in one place.

:meth:`Settings.from_parser` reads every section and key, applies the defaults and checks each value.
A bad value raises :class:`~dxlmispservice.errors.ConfigError` whose message names the section and the
key and says what is accepted. Values are taken literally (no ``%`` interpolation). Key names are not
case-sensitive; section names are.

- ``apiKey=env:NAME`` reads the key from the environment variable ``NAME``, so that it need not sit in a
  file. ``zeroMqPassword`` takes ``env:NAME`` as well.
- Proxies live in their own ``[Proxies]`` section, one ``scheme=proxy URL`` per line (``https=http://p:3128``),
  as requests takes them. Without that section the service ignores the ``*_PROXY`` environment variables.
- The API names are not checked here: :func:`dxlmispservice.topics.build_table` does that at start.
"""
from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import urlsplit

from .errors import ConfigError

GENERAL = "General"
FEED = "Feed"
PROXIES = "Proxies"
INCOMING_POOL = "IncomingMessagePool"
CALLBACK_POOL = "MessageCallbackPool"

#: The keys each section accepts (the documented spelling; matching ignores case).
GENERAL_KEYS = (
    "host", "apiPort", "apiKey", "verifyCertificate", "verifyCertBundle", "clientCertificate", "clientKey",
    "apiNames", "serviceUniqueId", "requestTimeout", "maxResponseSize",
    "zeroMqNotificationTopics", "zeroMqHost", "zeroMqPort", "zeroMqUsername", "zeroMqPassword",
)
FEED_KEYS = ("enabled", "interval", "lookback", "tags", "notTags", "orgs", "publishedOnly", "threatLevels",
             "pageSize", "stateFile")
POOL_KEYS = ("threadCount", "queueSize")
SECTIONS = (GENERAL, FEED, PROXIES, INCOMING_POOL, CALLBACK_POOL)

ENV_PREFIX = "env:"
_DURATION = re.compile(r"^\d+[smhdw]$")
_PROXY_SCHEMES = ("http", "https", "socks4", "socks5", "socks5h")
_TOPIC_UNSAFE = re.compile(r"[\s/#+]")


@dataclass(frozen=True)
class PoolSettings:
    """A dxlbootstrap thread pool: ``threadCount`` and ``queueSize``."""

    thread_count: int = 10
    queue_size: int = 1000


@dataclass(frozen=True)
class ZmqSettings:
    """MISP's ZeroMQ publisher and the topics to forward."""

    topics: tuple[str, ...]
    host: str
    port: int = 50000
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FeedSettings:
    """The optional event feed (``[Feed]``)."""

    enabled: bool = False
    interval: float = 60.0
    lookback: str = "1d"
    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    published_only: bool = False
    threat_levels: tuple[int, ...] = ()
    page_size: int = 100
    state_file: str = "misp-feed-state.json"


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from ``dxlmispservice.config``. The key never shows in ``repr``."""

    misp_url: str
    api_key: str = field(repr=False)
    api_names: tuple[str, ...] = ()
    service_unique_id: str = ""
    verify_certificate: bool = True
    verify_cert_bundle: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    timeout: float = 30.0
    proxies: Mapping[str, str] = field(default_factory=dict)
    max_response_size: int = 1_000_000
    incoming_pool: PoolSettings = field(default_factory=PoolSettings)
    callback_pool: PoolSettings = field(default_factory=PoolSettings)
    zeromq: ZmqSettings | None = None
    feed: FeedSettings | None = None

    @property
    def misp_host(self) -> str:
        """The host name (or address) in :attr:`misp_url`."""
        return urlsplit(self.misp_url).hostname or ""

    @classmethod
    def from_parser(cls, parser: configparser.RawConfigParser, environ: Mapping[str, str] = os.environ,
                    *, base_dir: str | None = None) -> Settings:
        """Parse and check every setting; relative file paths are taken from ``base_dir`` when given."""
        unknown = [s for s in parser.sections() if s not in SECTIONS]
        if unknown:
            raise ConfigError(f"unknown section [{unknown[0]}]; accepted sections: "
                              + ", ".join(f"[{s}]" for s in SECTIONS) + " (section names are case-sensitive)")
        general = _Section(parser, GENERAL, GENERAL_KEYS, base_dir)
        misp_url = _misp_url(general)
        api_key = _secret(general, "apiKey", environ, required=True) or ""
        verify = general.boolean("verifyCertificate", True)
        client_certificate = general.path("clientCertificate")
        client_key = general.path("clientKey")
        if client_key and not client_certificate:
            raise ConfigError("[General] clientKey: set clientCertificate too; clientKey is the private key "
                              "of that certificate")
        return cls(
            misp_url=misp_url,
            api_key=api_key,
            api_names=general.listing("apiNames"),
            service_unique_id=_unique_id(general),
            verify_certificate=verify,
            verify_cert_bundle=general.path("verifyCertBundle"),
            client_certificate=client_certificate,
            client_key=client_key,
            timeout=general.number("requestTimeout", 30.0, minimum=0.001),
            proxies=_proxies(parser),
            max_response_size=general.integer("maxResponseSize", 1_000_000, minimum=1024),
            incoming_pool=_pool(parser, INCOMING_POOL, base_dir),
            callback_pool=_pool(parser, CALLBACK_POOL, base_dir),
            zeromq=_zeromq(general, urlsplit(misp_url).hostname or "", environ),
            feed=_feed(parser, base_dir),
        )


class _Section:
    """Typed, checked access to one section; every error names the section, the key and what is accepted."""

    def __init__(self, parser: configparser.RawConfigParser, name: str, keys: tuple[str, ...],
                 base_dir: str | None) -> None:
        self.name = name
        self.base_dir = base_dir
        self._values: dict[str, str] = {}
        if parser.has_section(name):
            defaults = set(parser.defaults())
            accepted = {k.lower(): k for k in keys}
            for option in parser.options(name):
                if option in defaults:
                    continue
                if option not in accepted:
                    raise ConfigError(f"[{name}] {option}: unknown key; accepted keys: {', '.join(keys)}")
                self._values[accepted[option]] = parser.get(name, option, raw=True).strip()

    def error(self, key: str, problem: str, accepted: str) -> ConfigError:
        """A ConfigError naming this section and ``key``."""
        return ConfigError(f"[{self.name}] {key}: {problem}; accepted: {accepted}")

    def text(self, key: str, default: str | None = None) -> str | None:
        """The value, or ``default`` when the key is absent or empty."""
        value = self._values.get(key, "")
        return value if value else default

    def integer(self, key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        """An integer within ``[minimum, maximum]``."""
        accepted = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not an integer", accepted) from None
        if number < minimum or (maximum is not None and number > maximum):
            raise self.error(key, f"{number} is out of range", accepted)
        return number

    def number(self, key: str, default: float, *, minimum: float) -> float:
        """A number of seconds (or other unit), at least ``minimum``."""
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not a number", f"a number >= {minimum:g}") from None
        if not number >= minimum or number == float("inf"):
            raise self.error(key, f"{value} is out of range", f"a number >= {minimum:g}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        """``true``/``false`` and the other spellings ConfigParser knows."""
        value = self.text(key)
        if value is None:
            return default
        states = configparser.RawConfigParser.BOOLEAN_STATES
        if value.lower() not in states:
            raise self.error(key, f"{value!r} is not a boolean", "true, false, yes, no, on, off, 1, 0")
        return states[value.lower()]

    def listing(self, key: str) -> tuple[str, ...]:
        """A comma-separated list: blanks dropped, duplicates dropped, order kept."""
        value = self.text(key) or ""
        items = (item.strip() for item in value.split(","))
        return tuple(dict.fromkeys(item for item in items if item))

    def path(self, key: str, *, must_exist: bool = True) -> str | None:
        """A file path; a relative one is taken from the config directory when it is found there."""
        value = self.text(key)
        if value is None:
            return None
        path = os.path.expanduser(value)
        if not os.path.isabs(path) and self.base_dir is not None:
            candidate = os.path.join(self.base_dir, path)
            if must_exist is False or os.path.exists(candidate) or not os.path.exists(path):
                path = candidate
        if must_exist and not os.path.isfile(path):
            raise self.error(key, f"no readable file at {path!r}",
                             "the path of an existing file (absolute, or relative to the config directory)")
        return os.path.abspath(path)


def _misp_url(general: _Section) -> str:
    """``host`` (a name, an address, ``host:port`` or a full URL) and ``apiPort`` -> the MISP base URL."""
    host = general.text("host")
    if host is None:
        raise general.error("host", "missing", "the MISP server's host name or address, or a full URL "
                            "such as https://misp.example:8443/misp/")
    raw = host if "://" in host else f"https://{host}"
    accepted = "a host name or address, host:port, or an http(s) URL such as https://misp.example:8443/misp/"
    try:
        parts = urlsplit(raw)
        url_port = parts.port
    except ValueError as exc:
        raise general.error("host", f"{host!r} is not a valid host or URL ({exc})", accepted) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise general.error("host", f"{host!r} is not a valid host or URL", accepted)
    default_port = 443 if parts.scheme == "https" else 80
    api_port = general.integer("apiPort", default_port, minimum=1, maximum=65535)
    if url_port is not None and general.text("apiPort") is not None and url_port != api_port:
        raise general.error("apiPort", f"{api_port} disagrees with the port {url_port} in host",
                            "the same port as in host, or leave apiPort out")
    port = url_port if url_port is not None else api_port
    hostname = parts.hostname
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port != default_port:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/") + "/"
    return f"{parts.scheme}://{netloc}{path}"


def _secret(section: _Section, key: str, environ: Mapping[str, str], *, required: bool) -> str | None:
    """A secret given literally or as ``env:NAME``; error messages never show the value."""
    value = section.text(key)
    if value is None:
        if required:
            raise section.error(key, "missing", f"the MISP API key, or {ENV_PREFIX}NAME to read it from the "
                                "environment variable NAME")
        return None
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):].strip()
        if not name:
            raise section.error(key, f"{ENV_PREFIX} names no variable", f"{ENV_PREFIX}NAME")
        secret = environ.get(name, "").strip()
        if not secret:
            raise section.error(key, f"the environment variable {name} is not set or empty",
                                f"{ENV_PREFIX}NAME naming a set variable, or the value itself")
        return secret
    return value


def _unique_id(general: _Section) -> str:
    """``serviceUniqueId``: one topic level, so no ``/``, ``#``, ``+`` or blanks."""
    value = general.text("serviceUniqueId", "") or ""
    if _TOPIC_UNSAFE.search(value):
        raise general.error("serviceUniqueId", f"{value!r} cannot be a topic level",
                            "a name without '/', '#', '+' or blanks")
    return value


def _proxies(parser: configparser.RawConfigParser) -> dict[str, str]:
    """``[Proxies]``: ``scheme=proxy URL`` (or ``scheme://host=proxy URL``), as requests takes them."""
    if not parser.has_section(PROXIES):
        return {}
    defaults = set(parser.defaults())
    proxies: dict[str, str] = {}
    for key in parser.options(PROXIES):
        if key in defaults:
            continue
        value = parser.get(PROXIES, key, raw=True).strip()
        if key == "no_proxy":
            proxies[key] = value
            continue
        try:
            parts = urlsplit(value)
            valid = parts.scheme in _PROXY_SCHEMES and bool(parts.hostname) and parts.port is not None
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"[{PROXIES}] {key}: {_hide_password(value)!r} is not a proxy URL; accepted: "
                              f"a URL with a scheme ({', '.join(_PROXY_SCHEMES)}), a host and a port, "
                              "such as http://proxy.example:3128")
        proxies[key] = value
    return proxies


def _hide_password(url: str) -> str:
    """``url`` with any password in it replaced."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1<redacted>@", url)


def _pool(parser: configparser.RawConfigParser, name: str, base_dir: str | None) -> PoolSettings:
    section = _Section(parser, name, POOL_KEYS, base_dir)
    return PoolSettings(thread_count=section.integer("threadCount", 10, minimum=1, maximum=1000),
                        queue_size=section.integer("queueSize", 1000, minimum=1))


def _zeromq(general: _Section, misp_host: str, environ: Mapping[str, str]) -> ZmqSettings | None:
    topics = general.listing("zeroMqNotificationTopics")
    port = general.integer("zeroMqPort", 50000, minimum=1, maximum=65535)
    host = general.text("zeroMqHost", misp_host) or misp_host
    username = general.text("zeroMqUsername")
    password = _secret(general, "zeroMqPassword", environ, required=False)
    if (username is None) != (password is None):
        missing, given = ("zeroMqPassword", "zeroMqUsername") if username else ("zeroMqUsername", "zeroMqPassword")
        raise general.error(missing, f"missing while {given} is set",
                            "both zeroMqUsername and zeroMqPassword (ZeroMQ PLAIN), or neither")
    if not topics:
        return None
    bad = [t for t in topics if " " in t]
    if bad:
        raise general.error("zeroMqNotificationTopics", f"{bad[0]!r} contains a blank",
                            "MISP ZeroMQ topic names such as misp_json_event, separated by commas")
    return ZmqSettings(topics=topics, host=host, port=port, username=username, password=password)


def _feed(parser: configparser.RawConfigParser, base_dir: str | None) -> FeedSettings | None:
    section = _Section(parser, FEED, FEED_KEYS, base_dir)
    if not section.boolean("enabled", False):
        return None
    lookback = section.text("lookback", "1d") or "1d"
    if not _is_lookback(lookback):
        raise section.error("lookback", f"{lookback!r} is neither a duration nor a date",
                            "a duration such as 30m, 12h, 7d, 2w, or an ISO date such as 2024-01-31")
    levels = section.listing("threatLevels")
    if any(level not in ("1", "2", "3", "4") for level in levels):
        raise section.error("threatLevels", f"{','.join(levels)!r} has a value other than 1-4",
                            "MISP threat level ids 1 (high), 2 (medium), 3 (low), 4 (undefined), "
                            "separated by commas")
    state_file = section.path("stateFile", must_exist=False) or os.path.abspath(
        os.path.join(base_dir or ".", FeedSettings.state_file))
    return FeedSettings(
        enabled=True,
        interval=section.number("interval", 60.0, minimum=0.1),
        lookback=lookback,
        tags=section.listing("tags"),
        not_tags=section.listing("notTags"),
        orgs=section.listing("orgs"),
        published_only=section.boolean("publishedOnly", False),
        threat_levels=tuple(int(level) for level in levels),
        page_size=section.integer("pageSize", 100, minimum=1, maximum=10_000),
        state_file=state_file,
    )


def _is_lookback(value: str) -> bool:
    """A duration (``30m``, ``12h``, ``7d``) or an ISO date or date-time."""
    if _DURATION.match(value):
        return True
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            parse(value)
            return True
        except ValueError:
            continue
    return False
