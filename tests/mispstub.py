"""A tiny MISP over real HTTP for the MispConnection and raw-path tests: the calls PyMISP makes when built,
plus scripted routes (``route``), an outage switch (``down``) and hanging or cut-short answers."""
from __future__ import annotations

import json
import socket
import threading
from configparser import ConfigParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dxlmispservice.settings import Settings

KEY = "stubKey0123456789abcdefghijklmnopqrstuvw"

USER = {"User": {"id": "1", "email": "admin@stub.test", "org_id": "1", "role_id": "1"},
        "Role": {"id": "1", "name": "admin"}, "UserSetting": []}


class MispStub:
    """A tiny MISP on 127.0.0.1: the three calls PyMISP makes when built, plus scripted routes."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.down = False
        self.release = threading.Event()
        self.requests: list[str] = []
        self.streamed = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                stub.answer(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stub.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.lstrip("/")
        self.requests.append(path)
        if self.down:
            status, ctype, body = 503, "text/html", b"<html>Service Unavailable</html>"
        elif handler.headers.get("Authorization") != KEY:
            status, ctype, body = 403, "application/json", json.dumps(
                {"name": "Authentication failed.", "message": "Authentication failed.", "url": "/" + path}
            ).encode()
        elif path in self.routes:
            status, ctype, body = self.routes[path]
        elif path == "servers/getVersion":
            status, ctype, body = 200, "application/json", b'{"version": "2.5.1"}'
        elif path == "users/view/me":
            status, ctype, body = 200, "application/json", json.dumps(USER).encode()
        else:
            status, ctype, body = 404, "application/json", json.dumps(
                {"name": "Not Found", "message": "Not Found", "url": "/" + path}).encode()
        if status == 0:  # hang until the test ends
            self.release.wait()
            return
        if status == -2:  # a huge answer: 200 MB of "[" + body repeated, written until the client goes away
            handler.send_response(200)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(200_000_000))
            handler.end_headers()
            try:
                handler.wfile.write(b"[")
                while self.streamed < 200_000_000:
                    handler.wfile.write(body)
                    self.streamed += len(body)
            except OSError:
                pass
            handler.close_connection = True
            return
        if status == -1:  # promise more than is sent, then close
            handler.send_response(200)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body) + 100))
            handler.end_headers()
            handler.wfile.write(body)
            handler.close_connection = True
            return
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def route(self, path: str, status: int, body: object, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = (status, ctype, data)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def settings_for(url: str, key: str = KEY, *, extra: str = "", sections: str = "") -> Settings:
    parser = ConfigParser()
    parser.read_string(f"[General]\nhost={url}\napiKey={key}\n{extra}\n{sections}")
    return Settings.from_parser(parser, environ={})
