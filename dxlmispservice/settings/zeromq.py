"""The ZeroMQ keys of ``[General]``: MISP's ZeroMQ publisher and the topics to forward."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dxlmispservice.settings.section import Section, secret


@dataclass(frozen=True)
class ZmqSettings:
    """MISP's ZeroMQ publisher and the topics to forward."""

    topics: tuple[str, ...]
    host: str
    port: int = 50000
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse(general: Section, misp_host: str, environ: Mapping[str, str]) -> ZmqSettings | None:
    topics = general.listing("zeroMqNotificationTopics")
    port = general.integer("zeroMqPort", 50000, minimum=1, maximum=65535)
    host = general.text("zeroMqHost", misp_host) or misp_host
    username = general.text("zeroMqUsername")
    password = secret(general, "zeroMqPassword", environ, required=False)
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
