"""The device port's hot path (cache, group commit, sendfile, workers) against real `csi-ota serve` processes."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import httpx
import pytest
from controller_helpers import BACKENDS, new_device, upload
from sqlalchemy import select, update

from csi_ota.controller.db import make_engine
from csi_ota.controller.models import Device
from services import controller_server

WAIT_S = 15.0
START_S = 120.0  # several worker processes start slowly on a machine 8 agents share
CONNECTIONS = 8  # separate keep-alive connections: the kernel spreads them over the workers


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _device_row(database_url: str, device_id: str) -> Device:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Device.__table__).where(Device.id == device_id)).one()
    finally:
        engine.dispose()


def _raw_get(url: str, path: str, token: str) -> bytes:
    """The whole response to one GET on its own connection (Connection: close), without its date header."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S) as plain:
        sock = plain
        if parts.scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a test CA
            sock = context.wrap_socket(plain)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
        if sock is not plain:
            sock.close()
    return re.sub(rb"\r\ndate: [^\r]*", b"", b"".join(chunks), count=1)


def _clients(server, token: str, count: int = CONNECTIONS) -> list[httpx.Client]:
    return [server.device_client(token, timeout=10) for _ in range(count)]


def test_hot_path_answers_as_the_fastapi_path(controller, make_release):
    """A repeated parameter sends a check to the FastAPI path: both paths answer the same bytes."""
    release = make_release()
    assert upload(controller, release).status_code == 201
    device_id, token = new_device(controller, tags=["hot"])
    with controller.management_client() as mgmt:
        assert (
            mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": release.version}).status_code
            == 200
        )
        assert (
            mgmt.put(
                f"/api/devices/{device_id}/config", json={"config": {"check_interval_sec": 600}}
            ).status_code
            == 200
        )
    cases = [
        {"device_id": device_id, "version": "1.0.0", "slot": "0", "state": "valid"},  # 200 + manifest
        {"device_id": device_id, "version": release.version, "slot": "1", "state": "valid"},  # 204
        {"device_id": "someone_else", "version": "1.0.0"},  # 403
    ]
    with controller.device_client(token) as device, controller.device_client("dev_unknown") as stranger:
        for params in cases:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            hot = device.get(f"/api/ota/version?{query}")
            slow = device.get(
                f"/api/ota/version?{query}&device_id={params['device_id']}"
            )  # repeated: FastAPI
            assert (hot.status_code, hot.content) == (slow.status_code, slow.content)
            for header in (
                "content-type",
                "content-length",
                "x-firmware-url",
                "x-device-config",
                "www-authenticate",
            ):
                assert hot.headers.get(header) == slow.headers.get(header), header
        hot, slow = stranger.get("/api/ota/version"), stranger.get("/api/ota/version?version=1&version=1")
        assert (hot.status_code, hot.content, hot.headers.get("www-authenticate")) == (
            slow.status_code,
            slow.content,
            slow.headers.get("www-authenticate"),
        )
        assert hot.status_code == 401
        # What the hot path refuses to parse, FastAPI explains (422).
        assert device.get("/api/ota/version", params={"slot": "99"}).status_code == 422


