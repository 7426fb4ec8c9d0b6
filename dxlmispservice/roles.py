"""One role per instance: the feed, and the forwarding of each ZeroMQ topic, run on one live instance of a
service type at a time.

Each instance claims its configured roles in its DXL service registration's metadata: ``roles``
(``feed``, ``forwarder``), ``forwardedTopics``, ``startedAt`` (when the process started, epoch seconds)
and ``instance`` (a stable name of the installation: its host and config dir). A registration left by a
process of the same installation that died without unregistering (``kill -9``) is not a holder: the
restarted process is that instance, and takes its roles at once.
Of the live instances of one service type that claim a role, the one that started first holds it (ties go
to the smaller service id); the others keep it off, say so in one log line, and check again every
``roleCheckInterval`` seconds, so that a standby takes the role when the holder's registration goes (it
stops, or its registration expires). A claim is for the feed, or for forwarding: two forwarders conflict
when they share a topic.

The start-up race: two instances that register within the registry's propagation time of each other may
each see no earlier claimant and both start the role; at the next check the later one sees the earlier
and stops it. Start instances a few seconds apart.

Everything here runs on the thread that starts the service and on one checking thread: the registry is
asked with a synchronous DXL request, which dxlclient refuses on its incoming-message threads.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dxlclient.message import Message, Request

logger = logging.getLogger(__name__)

#: The registry's query topic (OpenDXL broker and the dev stand-in).
REGISTRY_QUERY_TOPIC = "/mcafee/service/dxl/svcregistry/query"


class Runnable(Protocol):
    """A part that holds a role: started once, stopped once."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Role:
    """One role and the part that runs it: ``feed``, or ``forwarder`` for ``topics``."""

    name: str
    part: Runnable
    topics: frozenset[str] = frozenset()
    running: bool = False
    said: str = ""  # the last "kept off" line logged, so that it is logged once

    def label(self) -> str:
        return self.name if self.name != "forwarder" else "forwarder:" + ",".join(sorted(self.topics))


def claims(roles: Iterable[Role], started_at: float, instance: str) -> dict[str, str]:
    """The registration metadata that claims ``roles`` for the installation named ``instance``."""
    roles = list(roles)
    topics = sorted({topic for role in roles for topic in role.topics})
    return {"roles": ",".join(role.name for role in roles), "forwardedTopics": ",".join(topics),
            "startedAt": f"{started_at:.6f}", "instance": instance}


def instance_name(config_dir: str) -> str:
    """The stable name of an installation: its host and its config dir, as a UUID."""
    place = f"{socket.gethostname()}\n{os.path.realpath(config_dir)}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "dxlmispservice:" + place))


def registry_query(dxl_client: Any, service_type: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The registry's live registrations of ``service_type``: ``{serviceGuid: registration}``."""
    request = Request(REGISTRY_QUERY_TOPIC)
    request.payload = json.dumps({"serviceType": service_type}).encode("utf-8")
    response = dxl_client.sync_request(request, timeout=timeout)
    if response.message_type == Message.MESSAGE_TYPE_ERROR:
        raise RuntimeError(f"the registry refused the query: {response.error_message}")
    payload = json.loads(response.payload.decode("utf-8") if isinstance(response.payload, bytes) else response.payload)
    services = payload.get("services") if isinstance(payload, dict) else None
    return dict(services) if isinstance(services, dict) else {}


class RoleKeeper:
    """Starts each role's part when this instance should hold it, stops it when an earlier one does."""

    def __init__(self, roles: list[Role], *, own_guid: Callable[[], str], started_at: float,
                 query: Callable[[], Mapping[str, Mapping[str, Any]]], interval: float, instance: str = "") -> None:
        self.roles = roles
        self._own_guid = own_guid
        self._instance = instance
        self._started_at = started_at
        self._query = query
        self._interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def held(self) -> list[str]:
        """The roles running here, as ``status`` reports them."""
        return sorted(role.label() for role in self.roles if role.running)

    def start(self) -> None:
        """Check now (on the calling thread), then every ``interval`` seconds on a thread of its own."""
        self.check()
        if self.roles:
            self._thread = threading.Thread(target=self._run, name="role-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop checking, then stop every part that runs."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 15)
        with self._lock:
            for role in self.roles:
                if role.running:
                    role.running = False
                    role.part.stop()

    def check(self) -> None:
        """Start or stop each role's part by who else holds it now."""
        try:
            others = {guid: entry for guid, entry in self._query().items() if guid != self._own_guid()}
        except Exception as exc:  # no answer from the registry: go on as before (start what is not decided)
            logger.warning("Could not ask the registry who holds the roles (%s): going on as before", exc)
            others = None
        with self._lock:
            for role in self.roles:
                if self._stopping.is_set():
                    return
                earlier = None if others is None else self._earlier_claimant(role, others)
                if earlier is None and not role.running:
                    if role.said:
                        logger.info("Taking the %s: no earlier instance holds it any more", role.label())
                    role.said = ""
                    role.part.start()
                    role.running = True
                elif earlier is not None:
                    line = f"Keeping the {role.label()} off: instance {earlier} of this service holds it"
                    if role.running:
                        logger.warning("%s (it started first); stopping ours", line)
                        role.running = False
                        role.part.stop()
                    if role.said != line:
                        logger.info("%s; checking again every %g s", line, self._interval)
                        role.said = line

    def _earlier_claimant(self, role: Role, others: Mapping[str, Mapping[str, Any]]) -> str | None:
        """The instance that holds ``role`` instead of this one, or None. Every instance works this out the
        same way from the same claims: in start order, a claimant holds the role unless one before it
        holds it (for forwarders: holds a topic it shares), so that no topic is left to nobody."""
        mine = (self._started_at, self._own_guid())
        claimants = []
        for guid, entry in others.items():
            metadata = entry.get("metaData") or {}
            if not isinstance(metadata, Mapping) or role.name not in str(metadata.get("roles", "")).split(","):
                continue
            if self._instance and metadata.get("instance") == self._instance:
                continue  # left by an earlier life of this installation (it died without unregistering)
            try:
                claimants.append(((float(metadata.get("startedAt", "inf")), guid), metadata))
            except ValueError:
                continue
        holders: list[tuple[str, frozenset[str]]] = []
        for key, metadata in sorted(claimants, key=lambda pair: pair[0]):
            if key >= mine:
                break
            topics = frozenset(str(metadata.get("forwardedTopics", "")).split(",")) - {""}
            if role.name != "forwarder" or not any(topics & held for _, held in holders):
                holders.append((key[1], topics))
        for guid, topics in holders:
            if role.name != "forwarder" or topics & role.topics:
                return guid
        return None

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.check()
            except Exception:  # the checking thread must outlive one bad check
                logger.exception("Role check failed; checking again in %g s", self._interval)
