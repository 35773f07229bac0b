"""Helpers of the virtual-device end-to-end tests: a local OTA server and signed releases.

``OtaTestServer`` is a small threaded HTTP server on 127.0.0.1 that speaks the
device side of docs/device-protocol.md — version check (signed manifest +
X-Firmware-Url), firmware download with Range, status reports (acked), the
heartbeat — and records every request. Knobs make it misbehave the way real
networks and servers do: ignore Range, cut the connection after N bytes,
answer 500, serve bytes that differ from the manifest.

``ReleaseSigner`` makes real signed releases with csi_ota.keys/csi_ota.manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.keys import key_id_for, trusted_keys_value
from csi_ota.manifest import manifest_for_image, sign_manifest

LOOPBACK = "127.0.0.1"
FIRMWARE_PATH_RE = re.compile(r"^/api/ota/firmware/([0-9a-f]{64})$")
HEARTBEAT_PATH_RE = re.compile(r"^/api/devices/([^/]+)/heartbeat$")
RANGE_RE = re.compile(r"^bytes=(\d+)-$")
SEND_BLOCK_BYTES = 16 * 1024


@dataclass
class FirmwareRequest:
    """One GET of the firmware: what was asked and what was answered."""

    range_start: int | None
    status: int
    bytes_sent: int


@dataclass
class Release:
    image: bytes
    manifest: bytes
    version: str
    sequence: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


class ReleaseSigner:
    """A P-256 release key and the releases it signs (sequence numbers strictly increase)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.key_id = key_id_for(self.private_key.public_key())
        self.next_sequence = 1

    @property
    def trusted_keys(self) -> str:
        """The sim config / Kconfig value: ``<keyid>:<hex>``."""
        return trusted_keys_value([self.private_key.public_key()])

    def release(self, image: bytes, *, sequence: int | None = None, rollback: bool = False) -> Release:
        seq = self.next_sequence if sequence is None else sequence
        self.next_sequence = max(self.next_sequence, seq + 1)
        manifest = manifest_for_image(image, sequence=seq, key_id=self.key_id, rollback=rollback, notes="e2e")
        return Release(
            image=image,
            manifest=sign_manifest(manifest, self.private_key),
            version=manifest.version,
            sequence=seq,
        )


def app_image(version: str, behaviour: str = "normal", size_bytes: int = 150_000) -> bytes:
    return build_app_image(ImageSpec(version, behaviour=behaviour, target_size_bytes=size_bytes))


@dataclass
class ServerKnobs:
    """Misbehaviour switches; each counter is consumed by the requests it affects."""

    ignore_range: bool = False  # answer 200 with the whole image to a Range request
    cut_after_bytes: int | None = None  # close the connection after this many body bytes …
    cut_count: int = 0  # … for this many firmware responses
    fail_500_count: int = 0  # answer this many firmware requests with 500
    corrupt_offset: int | None = None  # flip one byte of the served image here
    # state -> how many reports in that state to answer with 503 (not recorded)
    fail_status_states: dict[str, int] = field(default_factory=dict)
    device_config: str = ""  # X-Device-Config on version-check answers
    firmware_url: str = ""  # X-Firmware-Url on offers ("": this server's /api/ota/firmware/<sha>)


@dataclass
class ServerRecords:
    checks: list[dict[str, str]] = field(default_factory=list)
    reports: list[dict[str, object]] = field(default_factory=list)
    firmware: list[FirmwareRequest] = field(default_factory=list)
    heartbeats: list[dict[str, object]] = field(default_factory=list)
    csi_posts: int = 0  # POST /api/csi/data requests (binary CSI frames, docs/csi-frame.md)
    csi_bytes: int = 0
    unauthorised: int = 0


