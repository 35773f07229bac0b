"""H4: stalled connections and downloads cannot exhaust the controller.

Before: 1,009 TLS connections each sending half a request header were held for good (uvicorn has
no header timeout); the version check and /healthz timed out and asyncio logged "Too many open
files" 1.47 M times. One device token held 399 stalled downloads. Now (limits lowered for a
bounded test): 300 stalled TLS connections from two addresses, a per-client cap of 100, a 5 s
header timeout — the APIs keep answering, every stalled connection is closed, the log stays small;
with one worker process and with two (`serve --workers 2`: the caps hold for the whole serve);
and a device token has at most --downloads-per-device downloads at once (a new one evicts the oldest),
host-wide, over sendfile, TLS and Range downloads.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

import httpx
import pytest
from controller_helpers import build_release, upload

from csi_ota import certs
from services import start_controller

HEADER_TIMEOUT_S = 5.0  # long enough to open 100 TLS connections on a loaded 2-core machine
PER_CLIENT = 100
ATTACKERS = ("127.0.0.2", "127.0.0.3")
STALLED_PER_ATTACKER = 150
ANSWER_BOUND_S = 5.0
CLOSE_MARGIN_S = 10.0


def _stalled_tls(port: int, source: str, context: ssl.SSLContext) -> ssl.SSLSocket | None:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    try:
        sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(b"GET /api/ota/version?device_id=x HTTP/1.1\r\nHost: x\r\nAuthoriz")  # never finished
        return sock
    except OSError:  # refused at once (cap reached during the handshake)
        raw.close()
        return None


def _watch_closed(sock: ssl.SSLSocket, closed_at: dict, key: int) -> None:
    sock.settimeout(HEADER_TIMEOUT_S + CLOSE_MARGIN_S + 5)
    with contextlib.suppress(OSError, ssl.SSLError):
        sock.recv(1)  # EOF, reset or a timeout
    closed_at[key] = time.monotonic()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_stalled_tls_connections_are_capped_and_closed(tmp_path, release_key, release_public_key, workers):
    certs.create_ca(tmp_path / "ca")
    certs.create_server_cert(tmp_path / "ca", tmp_path / "server")
    server = start_controller(
        tmp_path / "data",
        trusted_keys=[release_public_key],
        tls_cert=tmp_path / "server" / "server.crt",
        tls_key=tmp_path / "server" / "server.key",
        extra_args=[
            "--header-timeout",
            str(HEADER_TIMEOUT_S),
            "--max-connections-per-client",
            str(PER_CLIENT),
            "--max-connections",
            "400",
            "--workers",
            str(workers),
        ],
    )
    port = int(server.device_url.rsplit(":", 1)[1])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sockets: list[ssl.SSLSocket] = []
    closed_at: dict[int, float] = {}
    watchers = []
    try:
        with server.management_client() as mgmt:
            token = mgmt.post("/api/devices", json={"device_id": "h4_dev"}).json()["token"]
        opened_at: dict[int, float] = {}
        sources: dict[int, str] = {}
        refused_in_setup = dict.fromkeys(ATTACKERS, 0)  # the reset came before the request went out
        for source in ATTACKERS:
            for _ in range(STALLED_PER_ATTACKER):
                sock = _stalled_tls(port, source, context)
                if sock is None:
                    refused_in_setup[source] += 1
                    continue
                key = len(sockets)
                sockets.append(sock)
                opened_at[key] = time.monotonic()
                sources[key] = source
                watcher = threading.Thread(target=_watch_closed, args=(sock, closed_at, key), daemon=True)
                watcher.start()
                watchers.append(watcher)
        attack_done = time.monotonic()

        # During the attack both APIs answer promptly.
        started = time.monotonic()
        health = httpx.get(f"{server.management_url}/healthz", timeout=ANSWER_BOUND_S)
        with server.device_client(token, timeout=ANSWER_BOUND_S) as device:
            check = device.get("/api/ota/version", params={"device_id": "h4_dev", "version": "1.0.0"})
        assert health.status_code == 200 and check.status_code == 204
        assert time.monotonic() - started < ANSWER_BOUND_S

        for watcher in watchers:
            watcher.join(timeout=max(0.0, attack_done + HEADER_TIMEOUT_S + CLOSE_MARGIN_S - time.monotonic()))
        assert len(closed_at) == len(sockets), (
            f"{len(sockets) - len(closed_at)} stalled connections still open"
        )
        held = {k: closed_at[k] - opened_at[k] for k in closed_at}
        for source in ATTACKERS:
            mine = [k for k in held if sources[k] == source]
            refused_at_once = [k for k in mine if held[k] < HEADER_TIMEOUT_S / 2]
            admitted = [k for k in mine if held[k] >= HEADER_TIMEOUT_S / 2]
            assert refused_at_once or refused_in_setup[source], (
                f"{source}: the per-client cap never refused a connection "
                f"({len(admitted)} admitted, held up to {max((held[k] for k in mine), default=0):.1f} s)"
            )
            # Never more than PER_CLIENT held at once (slots free up as stalled ones time out).
            events = sorted([(opened_at[k], 1) for k in admitted] + [(closed_at[k], -1) for k in admitted])
            open_now = peak = 0
            for _, step in events:
                open_now += step
                peak = max(peak, open_now)
            assert peak <= PER_CLIENT + 3, f"{source}: {peak} stalled connections held at once"
        assert max(held.values()) < HEADER_TIMEOUT_S + CLOSE_MARGIN_S

        # Afterwards everything works, and the log did not flood.
        with server.device_client(token, timeout=ANSWER_BOUND_S) as device:
            assert device.get("/api/ota/version", params={"device_id": "h4_dev"}).status_code == 204
        log_text = server.log()
        assert server.log_path.stat().st_size < 64 * 1024, (
            f"log grew to {server.log_path.stat().st_size} bytes"
        )
        assert log_text.count("connection cap reached") <= 20
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


EVICTION_MARGIN_S = 3.0  # a worker notices an eviction within download_slots.POLL_INTERVAL_S (0.2 s)
EVICTED_CLOSE_BOUND_S = 20.0


def _read_head(sock) -> tuple[bytes, int, bytes]:
    """(status line, Content-Length, body bytes read with the head) of a response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "the connection closed before the response head"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    length = next(
        int(v) for n, _, v in (line.partition(b":") for line in lines[1:]) if n.lower() == b"content-length"
    )
    return lines[0], length, body


