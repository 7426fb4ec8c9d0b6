"""``[Proxies]``: one ``scheme=proxy URL`` per line, as requests takes them."""
from __future__ import annotations

import configparser
import re
from urllib.parse import urlsplit

from dxlmispservice.errors import ConfigError

PROXIES = "Proxies"
_PROXY_SCHEMES = ("http", "https", "socks4", "socks5", "socks5h")


def parse(parser: configparser.RawConfigParser) -> dict[str, str]:
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
            raise ConfigError(f"[{PROXIES}] {key}: {hide_password(value)!r} is not a proxy URL; accepted: "
                              f"a URL with a scheme ({', '.join(_PROXY_SCHEMES)}), a host and a port, "
                              "such as http://proxy.example:3128")
        proxies[key] = value
    return proxies


def hide_password(url: str) -> str:
    """``url`` with any password in it replaced."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1<redacted>@", url)
