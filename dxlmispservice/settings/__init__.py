"""The service's settings, parsed from ``dxlmispservice.config`` in one place.

:meth:`Settings.from_parser` reads every section and key, applies the defaults and checks each value.
A bad value raises :class:`~dxlmispservice.errors.ConfigError` whose message names the section and the
key and says what is accepted. Values are taken literally (no ``%`` interpolation). Key names are not
case-sensitive; section names are.

- ``apiKey=env:NAME`` reads the key from the environment variable ``NAME``, so that it need not sit in a
  file. ``zeroMqPassword`` takes ``env:NAME`` as well.
- Proxies live in their own ``[Proxies]`` section, one ``scheme=proxy URL`` per line (``https=http://p:3128``),
  as requests takes them. Without that section the service ignores the ``*_PROXY`` environment variables.
- The API names are not checked here: :func:`dxlmispservice.api.topics.build_table` does that at start.

Each section has its own small module here (``general``, ``proxies``, ``pools``, ``zeromq``, ``feed``,
``formats``); a
new section is a new module, and :meth:`Settings.from_parser` calls its parser.
"""
from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dxlmispservice.errors import ConfigError, redact
from dxlmispservice.settings import feed, formats, general, pools, proxies, zeromq
from dxlmispservice.settings.feed import FEED, FEED_KEYS, FeedSettings
from dxlmispservice.settings.formats import FORMATS, FormatSettings
from dxlmispservice.settings.general import GENERAL, GENERAL_KEYS
from dxlmispservice.settings.pools import CALLBACK_POOL, INCOMING_POOL, POOL_KEYS, PoolSettings
from dxlmispservice.settings.proxies import PROXIES
from dxlmispservice.settings.section import ENV_PREFIX, Section, secret
from dxlmispservice.settings.zeromq import ZmqSettings

SECTIONS = (GENERAL, FEED, FORMATS, PROXIES, INCOMING_POOL, CALLBACK_POOL)

#: The largest MQTT packet the real OpenDXL broker takes (its ``messageSizeLimit``): it disconnects a client
#: that publishes more.
FABRIC_MESSAGE_LIMIT = 1_048_576
#: What an answer needs on the fabric beside its JSON body: the DXL envelope of a Response (measured with
#: dxlclient 5.7.0.1: 215 bytes with its ids, 217 for an ErrorResponse plus its message), the requester's
#: reply topic, MQTT's headers, and room for an error message. ``maxResponseSize`` may be at most
#: ``fabricMessageLimit`` less this.
ANSWER_RESERVE = 4096

__all__ = ["ANSWER_RESERVE", "CALLBACK_POOL", "FABRIC_MESSAGE_LIMIT", "ENV_PREFIX", "FEED", "FEED_KEYS", "GENERAL", "GENERAL_KEYS", "INCOMING_POOL",
           "POOL_KEYS", "PROXIES", "SECTIONS", "FeedSettings", "FormatSettings", "PoolSettings", "Settings", "ZmqSettings"]


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from ``dxlmispservice.config``. The key never shows in ``repr``."""

    misp_url: str
    api_key: str = field(repr=False)
    api_names: tuple[str, ...] = ()
    allow_admin_apis: bool = False
    service_unique_id: str = ""
    verify_certificate: bool = True
    verify_cert_bundle: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    timeout: float = 30.0
    proxies: Mapping[str, str] = field(default_factory=dict)
    max_response_size: int = 1_000_000
    fabric_message_limit: int = FABRIC_MESSAGE_LIMIT
    role_check_interval: float = 60.0
    incoming_pool: PoolSettings = field(default_factory=PoolSettings)
    callback_pool: PoolSettings = field(default_factory=PoolSettings)
    zeromq: ZmqSettings | None = None
    feed: FeedSettings | None = None
    formats: FormatSettings = field(default_factory=FormatSettings)

    def __post_init__(self) -> None:
        if not self.formats.event_url:  # the events' URLs on MISP, for the formats that name them
            object.__setattr__(self, "formats", formats.with_misp_url(self.formats, self.misp_url))

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
        section = Section(parser, GENERAL, GENERAL_KEYS, base_dir)
        misp_url = general.misp_url(section)
        api_key = secret(section, "apiKey", environ, required=True) or ""
        try:  # a message may quote a value: the key is cut out of it
            fabric_limit = section.integer("fabricMessageLimit", FABRIC_MESSAGE_LIMIT, minimum=65_536)
            max_response_size = section.integer("maxResponseSize", min(1_000_000, fabric_limit - ANSWER_RESERVE),
                                                minimum=1024)
            if max_response_size > fabric_limit - ANSWER_RESERVE:
                raise section.error("maxResponseSize", f"{max_response_size} leaves too little room under "
                                    f"fabricMessageLimit {fabric_limit} for the DXL envelope",
                                    f"at most {fabric_limit - ANSWER_RESERVE} (fabricMessageLimit less "
                                    f"{ANSWER_RESERVE} bytes)")
            verify = section.boolean("verifyCertificate", True)
            client_certificate = section.path("clientCertificate")
            client_key = section.path("clientKey")
            if client_key and not client_certificate:
                raise ConfigError("[General] clientKey: set clientCertificate too; clientKey is the private key "
                                  "of that certificate")
            return cls(
                misp_url=misp_url,
                api_key=api_key,
                api_names=section.listing("apiNames"),
                allow_admin_apis=section.boolean("allowAdminApis", False),
                service_unique_id=general.unique_id(section),
                verify_certificate=verify,
                verify_cert_bundle=section.path("verifyCertBundle"),
                client_certificate=client_certificate,
                client_key=client_key,
                timeout=section.number("requestTimeout", 30.0, minimum=0.001),
                proxies=proxies.parse(parser),
                max_response_size=max_response_size,
                fabric_message_limit=fabric_limit,
                role_check_interval=section.number("roleCheckInterval", 60.0, minimum=0.1),
                incoming_pool=pools.parse(parser, INCOMING_POOL, base_dir),
                callback_pool=pools.parse(parser, CALLBACK_POOL, base_dir),
                zeromq=zeromq.parse(section, urlsplit(misp_url).hostname or "", environ),
                feed=feed.parse(parser, base_dir),
                formats=formats.parse(parser, base_dir),
            )
        except ConfigError as exc:
            raise ConfigError(redact(exc.message, api_key)) from None
