"""``MispService``: the service's lifecycle on dxlbootstrap's Application, and nothing more.

dxlbootstrap runs the hooks in this order: ``on_run`` (before any config is read), then the config files
are checked (missing ones are copied from the package's ``_config/app`` defaults) and read, then
``on_load_configuration``, the DXL connection, ``on_register_event_handlers``, ``on_register_services``
and ``on_dxl_connect``.

- ``on_load_configuration``: :class:`~dxlmispservice.settings.Settings`, the topic table (so that a bad
  ``apiNames`` stops the start before anything connects), the MISP client (no network I/O yet) and the
  optional forwarders (constructed, not started).
- ``on_register_event_handlers`` (the first hook after ``connect()``): TCP_NODELAY on the broker socket,
  kept across reconnects by paho's ``on_socket_open`` hook. No event handler is registered.
- ``on_register_services``: one service of type ``topics.service_type(serviceUniqueId)`` with one request
  topic per api name, each answered on the incoming message thread. Nothing else is registered.
- ``on_dxl_connect``: the forwarders (ZeroMQ notifications, event feed) are started with a DXL event
  publisher; then, still on the start-up thread, :meth:`~dxlmispservice.misp.MispConnection.check` builds
  the MISP client and logs an ERROR when MISP answers and refuses the API key.
- ``destroy``: the forwarders stop first, then every request in hand is answered (at most requestTimeout
  + 10 s), then dxlbootstrap unregisters and disconnects.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol

with warnings.catch_warnings():  # dxlbootstrap imports pkg_resources, which warns on every start
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from dxlbootstrap.app import Application
from dxlclient.service import ServiceRegistrationInfo

from dxlmispservice.api import topics
from dxlmispservice.compat import dxlbootstrap
from dxlmispservice.compat.dxlclient import incoming_unfinished, on_full_incoming_queue, set_tcp_nodelay
from dxlmispservice.events.publisher import Publisher, dxl_publisher
from dxlmispservice.logsafe import hide_in_logs
from dxlmispservice.api.handler import BusyAnswer, DxlRequestCallback, Handler, RequestHandler
from dxlmispservice.api.status import StatusBoard
from dxlmispservice.misp import MispConnection
from dxlmispservice.roles import Role, RoleKeeper, claims, instance_name, registry_query
from dxlmispservice.settings import Settings

logger = logging.getLogger(__name__)

#: The service's own config file in the config directory.
CONFIG_FILE = "dxlmispservice.config"
#: How much longer than requestTimeout the stop waits for the requests in hand to be answered.
DRAIN_MARGIN = 10.0


class Forwarder(Protocol):
    """Something that runs beside the request topics: started once connected, stopped on destroy."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


#: Builds the forwarders from the settings, the shared MISP client and a DXL event publisher.
#: Builds the topic table: the api names and ``allow_admin`` in, name -> handler out.
TableBuilder = Callable[..., Mapping[str, Handler]]
ForwardersFactory = Callable[[Settings, MispConnection, Publisher], list[Forwarder]]


def default_forwarders(settings: Settings, misp: MispConnection, publisher: Publisher) -> list[Forwarder]:
    """The ZeroMQ notification forwarder and the event feed, each when its settings turn it on."""
    forwarders: list[Forwarder] = []
    if settings.zeromq is not None:
        from dxlmispservice.events.notifications import Forwarder as NotificationForwarder

        forwarders.append(NotificationForwarder(settings.zeromq, publisher,
                                                service_unique_id=settings.service_unique_id))
    if settings.feed is not None:
        from dxlmispservice.events.feed import Feed

        forwarders.append(Feed(settings.feed, misp, publisher, service_unique_id=settings.service_unique_id,
                               formats=settings.formats))
    return forwarders


class _LatePublisher:
    """A publisher bound to the DXL client once it exists (forwarders are built before the connection)."""

    def __init__(self) -> None:
        self.target: Publisher | None = None

    def __call__(self, topic: str, payload: dict) -> None:
        if self.target is None:
            raise RuntimeError("not connected to the DXL fabric yet")
        self.target(topic, payload)