def test_answers_from_the_http_protocol_are_the_asgi_paths_bytes(controller, make_release):
    """Version checks and full downloads answered inside the HTTP protocol (csi_ota.controller.fast_http)
    are byte for byte what the ASGI hot path sends; a percent-encoded path takes the ASGI path."""
    release = make_release(target_size_bytes=150_000)
    assert upload(controller, release).status_code == 201
    device_id, token = new_device(controller)
    with controller.management_client() as mgmt:
        assert (
            mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": release.version}).status_code
            == 200
        )
    url = controller.device_url
    check = f"?device_id={device_id}&version=1.0.0&slot=0&state=valid"
    pairs = [
        (f"/api/ota/version{check}", f"/api/ota/versio%6E{check}"),  # 200 + manifest
        (f"/version?version={release.version}", f"/versio%6E?version={release.version}"),  # 204
        (f"/api/ota/firmware/{release.sha256}", f"/api/ota/firmwar%65/{release.sha256}"),  # 200 + image
        (f"/api/ota/firmware/{'0' * 64}", f"/api/ota/firmwar%65/{'0' * 64}"),  # 404
    ]
    for fast, asgi in pairs:
        assert _raw_get(url, fast, token) == _raw_get(url, asgi, token), fast
    image = _raw_get(url, f"/api/ota/firmware/{release.sha256}", token)
    assert image.startswith(b"HTTP/1.1 200 OK\r\n") and image.endswith(release.image)
    stranger = _raw_get(url, "/api/ota/version", "dev_unknown")
    assert stranger.startswith(b"HTTP/1.1 401 ") and stranger == _raw_get(
        url, "/api/ota/versio%6E", "dev_unknown"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_revocation_and_assignment_reach_every_worker_at_once(
    backend, backend_url, tmp_path, make_release, release_public_key
):
    with controller_server(
        tmp_path / "data",
        database_url=backend_url(backend),
        trusted_keys=[release_public_key],
        extra_args=["--workers", "2", "--device-rate", "0"],
        timeout_s=START_S,
    ) as server:
        release = make_release()
        assert upload(server, release).status_code == 201
        device_id, token = new_device(server)
        clients = _clients(server, token)
        try:
            for client in clients:  # a device registered a moment ago is known to every worker
                assert client.get("/api/ota/version", params={"version": "1.0.0"}).status_code == 204
            with server.management_client() as mgmt:
                assert (
                    mgmt.put(
                        f"/api/devices/{device_id}/assignment", json={"release": release.version}
                    ).status_code
                    == 200
                )
            for client in clients:
                offer = client.get("/api/ota/version", params={"version": "1.0.0"})
                assert offer.status_code == 200 and offer.content == release.manifest
            with server.management_client() as mgmt:
                assert mgmt.post(f"/api/devices/{device_id}/token/revoke").status_code in (200, 204)
            for client in clients:  # no grace period on any worker
                assert client.get("/api/ota/version", params={"version": "1.0.0"}).status_code == 401
                assert client.get(f"/api/ota/firmware/{release.sha256}").status_code == 401
        finally:
            for client in clients:
                client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_change_written_by_another_host_reaches_the_hot_path(backend, backend_url, tmp_path):
    """An UPDATE made outside this controller (another host, psql) is followed through registry_changes."""
    with controller_server(
        tmp_path / "data", database_url=backend_url(backend), extra_args=["--workers", "2"], timeout_s=START_S
    ) as server:
        device_id, token = new_device(server)
        with server.device_client(token) as device:
            assert device.get("/api/ota/version").status_code == 204
            engine = make_engine(server.database_url, pool_size=1)
            try:
                with engine.begin() as conn:
                    conn.execute(update(Device).where(Device.id == device_id).values(token_hash=None))
            finally:
                engine.dispose()
            deadline = time.monotonic() + WAIT_S
            status = 204
            while status != 401 and time.monotonic() < deadline:
                time.sleep(0.05)
                status = device.get("/api/ota/version").status_code
            assert status == 401


def test_version_checks_group_commit_last_seen_and_reconcile_before_answering(controller):
    devices = [new_device(controller) for _ in range(5)]
    before = time.time()
    for device_id, token in devices:
        with controller.device_client(token) as device:
            # The first check changes what the registry knows: committed before the answer.
            assert (
                device.get(
                    "/api/ota/version", params={"version": "3.1.4", "slot": 1, "state": "valid"}
                ).status_code
                == 204
            )
        row = _device_row(controller.database_url, device_id)
        assert (row.version, row.slot, row.ota_state) == ("3.1.4", 1, "valid")
        first_seen = row.last_seen
        with controller.device_client(token) as device:  # nothing new: only last_seen moves, in a later group
            assert device.get("/api/ota/version", params={"version": "3.1.4", "slot": 1}).status_code == 204
        deadline = time.monotonic() + WAIT_S
        while (
            _device_row(controller.database_url, device_id).last_seen <= first_seen
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert _device_row(controller.database_url, device_id).last_seen > first_seen
        assert first_seen.timestamp() >= before - 5  # naive UTC from the row; generous clock margin


@pytest.mark.parametrize("workers", [1, 2])
def test_firmware_goes_out_with_sendfile_and_metrics_count_every_worker(
    workers, tmp_path, make_release, release_public_key
):
    with controller_server(
        tmp_path / "data",
        trusted_keys=[release_public_key],
        extra_args=["--workers", str(workers)],
        timeout_s=START_S,
    ) as server:
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
        assert len(children.stdout.split()) == workers - 1  # the device workers are up (and stay up)
        release = make_release(target_size_bytes=300_000)
        assert upload(server, release).status_code == 201
        device_id, token = new_device(server)
        with server.management_client() as mgmt:  # a device downloads only its assigned image
            assert (
                mgmt.put(
                    f"/api/devices/{device_id}/assignment", json={"release": release.version}
                ).status_code
                == 200
            )
        downloads = 6
        clients = _clients(server, token, downloads)
        try:
            for client in clients:
                full = client.get(f"/api/ota/firmware/{release.sha256}")
                assert full.status_code == 200 and hashlib.sha256(full.content).hexdigest() == release.sha256
                assert full.headers["etag"] == f'"{release.sha256}"'
                partial = client.get(
                    f"/api/ota/firmware/{release.sha256}", headers={"Range": "bytes=100-199"}
                )
                assert partial.status_code == 206 and partial.content == release.image[100:200]
                assert client.get("/api/ota/version").status_code == 200  # offered: it runs nothing yet
        finally:
            for client in clients:
                client.close()
        text = httpx.get(f"{server.management_url}/metrics").text
        assert _metric(text, "csi_ota_firmware_bytes_zero_copy_total") == downloads * len(release.image)
        assert _metric(text, "csi_ota_firmware_bytes_served_total") == downloads * (len(release.image) + 100)
        assert _metric(text, 'csi_ota_version_checks_total\\{result="offer"\\}') == downloads


def test_tls_downloads_are_streamed_not_sendfile(tmp_path, make_release, release_public_key):
    from csi_ota import certs

    certs.create_ca(tmp_path / "ca")
    certs.create_server_cert(tmp_path / "ca", tmp_path / "server")
    with controller_server(
        tmp_path / "data",
        trusted_keys=[release_public_key],
        tls_cert=tmp_path / "server" / "server.crt",
        tls_key=tmp_path / "server" / "server.key",
    ) as server:
        release = make_release(target_size_bytes=200_000)
        assert upload(server, release).status_code == 201
        device_id, token = new_device(server)
        with server.management_client() as mgmt:
            assert (
                mgmt.put(
                    f"/api/devices/{device_id}/assignment", json={"release": release.version}
                ).status_code
                == 200
            )
        with server.device_client(token) as device:
            assert device.get(f"/api/ota/firmware/{release.sha256}").content == release.image
        # The HTTP protocol's stream and the ASGI path's FileResponse send the same bytes.
        fast = _raw_get(server.device_url, f"/api/ota/firmware/{release.sha256}", token)
        assert fast.endswith(release.image)
        assert fast == _raw_get(server.device_url, f"/api/ota/firmwar%65/{release.sha256}", token)
        text = httpx.get(f"{server.management_url}/metrics").text
        assert _metric(text, "csi_ota_firmware_bytes_served_total") == 3 * len(release.image)
        assert _metric(text, "csi_ota_firmware_bytes_zero_copy_total") == 0
