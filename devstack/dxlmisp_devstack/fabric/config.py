"""Write ``dxlclient.config`` files in dxlclient's own format for the dev fabric.

The file has ``[Certs]`` (BrokerCertChain, CertFile, PrivateKey), ``[Brokers]`` with one line
``id=id;port;host;ip`` and an empty ``[BrokersWebSockets]``. It sets no ``ClientId``: dxlclient then makes a
fresh one per client, and two live clients sharing one id would kick each other off the broker.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

from dxlmisp_devstack.fabric.pki import Pki

BROKER_ID = "devstack-broker"


def broker_line(broker_port: int, host: str = "127.0.0.1", broker_id: str = BROKER_ID) -> str:
    """Return the ``[Brokers]`` entry ``id=id;port;host;ip`` for the dev broker."""
    if not 0 < broker_port < 65536:
        raise ValueError(f"broker port out of range: {broker_port}")
    if any(c in host for c in ";=\n") or not host:
        raise ValueError(f"bad broker host: {host!r}")
    return f"{broker_id}={broker_id};{broker_port};{host};{_ip_of(host)}"


def write_dxlclient_config(
    path: str | os.PathLike[str], pki: Pki, role: str, broker_port: int, host: str = "127.0.0.1"
) -> Path:
    """Write a dxlclient.config for ``role``'s client certificate and the broker at ``host:broker_port``.

    Certificate paths are written absolute, so the file works from any directory. Returns the path.
    """
    cert, key = pki.client(role)
    target = Path(path)
    if target.is_dir():
        target = target / "dxlclient.config"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(
        [
            "[Certs]",
            f"BrokerCertChain={pki.ca_cert.resolve()}",
            f"CertFile={cert.resolve()}",
            f"PrivateKey={key.resolve()}",
            "",
            "[Brokers]",
            broker_line(broker_port, host),
            "",
            "[BrokersWebSockets]",
            "",
        ]
    )
    target.write_text(text)
    return target


def _ip_of(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)