def _read_body(sock, expected: int, already: int, deadline: float) -> tuple[int, bool]:
    """(bytes of the body received, whether the server closed the connection) once ``expected``
    bytes arrived, the connection closed, or ``deadline`` passed."""
    received = already
    while received < expected:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            return received, False
        except (ConnectionError, ssl.SSLError):
            return received, True
        if not data:
            return received, True
        received += len(data)
    return received, False


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_one_device_token_cannot_hold_many_downloads(tmp_path, release_key, release_public_key, scheme):
    """Five downloads of one token (full images and Range requests) with a cap of 3, on two workers.

    Over plain HTTP full images go out with sendfile(2) and ranges are streamed; over TLS
    everything is streamed. The two oldest are closed mid-image, the three newest run to the end,
    whichever worker process holds which connection.
    """
    # Big enough that a reader that does not read stays mid-download (socket buffers hold a few MB).
    release = build_release(release_key, target_size_bytes=12 * 1024 * 1024)
    tls = {}
    if scheme == "https":
        certs.create_ca(tmp_path / "ca")
        certs.create_server_cert(tmp_path / "ca", tmp_path / "server")
        tls = {"tls_cert": tmp_path / "server" / "server.crt", "tls_key": tmp_path / "server" / "server.key"}
    server = start_controller(
        tmp_path / "data",
        trusted_keys=[release_public_key],
        extra_args=["--downloads-per-device", "3", "--workers", "2"],
        extra_env={"FIRMWARE_MAX_SIZE": str(16 * 1024 * 1024)},
        **tls,
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sockets = []
    try:
        assert upload(server, release).status_code == 201
        with server.management_client() as mgmt:
            token = mgmt.post("/api/devices", json={"device_id": "h4_dl"}).json()["token"]
            mgmt.put("/api/devices/h4_dl/assignment", json={"release": release.version}).raise_for_status()
        port = int(server.device_url.rsplit(":", 1)[1])
        range_start = 1024

        def start_download(ranged: bool) -> tuple[bytes, int, int]:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock = context.wrap_socket(raw, server_hostname="localhost") if scheme == "https" else raw
            sockets.append(sock)
            range_header = f"Range: bytes={range_start}-\r\n" if ranged else ""
            sock.sendall(
                f"GET /api/ota/firmware/{release.sha256} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\n{range_header}\r\n".encode()
            )
            status, length, body = _read_head(sock)
            return status, length, len(body)

        ranged = [False, True, False, True, False]  # evicted: one full image, one range
        heads = [start_download(r) for r in ranged]
        expected_status = [b"HTTP/1.1 206 Partial Content" if r else b"HTTP/1.1 200 OK" for r in ranged]
        assert [h[0] for h in heads] == expected_status  # a resuming device is never refused ...
        assert [h[1] for h in heads] == [len(release.image) - (range_start if r else 0) for r in ranged]
        time.sleep(EVICTION_MARGIN_S)
        for index, (sock, (_status, length, already)) in enumerate(zip(sockets, heads, strict=True)):
            deadline = time.monotonic() + EVICTED_CLOSE_BOUND_S
            received, closed = _read_body(sock, length, already, deadline)
            if index < 2:  # ... the oldest downloads beyond the cap are closed instead
                assert closed, f"evicted download {index} still open after {received} of {length} bytes"
                assert received < length, f"evicted download {index} ran to the end"
            else:
                assert (received, closed) == (length, False), f"download {index} was cut short"
        for sock in sockets:
            sock.close()
        deadline = time.monotonic() + 10
        with server.device_client(token) as device:
            while True:
                again = device.get(f"/api/ota/firmware/{release.sha256}")
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert again.status_code == 200 and again.content == release.image
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def _held_for(port: int, steps: list, bound_s: float) -> tuple[float, bytes]:
    """Sends ``steps`` (bytes, or a float: seconds of silence); then (seconds until the server
    closed the connection, what it answered). bound_s if it was still open then."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=bound_s)
    started = time.monotonic()
    answer = b""
    try:
        for step in steps:
            if isinstance(step, float):
                time.sleep(step)
            else:
                sock.sendall(step)
        sock.settimeout(max(0.1, started + bound_s - time.monotonic()))
        while data := sock.recv(65536):
            answer += data
    except TimeoutError:
        return bound_s, answer
    except OSError:
        pass
    finally:
        sock.close()
    return time.monotonic() - started, answer


def test_a_stalled_request_body_is_closed_but_a_slow_one_is_not(tmp_path):
    """A declared body that never arrives held a connection for good (the header timeout ends with
    the headers): unauthenticated on the device port, with an admin token on the management port.
    Now a body that stops for --header-timeout closes the connection; one that keeps trickling in
    (a byte every half timeout, for twice the timeout) is answered."""
    server = start_controller(
        tmp_path / "data", extra_args=["--header-timeout", str(HEADER_TIMEOUT_S), "--workers", "2"]
    )
    try:
        device_port = int(server.device_url.rsplit(":", 1)[1])
        management_port = int(server.management_url.rsplit(":", 1)[1])
        head = b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        stalled_device = [b"POST /api/ota/status HTTP/1.1\r\n" + head + b'{"device_id"']
        admin = f"Authorization: Bearer {server.admin_token}\r\n".encode()
        stalled_management = [b"POST /api/devices HTTP/1.1\r\n" + admin + head + b'{"device_id"']
        body = b'{"device_id": "h4_slow"}'
        trickle_head = b"Connection: close\r\n" + head.replace(b"100", str(len(body)).encode())
        trickle = [b"POST /api/devices HTTP/1.1\r\n" + admin + trickle_head]
        for index in range(0, len(body), 6):
            trickle += [HEADER_TIMEOUT_S / 2, body[index : index + 6]]
        results = {}
        threads = [
            threading.Thread(target=lambda k=k, p=p, s=s: results.__setitem__(k, _held_for(p, s, 30.0)))
            for k, p, s in (
                ("device", device_port, stalled_device),
                ("management", management_port, stalled_management),
                ("trickle", management_port, trickle),
            )
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
        for name in ("device", "management"):
            held_s, answer = results[name]
            assert answer == b"", f"{name}: answered a request whose body never came: {answer[:60]!r}"
            assert HEADER_TIMEOUT_S * 0.9 <= held_s < HEADER_TIMEOUT_S + CLOSE_MARGIN_S, (
                f"{name}: a stalled body held its connection {held_s:.1f} s"
            )
        held_s, answer = results["trickle"]
        assert answer.startswith(b"HTTP/1.1 201"), f"a slow but steady body was cut: {answer[:80]!r}"
        assert held_s > HEADER_TIMEOUT_S * 1.5
    finally:
        server.stop()