class OtaTestServer:
    """``with OtaTestServer(token) as server: server.publish(release)`` — serves on ``server.base_url``."""

    def __init__(self, token: str = "device-token", *, tls: tuple[Path, Path] | None = None) -> None:
        """``tls=(cert, key)`` serves HTTPS with that certificate (csi_ota.certs)."""
        self.token = token
        self.scheme = "https" if tls else "http"
        self.knobs = ServerKnobs()
        self.records = ServerRecords()
        self.release: Release | None = None
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._httpd.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile=str(tls[0]), keyfile=str(tls[1]))
            # Handshake in the handler thread, not in the accept loop.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ota-test-server", daemon=True)

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> OtaTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self._httpd.server_address[1]}"

    @property
    def version_url(self) -> str:
        return f"{self.base_url}/api/ota/version"

    def publish(self, release: Release | None) -> None:
        with self.lock:
            self.release = release

    # -- what the device reported ---------------------------------------------
    def report_states(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(str(r["state"]), str(r["reason"])) for r in self.records.reports]

    def wait_for_report(self, state: str, timeout_s: float = 20.0) -> dict[str, object]:
        """The first report with this state (waits, bounded)."""
        with self.changed:
            ok = self.changed.wait_for(
                lambda: any(r["state"] == state for r in self.records.reports), timeout=timeout_s
            )
            if not ok:
                seen = [(r["state"], r["reason"]) for r in self.records.reports]
                raise AssertionError(f"no {state!r} report within {timeout_s} s; got {seen}")
            return next(r for r in self.records.reports if r["state"] == state)

    def firmware_bytes_sent(self) -> int:
        with self.lock:
            return sum(f.bytes_sent for f in self.records.firmware)

    # -- HTTP ----------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out without a delayed-ACK stall

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                return

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {server.token}":
                    return True
                with server.lock:
                    server.records.unauthorised += 1
                self._send(401, b"")
                return False

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                url = urlsplit(self.path)
                if url.path == "/healthz":
                    self._send(200, b"ok\n")
                    return
                if not self._authorised():
                    return
                if url.path == "/api/ota/version":
                    self._version(url.query)
                    return
                match = FIRMWARE_PATH_RE.match(url.path)
                if match:
                    self._firmware(match.group(1))
                    return
                self._send(404, b"not found\n")

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not self._authorised():
                    return
                path = urlsplit(self.path).path
                if path == "/api/csi/data":
                    with server.lock:
                        server.records.csi_posts += 1
                        server.records.csi_bytes += len(body)
                    self._send(204, b"")
                    return
                try:
                    data = json.loads(body)
                except json.JSONDecodeError:
                    self._send(400, b'{"detail": "body is not JSON"}')
                    return
                if path == "/api/ota/status":
                    with server.lock:
                        pending_failures = server.knobs.fail_status_states
                        refuse = pending_failures.get(str(data.get("state")), 0) > 0
                        if refuse:
                            pending_failures[str(data.get("state"))] -= 1
                    if refuse:
                        self._send(503, b'{"detail": "injected failure"}')
                        return
                    with server.changed:
                        seen = {r["seq"] for r in server.records.reports}
                        if data.get("seq") not in seen:
                            server.records.reports.append(data)
                        server.changed.notify_all()
                    self._send(200, json.dumps({"ack_seq": data.get("seq")}).encode())
                    return
                if HEARTBEAT_PATH_RE.match(path):
                    with server.changed:
                        server.records.heartbeats.append(data)
                        server.changed.notify_all()
                    self._send(200, b"{}")
                    return
                self._send(404, b"not found\n")

            def _version(self, query: str) -> None:
                params = {k: v[-1] for k, v in parse_qs(query).items()}
                with server.changed:
                    server.records.checks.append(params)
                    server.changed.notify_all()
                    release = server.release
                    device_config = server.knobs.device_config
                headers = {"X-Device-Config": device_config} if device_config else {}
                if release is None:
                    self._send(204, b"", headers)
                    return
                headers["Content-Type"] = "text/plain; charset=utf-8"
                headers["X-Firmware-Url"] = server.knobs.firmware_url or f"/api/ota/firmware/{release.sha256}"
                self._send(200, release.manifest, headers)

            def _firmware(self, sha: str) -> None:
                with server.lock:
                    release = server.release
                    knobs = server.knobs
                    fail = knobs.fail_500_count > 0
                    if fail:
                        knobs.fail_500_count -= 1
                    cut = knobs.cut_after_bytes if knobs.cut_count > 0 else None
                    if cut is not None:
                        knobs.cut_count -= 1
                    ignore_range = knobs.ignore_range
                    corrupt_offset = knobs.corrupt_offset
                range_match = RANGE_RE.match(self.headers.get("Range", ""))
                start = int(range_match.group(1)) if range_match else None
                if release is None or release.sha256 != sha:
                    self._record(start, 404, 0)
                    self._send(404, b"no such firmware\n")
                    return
                if fail:
                    self._record(start, 500, 0)
                    self._send(500, b"injected failure\n")
                    return
                image = bytearray(release.image)
                if corrupt_offset is not None:
                    image[corrupt_offset] ^= 0xFF
                total = len(image)
                status = 200
                body = bytes(image)
                headers = {
                    "ETag": f'"{sha}"',
                    "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream",
                }
                if start is not None and not ignore_range:
                    if start >= total:
                        self._record(start, 416, 0)
                        self._send(416, b"", {"Content-Range": f"bytes */{total}"})
                        return
                    status = 206
                    body = bytes(image[start:])
                    headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                limit = len(body) if cut is None else min(cut, len(body))
                sent = 0
                try:
                    while sent < limit:
                        block = body[sent : min(limit, sent + SEND_BLOCK_BYTES)]
                        self.wfile.write(block)
                        sent += len(block)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                self._record(start, status, sent)
                if cut is not None:
                    self.close_connection = True  # the device sees a truncated body

            def _record(self, start: int | None, status: int, sent: int) -> None:
                with server.changed:
                    server.records.firmware.append(FirmwareRequest(start, status, sent))
                    server.changed.notify_all()

        return Handler


def write_flash(path: Path, image: bytes) -> Path:
    """A 4 MB flash file with the default layout and ``image`` in ota_0 (csi_ota.sim.flashfile)."""
    from csi_ota.sim.flashfile import create_flash_file

    return create_flash_file(path, images={0: image})
