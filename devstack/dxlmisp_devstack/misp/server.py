"""The dev MISP server: HTTP(S) with MISP's API-key auth, over :mod:`dxlmisp_devstack.misp.models`; and its CLI.

Run it::

    DEVSTACK_MISP_ADMIN_KEY=... DEVSTACK_MISP_READONLY_KEY=... \\
    python -m dxlmisp_devstack.misp.server --host 127.0.0.1 --port 0 --db misp.sqlite3 \\
        [--zmq-port Z] [--tls-cert cert.pem --tls-key key.pem]

It prints exactly one line, ``misp ready <url>``, once it serves, and stops cleanly on SIGTERM or SIGINT.
``--port 0`` picks a free port (the ready line names it). ``--db`` defaults to ``:memory:``; with a file, the
data survives a restart. With ``--zmq-port`` it publishes MISP's ZeroMQ notifications there (0: a free port,
logged). The admin key may read and write; the read-only key may read (a write is MISP's 405).

In-process, for tests::

    with serve(MispModels(), admin_key="...", readonly_key="...") as server:
        PyMISP(server.url, "...")

HTTP server choice: Werkzeug (pinned in requirements.txt). It is well kept, has a threaded WSGI server with
TLS from an ``ssl.SSLContext``, and its request handler (``http.server``-based) is small to extend:

* every accepted socket gets TCP_NODELAY (without it a response written as headers then body waits for the
  client's delayed ACK, ~40 ms a call), and responses are buffered so that headers and body leave in one write;
* HTTP/1.1 keep-alive, so that PyMISP's session reuses its connection. Werkzeug 3's own ``run_wsgi`` closes
  every connection and, after each response, drains the socket (a 10 ms wait that would also swallow the
  next request on a kept-alive connection), because ``http.server`` cannot skip an unread body. Here the
  application always reads the whole body first, so the handler's ``run_wsgi`` is a short one of its own:
  it calls the application and writes status, headers and body at once; the connection stays open unless
  the client asks to close it;
* TLS handshakes run in each connection's own thread, with a time limit (Werkzeug would run them in
  ``accept``, where one silent client stalls every other).

No framework sits on the hot path: the WSGI callable reads the environ and answers bytes directly.

Errors are always JSON (:mod:`dxlmisp_devstack.misp.exceptions`); an unknown route is logged and answered 404.
The API keys never appear in a log line or a response.
"""
from __future__ import annotations

import argparse
import hmac
import http
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
import threading
from typing import Any, Callable, Iterable, Mapping

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from dxlmisp_devstack.misp import urls
from dxlmisp_devstack.misp.exceptions import (AUTH_FAILED, PERMISSION_DENIED, Forbidden, MethodNotAllowed,
                                      MispHttpError, ServerError, UnknownRoute)
from dxlmisp_devstack.misp.faults import Faults
from dxlmisp_devstack.misp.identity import ADMIN, READONLY, User
from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.responses import Call, MispResponses, Reply, parse_body
from dxlmisp_devstack.misp.zmq import ZmqPublisher

log = logging.getLogger("dxlmisp_devstack.misp")

ADMIN_KEY_ENV = "DEVSTACK_MISP_ADMIN_KEY"
READONLY_KEY_ENV = "DEVSTACK_MISP_READONLY_KEY"
TLS_HANDSHAKE_TIMEOUT = 10.0
_STATUS = {s.value: f"{s.value} {s.phrase}" for s in http.HTTPStatus}
DEV_PREFIX = "/devstack/"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class MispApp:
    """The WSGI application: route, authenticate, check the method and the role, run the handler."""

    def __init__(self, models: MispModels, keys: Mapping[str, User], faults: Faults | None = None) -> None:
        self.faults = faults if faults is not None else Faults()
        self.responses = MispResponses(models, self.faults)
        self._keys = [(key.encode("utf-8"), user) for key, user in keys.items() if key]

    def _user(self, environ: Mapping[str, Any]) -> User:
        given = (environ.get("HTTP_AUTHORIZATION") or environ.get("HTTP_X_MISP_AUTH") or "").strip().encode("utf-8")
        for key, user in self._keys:
            if given and hmac.compare_digest(given, key):
                return user
        raise Forbidden(AUTH_FAILED)

    def _handle(self, environ: Mapping[str, Any], method: str, path: str, raw_body: bytes) -> Reply:
        wrong_method: MethodNotAllowed | None = None
        try:
            match = urls.resolve(method, path)
        except UnknownRoute:
            log.warning("unknown route: %s %s", method, path)
            raise
        except MethodNotAllowed as exc:
            wrong_method, match = exc, None
        user = self._user(environ)
        if match is None:
            raise wrong_method  # type: ignore[misc]
        if match.route.writes and not user.can_write:
            raise MethodNotAllowed(PERMISSION_DENIED)
        call = Call(method, path, match.args, match.named, parse_body(raw_body), user)
        return self.responses.dispatch(match.route.handler, call)

    @staticmethod
    def _read_body(environ: Mapping[str, Any]) -> bytes:
        length = environ.get("CONTENT_LENGTH")
        if length:
            return environ["wsgi.input"].read(int(length))
        if environ.get("wsgi.input_terminated"):
            return environ["wsgi.input"].read()
        return b""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO") or "/"
        raw_body = self._read_body(environ)  # always read it all: the connection is kept alive
        dev_route = path.startswith(DEV_PREFIX)
        delay = 0.0 if dev_route else self.faults.delay_for(path)
        if delay:
            time.sleep(delay)
        canned = None if dev_route else self.faults.answer_for(path)
        try:
            reply = Reply(canned[1], canned[0]) if canned is not None else self._handle(environ, method, path, raw_body)
        except MispHttpError as exc:
            reply = Reply(exc.body(path), exc.status, exc.headers)
        except Exception as exc:  # an unexpected failure is still MISP-shaped JSON
            log.exception("internal error on %s %s", method, path)
            error = ServerError(f"An Internal Error Has Occurred: {type(exc).__name__}: {exc}")
            reply = Reply(error.body(path), error.status)
        if not dev_route:
            self.faults.record(method, path, reply.status)
        payload = b"" if reply.body is None else json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
        headers = [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(payload)))]
        headers.extend(reply.headers.items())
        start_response(_STATUS.get(reply.status, str(reply.status)), headers)
        return [payload]


