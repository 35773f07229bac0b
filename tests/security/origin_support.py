"""A plain or TLS HTTP origin on loopback for the device-side L4 tests: it answers every GET
with a redirect or a body and records what each request carried."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sim_support import LOOPBACK


@dataclass
class Origin:
    """A server on its own port: answers every GET with ``redirect_to`` (3xx) or ``body`` (200),
    and records the Authorization header of each request."""

    status: int = 302
    redirect_to: str = ""
    body: bytes = b""
    authorizations: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    url: str = ""


@contextmanager
def origin_server(origin: Origin, tls: tuple[Path, Path] | None = None) -> Iterator[Origin]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            return

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            with lock:
                origin.authorizations.append(self.headers.get("Authorization"))
                origin.paths.append(self.path)
            if origin.redirect_to:
                self.send_response(origin.status)
                self.send_header("Location", origin.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(origin.body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(origin.body)

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    httpd.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile=str(tls[0]), keyfile=str(tls[1]))
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=httpd.serve_forever, name="origin", daemon=True)
    thread.start()
    origin.url = f"{'https' if tls else 'http'}://{LOOPBACK}:{httpd.server_address[1]}"
    try:
        yield origin
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