class MispService(Application):
    """The MISP DXL service. The keyword arguments swap in fakes for tests; none does network I/O."""

    def __init__(self, config_dir: str, *,
                 misp_client_factory: Callable[[Settings], MispConnection] = MispConnection,
                 table_builder: TableBuilder = topics.build_table,
                 forwarders_factory: ForwardersFactory = default_forwarders,
                 environ: Mapping[str, str] = os.environ) -> None:
        super().__init__(config_dir, CONFIG_FILE)
        self._misp_client_factory = misp_client_factory
        self._table_builder = table_builder
        self._forwarders_factory = forwarders_factory
        self._environ = environ
        self._publisher = _LatePublisher()
        self.settings: Settings | None = None
        self.misp: MispConnection | None = None
        self.table: Mapping[str, Handler] = {}
        self.forwarders: list[Forwarder] = []
        self._started: list[Forwarder] = []
        self.service: ServiceRegistrationInfo | None = None
        self.status = StatusBoard()
        self.roles: list[Role] = []
        self.keeper: RoleKeeper | None = None
        self._started_at = time.time()

    def on_load_configuration(self, config: Any) -> None:
        """Parse and check the settings, build the topic table, the MISP client and the forwarders."""
        settings = Settings.from_parser(config, self._environ, base_dir=dxlbootstrap.config_dir(self))
        hide_in_logs(settings.api_key)  # before anything can log it (PyMISP logs its headers at DEBUG)
        # dxlbootstrap read the pool sizes itself, ignoring bad values; use the checked ones.
        dxlbootstrap.set_pool_sizes(
            self, incoming=(settings.incoming_pool.thread_count, settings.incoming_pool.queue_size),
            callbacks=(settings.callback_pool.thread_count, settings.callback_pool.queue_size))
        self.table = self._table_builder(settings.api_names, allow_admin=settings.allow_admin_apis,
                                         status=self.status.topic, max_response_size=settings.max_response_size,
                                         formats=settings.formats)
        for name in topics.admin_names(self.table):
            logger.warning("Serving the admin method %s (allowAdminApis=true): anyone who may send requests "
                           "on its topic administers MISP with the service's API key", name)
        self.misp = self._misp_client_factory(settings)
        self.forwarders = list(self._forwarders_factory(settings, self.misp, self._publisher))
        self._fill_status(settings)
        self.settings = settings
        logger.info("Settings loaded: MISP at %s, api names %s", settings.misp_url,
                    ", ".join(self.table) or "(none)")

    def on_register_services(self) -> None:
        """Register one service with a request topic per api name (answered on the incoming thread)."""
        settings = self._loaded()
        if not self.table and not self.roles:
            logger.warning("apiNames is empty: no service is registered")
            return
        if not self.table:
            logger.info("apiNames is empty: the service is registered with no topic, to claim its roles")
        service = ServiceRegistrationInfo(dxlbootstrap.dxl_client(self), topics.service_type(settings.service_unique_id))
        if self.roles:
            service.metadata = claims(self.roles, self._started_at, instance_name(dxlbootstrap.config_dir(self)))
        handler = RequestHandler(self.table, self.misp, max_response_size=settings.max_response_size,
                                 secret=settings.api_key)
        self.status.requests = handler
        for api_name in self.table:
            topic = topics.request_topic(api_name, settings.service_unique_id)
            callback = DxlRequestCallback(dxlbootstrap.dxl_client(self), handler, api_name,
                                          fabric_limit=settings.fabric_message_limit)
            self.add_request_callback(service, topic, callback, False)
        self.register_service(service)
        self.service = service
        busy = BusyAnswer(dxlbootstrap.dxl_client(self), handler, frozenset(service.topics),
                          settings.incoming_pool.queue_size)
        if not on_full_incoming_queue(dxlbootstrap.dxl_client(self), busy):
            logger.warning("This dxlclient has no incoming queue to watch: a full queue blocks until it has room")
        logger.info("Service registered: %s (instance %s), topics: %s", service.service_type,
                    service.service_id, ", ".join(sorted(service.topics)))

    def on_register_event_handlers(self) -> None:
        """The first hook after ``connect()``: Nagle off on the broker socket, before the registration."""
        if set_tcp_nodelay(dxlbootstrap.dxl_client(self)):
            logger.info("TCP_NODELAY set on the broker connection")
        else:
            logger.warning("TCP_NODELAY could not be set on the broker connection yet; it is set on reconnect")

    def on_dxl_connect(self) -> None:
        """Start the forwarders, with a publisher on the connected DXL client, then check that MISP takes
        the API key (an ERROR if it answers and refuses it; the service keeps running either way)."""
        settings = self._loaded()
        self._publisher.target = dxl_publisher(dxlbootstrap.dxl_client(self), limit=settings.fabric_message_limit,
                                               secret=settings.api_key)
        in_roles = {id(role.part) for role in self.roles}
        for forwarder in self.forwarders:
            if id(forwarder) not in in_roles:
                forwarder.start()
                self._started.append(forwarder)
        if self.roles:
            client = dxlbootstrap.dxl_client(self)
            service_type = topics.service_type(settings.service_unique_id)
            self.keeper = RoleKeeper(self.roles, own_guid=lambda: self.service.service_id if self.service else "",
                                     started_at=self._started_at, interval=settings.role_check_interval,
                                     query=lambda: registry_query(client, service_type),
                                     instance=instance_name(dxlbootstrap.config_dir(self)))
            self.status.roles_held = self.keeper.held
            self.keeper.start()
        if self.misp is not None:
            self.misp.check()

    def destroy(self) -> None:
        """Stop the forwarders, answer every request in hand, then unregister and disconnect."""
        self._stop_forwarders()
        self._drain()
        super().destroy()

    def _drain(self) -> None:
        """Wait (at most requestTimeout + 10 s) until the incoming pool has answered every request it holds:
        dxlbootstrap's destroy unregisters first, and a request still queued then would get no answer."""
        client = getattr(self, "_dxl_client", None)  # destroy() also runs from __del__
        settings = getattr(self, "settings", None)
        if client is None or settings is None or self.service is None:
            return
        deadline = time.monotonic() + settings.timeout + DRAIN_MARGIN
        held = incoming_unfinished(client)
        if held:
            logger.info("Answering the %d request(s) in hand before stopping", held)
        while incoming_unfinished(client) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = incoming_unfinished(client)
        if left:
            logger.warning("Stopping with %d request(s) not answered: they took longer than requestTimeout", left)

    def _stop_forwarders(self) -> None:
        keeper = getattr(self, "keeper", None)  # destroy() also runs from __del__
        if keeper is not None:
            self.keeper = None
            try:
                keeper.stop()
            except Exception:  # the other forwarders must stop all the same
                logger.exception("Stopping the roles failed")
        started = getattr(self, "_started", [])
        while started:
            forwarder = started.pop()
            try:
                forwarder.stop()
            except Exception:  # one forwarder failing to stop must not keep the others running
                logger.exception("Stopping %s failed", type(forwarder).__name__)

    def _fill_status(self, settings: Settings) -> None:
        """Point the status board at the MISP connection and the forwarders; the feed and the ZeroMQ
        forwarder become roles (:mod:`dxlmispservice.roles`)."""
        from dxlmispservice.events.feed import Feed
        from dxlmispservice.events.notifications import Forwarder as NotificationForwarder

        self.status.service_unique_id = settings.service_unique_id
        self.status.misp = self.misp
        for forwarder in self.forwarders:
            if isinstance(forwarder, Feed):
                self.status.feed = forwarder
                self.roles.append(Role("feed", forwarder))
            elif isinstance(forwarder, NotificationForwarder):
                self.status.forwarder = forwarder
                self.status.forwarded_topics = tuple(sorted(forwarder.topics))
                self.roles.append(Role("forwarder", forwarder, frozenset(forwarder.topics)))

    def _loaded(self) -> Settings:
        if self.settings is None:
            raise RuntimeError("the configuration has not been loaded")
        return self.settings