class _Handler(WSGIRequestHandler):
    """Keep-alive, Nagle off, the TLS handshake in the connection's thread, one write per response, no access log."""

    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    server: _Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls_failed = False
        if self.server.ssl_context is not None:
            raw = self.request
            try:
                raw.settimeout(TLS_HANDSHAKE_TIMEOUT)
                self.request = self.server.ssl_context.wrap_socket(raw, server_side=True)
                self.request.settimeout(None)
                self.server.track(raw, self.request)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", self.client_address, exc)
                self.tls_failed = True
        super().setup()

    def handle(self) -> None:
        if not self.tls_failed:
            super().handle()

    def run_wsgi(self) -> None:
        """Call the application (which reads the whole body) and send its answer in one buffered write."""
        environ = self.make_environ()
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
            started[:] = [status, headers]
            return lambda data: None  # MispApp returns its body; it never calls write()

        body = b"".join(self.server.app(environ, start_response))
        code, _, reason = started[0].partition(" ")
        self.send_response(int(code), reason)
        for key, value in started[1]:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


class _Server(ThreadedWSGIServer):
    """Werkzeug's threaded server that leaves TLS to each connection's thread and tracks open connections.

    Werkzeug would wrap the listening socket, so that ``accept`` (in the one serving thread) runs each TLS
    handshake: a client that connects and stays silent would stall every other. Here the handler wraps its own
    socket, with a time limit. The open connections are remembered so that shutdown can end idle keep-alive
    connections.
    """

    def __init__(self, host: str, port: int, app: MispApp, *, tls: ssl.SSLContext | None) -> None:
        self._open: dict[socket.socket, socket.socket] = {}
        self._open_lock = threading.Lock()
        super().__init__(host, port, app, handler=_Handler)
        self.ssl_context = tls  # after Werkzeug's set-up, so that it does not wrap the listening socket

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open[request] = request
        super().process_request(request, client_address)

    def track(self, accepted: socket.socket, tls: socket.socket) -> None:
        """Remember the TLS socket that took over an accepted one."""
        with self._open_lock:
            self._open[accepted] = tls

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            live = self._open.pop(request, request)
        if live is not request:
            live.close()
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake the threads that wait on idle keep-alive connections, so that they end."""
        with self._open_lock:
            sockets = list(self._open.values())
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RunningServer:
    """A dev MISP server serving in a background thread: ``.url``, ``.port``, ``.models``, ``.shutdown()``."""

    def __init__(self, server: _Server, models: MispModels, scheme: str) -> None:
        self._server = server
        self.models = models
        self.host = server.host
        self.port = server.port
        self.url = f"{scheme}://{server.host}:{server.port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"misp-http-{self.port}", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving, end open connections and close the socket (the models stay open)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.close_connections()
        self._server.server_close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(models: MispModels, host: str = "127.0.0.1", port: int = 0, *, admin_key: str,
          readonly_key: str | None = None, tls: tuple[str, str] | None = None) -> RunningServer:
    """Serve ``models`` over HTTP (HTTPS with ``tls=(cert, key)``) on ``host:port`` (0: a free port)."""
    if not admin_key:
        raise ValueError("the admin API key must not be empty")
    keys = {admin_key: ADMIN}
    if readonly_key:
        keys[readonly_key] = READONLY
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    server = _Server(host, port, MispApp(models, keys), tls=context)
    return RunningServer(server, models, "https" if context else "http")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dxlmisp_devstack.misp.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--db", default=":memory:", help="SQLite file; data survives a restart")
    parser.add_argument("--zmq-port", type=int, default=None, help="publish ZeroMQ notifications (0: a free port)")
    parser.add_argument("--zmq-heartbeat", type=float, default=5.0, help="misp_json_self interval, seconds")
    parser.add_argument("--tls-cert", default=None)
    parser.add_argument("--tls-key", default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    """The CLI: serve until SIGTERM or SIGINT, then stop everything it started."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    admin_key = os.environ.get(ADMIN_KEY_ENV, "")
    if not admin_key:
        print(f"{ADMIN_KEY_ENV} must name the admin API key", file=sys.stderr)
        return 2
    publisher = None
    if args.zmq_port is not None:
        publisher = ZmqPublisher(args.host, args.zmq_port, args.zmq_heartbeat)
        bound = publisher.start()
        if args.zmq_port == 0:
            print(f"zeromq publisher on tcp://{args.host}:{bound}", file=sys.stderr, flush=True)
    models = MispModels(args.db, publisher.publish if publisher else None)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    server = serve(models, args.host, args.port, admin_key=admin_key,
                   readonly_key=os.environ.get(READONLY_KEY_ENV) or None, tls=tls)
    print(f"misp ready {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        if publisher is not None:
            publisher.close()
        models.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
