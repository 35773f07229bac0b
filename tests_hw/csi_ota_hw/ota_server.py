"""A small OTA server for the tests: the device protocol of docs/device-protocol.md, on purpose imperfect.

The controller (`csi-ota serve`) is the real thing; this server exists for the scenarios that
need a server to misbehave in a controlled way — ignore Range, redirect the download, send a
chunked body, cut the connection after N bytes — and to record exactly what the device asked
for and reported. It serves one assigned release at a time (a signed manifest plus image
bytes), answers status reports with ``{"ack_seq": n}`` and keeps every request.

Threaded, loopback by default (hardware mode binds the address the board can reach), and
bounded: every wait takes a timeout, the server thread stops at :meth:`OtaTestServer.stop`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FIRMWARE_PATH_PREFIX = "/api/ota/firmware/"
REDIRECT_PATH_PREFIX = "/redirect/firmware/"
VERSION_PATHS = ("/api/ota/version", "/version")
STATUS_PATH = "/api/ota/status"
HEALTH_PATH = "/healthz"
HEARTBEAT_PATH_RE = re.compile(r"^/api/devices/([^/]+)/heartbeat$")
CSI_DATA_PATH = "/api/csi/data"
RANGE_HEADER_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
CHUNK_BYTES = 4096
MAX_REQUEST_BODY_BYTES = 64 * 1024


class _QuietHTTPServer(ThreadingHTTPServer):
    """Devices vanish mid-request (resets, power cuts): that is the test, not an error to print."""

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - base-class signature
        return


@dataclass
class ServerBehaviour:
    """How the firmware download misbehaves. Defaults: a well-behaved server."""

    range_support: bool = True  # False: ignore Range, always 200 with the whole body
    redirect_firmware: bool = False  # True: X-Firmware-Url points at a 302 to the real URL
    chunked: bool = False  # True: Transfer-Encoding: chunked, no Content-Length
    # Each firmware response pops the first entry and closes the connection after that many
    # body bytes; an empty list means complete responses.
    cut_after_bytes: list[int] = field(default_factory=list)
    # Pause after every CHUNK_BYTES of firmware body: a download slow enough to interrupt.
    delay_per_chunk_s: float = 0.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    range_header: str | None
    status: int
    body_bytes_sent: int
    time_s: float


@dataclass(frozen=True)
class Release:
    manifest: bytes
    image: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


class OtaTestServer:
    """Serves one assigned release to devices presenting ``token``; records what they do."""

    def __init__(
        self, *, bind_host: str = "127.0.0.1", port: int = 0, advertised_host: str | None = None, token: str
    ) -> None:
        self.token = token
        self.behaviour = ServerBehaviour()
        self._lock = threading.Condition()
        self._release: Release | None = None
        self._images: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self.status_reports: list[dict] = []
        self.heartbeats: list[dict] = []
        self.csi_posts = 0
        self.firmware_bytes_streamed = 0  # live count, updated while a download runs
        self._httpd = _QuietHTTPServer((bind_host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.host = advertised_host or bind_host
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> OtaTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OtaTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration -----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def version_url(self) -> str:
        return f"{self.base_url}{VERSION_PATHS[0]}"

    def assign(self, manifest: bytes, image: bytes) -> Release:
        """Make the next version check answer 200 with ``manifest``; serve ``image`` by its SHA-256."""
        release = Release(manifest=manifest, image=image)
        with self._lock:
            self._release = release
            self._images[release.sha256] = image
        return release

    def unassign(self) -> None:
        with self._lock:
            self._release = None

    # -- records -----------------------------------------------------------------------------
    def reports(self, state: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.status_reports if state is None or r.get("state") == state]

    def firmware_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(FIRMWARE_PATH_PREFIX)]

    def firmware_bytes_sent(self) -> int:
        return sum(r.body_bytes_sent for r in self.firmware_requests())

    def wait_for_report(
        self, predicate: Callable[[dict], bool], *, timeout_s: float, after_index: int = 0
    ) -> dict:
        """The first status report (from ``after_index`` on) matching ``predicate``; TimeoutError if none."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                for report in self.status_reports[after_index:]:
                    if predicate(report):
                        return report
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(r.get("state"), r.get("reason")) for r in self.status_reports]
                    raise TimeoutError(f"no matching status report within {timeout_s}s; seen {seen}")
                self._lock.wait(timeout=min(remaining, 0.5))

    # -- called by the handler -----------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> RecordedRequest:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
        return request

    def _count_firmware_bytes(self, record: RecordedRequest, n: int) -> None:
        with self._lock:
            self.firmware_bytes_streamed += n
            record.body_bytes_sent += n

    def _add_report(self, report: dict) -> None:
        with self._lock:
            self.status_reports.append(report)
            self._lock.notify_all()

    def _current_release(self) -> Release | None:
        with self._lock:
            return self._release

    def _image(self, sha256: str) -> bytes | None:
        with self._lock:
            return self._images.get(sha256)

    def _next_cut(self) -> int | None:
        with self._lock:
            if self.behaviour.cut_after_bytes:
                return self.behaviour.cut_after_bytes.pop(0)
            return None


