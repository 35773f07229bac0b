"""M1: the management API authenticates before it reads a body, and every body is capped.

Before: /api/rollouts and /api/rollouts/{id}/exclude read the whole body before the 401 (FastAPI
parses a JSON body before running the auth dependency): a 400 MB anonymous POST raised the
controller's RSS from 143 to 961 MB. Now the 401 (or the 413) arrives while the client has sent
only the headers and a first chunk.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

SENT_BEFORE_ANSWER_BYTES = 64 * 1024
ANSWER_TIMEOUT_S = 10.0


def _post_partially(url: str, path: str, headers: dict[str, str], declared: int | None) -> tuple[int, float]:
    """Sends a request's headers and 64 KiB of a (much) bigger body; returns (status, seconds to answer)."""
    parts = urlsplit(url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if declared is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {declared}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    chunk = b"[" + b"1," * (SENT_BEFORE_ANSWER_BYTES // 2)
    with socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_TIMEOUT_S) as sock:
        started = time.monotonic()
        sock.sendall(head)
        if declared is None:  # chunked: keep sending until the server answers (bounded: 4 MiB)
            sock.settimeout(0.05)
            for _ in range(64):
                try:
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                except OSError:
                    break
                try:
                    first = sock.recv(65536)
                    if first:
                        break
                except TimeoutError:
                    continue
            else:
                first = b""
            sock.settimeout(ANSWER_TIMEOUT_S)
        else:
            sock.sendall(chunk)
            first = b""
        data = first
        while b"\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        elapsed = time.monotonic() - started
    status_line = data.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 "), repr(data[:200])
    return int(status_line.split()[1]), elapsed


@pytest.mark.parametrize("path", ["/api/rollouts", "/api/rollouts/1/exclude", "/api/devices", "/api/batch"])
def test_anonymous_huge_post_is_refused_before_the_body(sqlite_controller, path):
    for headers in ({}, {"Authorization": "Bearer adm_not-a-real-token"}):
        status, elapsed = _post_partially(sqlite_controller.management_url, path, headers, 400_000_000)
        assert status == 401
        assert elapsed < ANSWER_TIMEOUT_S


def test_device_token_is_not_an_admin_token_for_the_guard(sqlite_controller):
    from controller_helpers import new_device

    _, device_token = new_device(sqlite_controller)
    headers = {"Authorization": f"Bearer {device_token}"}
    status, _ = _post_partially(sqlite_controller.management_url, "/api/rollouts", headers, 50_000_000)
    assert status == 401


@pytest.mark.parametrize("declared", [50_000_000, None])
def test_authenticated_bodies_are_capped(sqlite_controller, declared):
    headers = {"Authorization": f"Bearer {sqlite_controller.admin_token}"}
    status, elapsed = _post_partially(sqlite_controller.management_url, "/api/rollouts", headers, declared)
    assert status == 413
    assert elapsed < ANSWER_TIMEOUT_S


def test_device_api_bodies_are_capped(sqlite_controller):
    for path in ("/api/ota/status", "/api/csi/data", "/api/devices/x/heartbeat"):
        status, _ = _post_partially(sqlite_controller.device_url, path, {}, 50_000_000)
        assert status == 413, path
        status, _ = _post_partially(sqlite_controller.device_url, path, {}, None)
        assert status == 413, path


def test_normal_requests_still_work(sqlite_controller):
    with sqlite_controller.management_client() as mgmt:
        assert mgmt.post("/api/devices", json={"device_id": "m1_ok"}).status_code == 201
        assert mgmt.post("/api/rollouts", json={}).status_code == 422
