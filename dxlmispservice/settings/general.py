"""``[General]``: where MISP is (``host``, ``apiPort``) and the service's own name on the fabric."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from dxlmispservice.settings.section import Section

GENERAL = "General"
#: The keys ``[General]`` accepts (the documented spelling; matching ignores case).
GENERAL_KEYS = (
    "host", "apiPort", "apiKey", "verifyCertificate", "verifyCertBundle", "clientCertificate", "clientKey",
    "apiNames", "allowAdminApis", "serviceUniqueId", "requestTimeout", "maxResponseSize",
    "fabricMessageLimit", "roleCheckInterval",
    "zeroMqNotificationTopics", "zeroMqHost", "zeroMqPort", "zeroMqUsername", "zeroMqPassword",
)
_TOPIC_UNSAFE = re.compile(r"[\s/#+]")


def misp_url(general: Section) -> str:
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


def unique_id(general: Section) -> str:
    """``serviceUniqueId``: one topic level, so no ``/``, ``#``, ``+`` or blanks."""
    value = general.text("serviceUniqueId", "") or ""
    if _TOPIC_UNSAFE.search(value):
        raise general.error("serviceUniqueId", f"{value!r} cannot be a topic level",
                            "a name without '/', '#', '+' or blanks")
    return value