def _make_handler(server: OtaTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "csi-ota-test-server/1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base-class signature
            return  # the records are the log

        # -- helpers ---------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            """Record the request, then answer it (a client that has the answer sees the record)."""
            self._record(status, len(body) if self.command != "HEAD" else 0)
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _record(self, status: int, sent: int) -> RecordedRequest:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            return server._record(
                RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=query,
                    range_header=self.headers.get("Range"),
                    status=status,
                    body_bytes_sent=sent,
                    time_s=time.monotonic(),
                )
            )

        def _authorised(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {server.token}"

        def _read_body(self) -> bytes | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > MAX_REQUEST_BODY_BYTES:
                return None
            return self.rfile.read(length)

        # -- GET -------------------------------------------------------------------------
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            path = urlsplit(self.path).path
            if not self._authorised():
                self._send(401)
                return
            if path == HEALTH_PATH:
                self._send(200, b"ok\n")
            elif path in VERSION_PATHS:
                self._version()
            elif path.startswith(REDIRECT_PATH_PREFIX):
                sha = path[len(REDIRECT_PATH_PREFIX) :]
                self._send(302, headers={"Location": f"{FIRMWARE_PATH_PREFIX}{sha}"})
            elif path.startswith(FIRMWARE_PATH_PREFIX):
                self._firmware(path[len(FIRMWARE_PATH_PREFIX) :])
            else:
                self._send(404, b"not found\n")

        def _version(self) -> None:
            release = server._current_release()
            if release is None:
                self._send(204)
                return
            prefix = REDIRECT_PATH_PREFIX if server.behaviour.redirect_firmware else FIRMWARE_PATH_PREFIX
            headers = {
                "Content-Type": "text/plain; charset=utf-8",
                "X-Firmware-Url": f"{prefix}{release.sha256}",
            }
            self._send(200, release.manifest, headers)

        def _firmware(self, sha: str) -> None:
            image = server._image(sha)
            if image is None:
                self._send(404, b"unknown image\n")
                return
            total = len(image)
            start = 0
            status = 200
            headers = {"Content-Type": "application/octet-stream", "ETag": f'"{sha}"'}
            range_header = self.headers.get("Range")
            if range_header and server.behaviour.range_support:
                match = RANGE_HEADER_RE.match(range_header.strip())
                if not match or int(match.group(1)) >= total:
                    headers["Content-Range"] = f"bytes */{total}"
                    self._send(416, headers=headers)
                    return
                start = int(match.group(1))
                status = 206
                headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
            body = image[start:]
            cut = server._next_cut()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if server.behaviour.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(body)))
            if cut is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            record = self._record(status, 0)
            sent = 0
            limit = len(body) if cut is None else min(cut, len(body))
            try:
                while sent < limit:
                    piece = body[sent : min(sent + CHUNK_BYTES, limit)]
                    if server.behaviour.chunked:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    else:
                        self.wfile.write(piece)
                    sent += len(piece)
                    server._count_firmware_bytes(record, len(piece))
                    if server.behaviour.delay_per_chunk_s:
                        time.sleep(server.behaviour.delay_per_chunk_s)
                if cut is None and server.behaviour.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        # -- POST ------------------------------------------------------------------------
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            path = urlsplit(self.path).path
            body = self._read_body()
            if body is None:
                self._send(413, b"body too large\n")
                return
            if not self._authorised():
                self._send(401)
                return
            if path == CSI_DATA_PATH:
                server.csi_posts += 1
                self._send(200, b"{}", {"Content-Type": "application/json"})
                return
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                self._send(400, b"body is not JSON\n")
                return
            if path == STATUS_PATH:
                if not isinstance(payload, dict) or not isinstance(payload.get("seq"), int):
                    self._send(400, b"status report needs an integer seq\n")
                    return
                server._add_report(payload)
                answer = json.dumps({"ack_seq": payload["seq"]}).encode()
                self._send(200, answer, {"Content-Type": "application/json"})
            elif HEARTBEAT_PATH_RE.match(path):
                server.heartbeats.append(payload)
                self._send(200, b"{}", {"Content-Type": "application/json"})
            else:
                self._send(404, b"not found\n")

    return Handler
