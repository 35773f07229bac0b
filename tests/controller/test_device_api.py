"""The device API against a real `csi-ota serve` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import ssl
import time
from pathlib import Path

import httpx
import pytest
from controller_helpers import new_device, upload
from sqlalchemy import select

from csi_ota.controller.csi_sink import read_records
from csi_ota.controller.db import make_engine
from csi_ota.controller.models import AuditEntry, StatusReport


def _assigned_device(controller, make_release, **spec):
    release = make_release(**spec)
    assert upload(controller, release).status_code == 201
    device_id, token = new_device(controller, tags=["lab"])
    with controller.management_client() as mgmt:
        assert (
            mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": release.version}).status_code
            == 200
        )
    return release, device_id, token


def test_version_check_offers_the_signed_manifest_byte_for_byte(controller, make_release):
    release, device_id, token = _assigned_device(controller, make_release)
    with controller.device_client(token) as device:
        query = {"device_id": device_id, "version": "1.0.0", "secure_version": 0, "slot": 0, "state": "valid"}
        response = device.get("/api/ota/version", params=query)
        assert response.status_code == 200
        assert response.content == release.manifest
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-firmware-url"] == f"/api/ota/firmware/{release.sha256}"
        # The seed's short form answers the same.
        assert device.get("/version", params=query).content == release.manifest
        # Running the assigned version: nothing to do.
        assert device.get("/api/ota/version", params={**query, "version": release.version}).status_code == 204
    with controller.management_client() as mgmt:
        shown = mgmt.get(f"/api/devices/{device_id}").json()
    assert (shown["version"], shown["slot"], shown["ota_state"]) == (release.version, 0, "valid")
    assert shown["last_seen"] is not None


def test_version_check_without_assignment_is_204(controller):
    device_id, token = new_device(controller)
    with controller.device_client(token) as device:
        response = device.get("/api/ota/version", params={"device_id": device_id, "version": "1.0.0"})
    assert response.status_code == 204
    assert response.content == b""
    assert "x-device-config" not in response.headers


def test_config_push_merges_tag_then_device_config(controller, make_release):
    device_id, token = new_device(controller, tags=["cfgtag"])
    with controller.management_client() as mgmt:
        assert (
            mgmt.put(
                "/api/tags/cfgtag/config",
                json={"config": {"check_interval_sec": 900, "auto_update_enabled": 0}},
            ).status_code
            == 200
        )
        assert (
            mgmt.put(
                f"/api/devices/{device_id}/config", json={"config": {"check_interval_sec": "600"}}
            ).status_code
            == 200
        )
    with controller.device_client(token) as device:
        response = device.get("/api/ota/version", params={"device_id": device_id})
    assert response.status_code == 204
    assert response.headers["x-device-config"] == "auto_update_enabled=0&check_interval_sec=600"
    with controller.management_client() as mgmt:
        tag_config = mgmt.get("/api/tags/cfgtag/config").json()
        assert tag_config["config"] == {"check_interval_sec": "900", "auto_update_enabled": "0"}
        assert mgmt.get(f"/api/devices/{device_id}").json()["effective_config"] == {
            "check_interval_sec": "600",
            "auto_update_enabled": "0",
        }
        assert mgmt.put("/api/tags/cfgtag/config", json={"config": None}).status_code == 200
        assert mgmt.get("/api/tags/cfgtag/config").status_code == 404
    with controller.device_client(token) as device:
        after = device.get("/api/ota/version", params={"device_id": device_id})
    assert after.headers["x-device-config"] == "check_interval_sec=600"


def test_firmware_download_full_range_and_etag(controller, make_release):
    release, device_id, token = _assigned_device(controller, make_release)
    url = f"/api/ota/firmware/{release.sha256}"
    with controller.device_client(token) as device:
        full = device.get(url)
        assert full.status_code == 200
        assert hashlib.sha256(full.content).hexdigest() == release.sha256
        assert full.headers["etag"] == f'"{release.sha256}"'
        assert int(full.headers["content-length"]) == len(release.image)
        assert full.headers["accept-ranges"] == "bytes"
        partial = device.get(url, headers={"Range": "bytes=1000-"})
        assert partial.status_code == 206
        assert partial.headers["content-range"] == f"bytes 1000-{len(release.image) - 1}/{len(release.image)}"
        assert partial.content == release.image[1000:]
        unsatisfiable = device.get(url, headers={"Range": f"bytes={len(release.image)}-"})
        assert unsatisfiable.status_code == 416
        assert unsatisfiable.headers["content-range"] == f"bytes */{len(release.image)}"
        latest = device.get("/firmware/latest", params={"device_id": device_id})
        assert latest.status_code == 200 and latest.content == release.image


def test_downloads_reuse_one_keep_alive_connection(controller, make_release):
    release, _, token = _assigned_device(controller, make_release)
    ports = set()
    with controller.device_client(token) as device:
        for _ in range(3):
            with device.stream("GET", f"/api/ota/firmware/{release.sha256}") as response:
                response.read()
                assert response.headers.get("connection", "keep-alive") != "close"
                ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_status_report_is_idempotent_by_seq_and_audited(controller, make_release):
    release, device_id, token = _assigned_device(controller, make_release)
    report = {
        "device_id": device_id,
        "seq": 7,
        "state": "success",
        "reason": "ok",
        "version": release.version,
        "target_version": release.version,
        "target_sha256": release.sha256,
        "manifest_sequence": 3,
        "bytes_written": len(release.image),
    }
    with controller.device_client(token) as device:
        first = device.post("/api/ota/status", json=report)
        again = device.post("/api/ota/status", json={**report, "state": "failed", "reason": "timeout"})
    assert first.json() == {"ack_seq": 7} and again.json() == {"ack_seq": 7}
    engine = make_engine(controller.database_url, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(select(StatusReport.state).where(StatusReport.device_id == device_id)).all()
        audits = conn.execute(
            select(AuditEntry.action).where(
                AuditEntry.target == f"device:{device_id}", AuditEntry.action == "device.ota_state"
            )
        ).all()
    engine.dispose()
    assert rows == [("success",)]
    assert len(audits) == 1
    with controller.management_client() as mgmt:
        shown = mgmt.get(f"/api/devices/{device_id}").json()
    assert (shown["last_ota_state"], shown["last_status_seq"], shown["version"]) == (
        "success",
        7,
        release.version,
    )


def test_heartbeat_updates_health(controller):
    device_id, token = new_device(controller)
    beat = {
        "device_id": device_id,
        "version": "1.0.0",
        "uptime_s": 3600,
        "rssi": -61,
        "csi_frames": 12,
        "free_heap": 123000,
        "ota_state": "valid",
    }
    with controller.device_client(token) as device:
        assert device.post(f"/api/devices/{device_id}/heartbeat", json=beat).status_code == 200
    with controller.management_client() as mgmt:
        shown = mgmt.get(f"/api/devices/{device_id}").json()
        assert (shown["health"], shown["uptime_s"], shown["rssi"], shown["free_heap"]) == (
            "healthy",
            3600,
            -61,
            123000,
        )
        with controller.device_client(token) as device:
            device.post(f"/api/devices/{device_id}/heartbeat", json={**beat, "ota_state": "pending_verify"})
        assert mgmt.get(f"/api/devices/{device_id}").json()["health"] == "degraded"


def test_csi_data_goes_to_the_sink_and_is_counted(controller):
    device_id, token = new_device(controller)
    payloads = [b"\x01\x02frame-a", b'{"frame": 2}']
    with controller.device_client(token) as device:
        for payload in payloads:
            assert device.post("/api/csi/data", content=payload).status_code == 200
    records = read_records(controller.data_dir / "csi" / device_id / "csi.bin")
    assert [payload for _, payload in records] == payloads
    deadline = time.monotonic() + 10
    with controller.management_client() as mgmt:
        while time.monotonic() < deadline:
            shown = mgmt.get(f"/api/devices/{device_id}").json()
            if shown["csi_messages_received"] == 2:
                break
            time.sleep(0.2)
    assert (shown["csi_messages_received"], shown["csi_bytes_received"]) == (2, sum(map(len, payloads)))


def test_revoked_and_rotated_tokens(controller):
    device_id, token = new_device(controller)
    with controller.management_client() as mgmt:
        new_token = mgmt.post(f"/api/devices/{device_id}/token/rotate").json()["token"]
        assert new_token != token
        with controller.device_client(token) as old:
            assert old.get("/api/ota/version").status_code == 401
        with controller.device_client(new_token) as device:
            assert device.get("/api/ota/version").status_code == 204
        assert mgmt.post(f"/api/devices/{device_id}/token/revoke").status_code == 200
        with controller.device_client(new_token) as device:
            response = device.get("/api/ota/version")
    assert response.status_code == 401
    assert response.json() == {"detail": "unauthorized"}


def test_rate_limit_answers_429_with_retry_after(tmp_path, release_public_key):
    from services import controller_server

    with controller_server(tmp_path, extra_args=["--device-rate", "1", "--device-burst", "3"]) as server:
        with server.management_client() as mgmt:
            device = mgmt.post("/api/devices", json={"device_id": "limited"}).json()
        with server.device_client(device["token"]) as client:
            codes = [client.get("/api/ota/version").status_code for _ in range(5)]
            limited = client.get("/api/ota/version")
    assert codes[:3] == [204, 204, 204]
    assert 429 in codes[3:]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_https_device_port_with_certs_from_csi_ota_certs(tmp_path):
    from csi_ota import certs
    from services import controller_server

    certs.create_ca(tmp_path / "ca")
    certs.create_server_cert(tmp_path / "ca", tmp_path / "server")
    with controller_server(
        tmp_path / "data",
        tls_cert=tmp_path / "server" / "server.crt",
        tls_key=tmp_path / "server" / "server.key",
    ) as server:
        with server.management_client() as mgmt:
            token = mgmt.post("/api/devices", json={"device_id": "tlsdev"}).json()["token"]
        assert server.device_url.startswith("https://")
        trust_ca = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.crt"))
        with httpx.Client(verify=trust_ca, headers={"Authorization": f"Bearer {token}"}) as client:
            assert client.get(f"{server.device_url}/api/ota/version").status_code == 204
        with httpx.Client(verify=True) as untrusting, pytest.raises(httpx.ConnectError):
            untrusting.get(f"{server.device_url}/healthz")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_memory_per_download_is_bounded(tmp_path, make_release, release_public_key):
    """40 clients that stall after the first bytes of a 1.2 MB image: the server does not buffer the images."""
    import socket
    from urllib.parse import urlsplit

    from services import controller_server

    clients = 40
    release = make_release(target_size_bytes=1_200_000)
    with controller_server(
        tmp_path, trusted_keys=[release_public_key], extra_args=["--device-rate", "0"]
    ) as server:
        assert upload(server, release).status_code == 201
        with server.management_client() as mgmt:
            token = mgmt.post("/api/devices", json={"device_id": "slowreader"}).json()["token"]
            mgmt.put(
                "/api/devices/slowreader/assignment", json={"release": release.version}
            ).raise_for_status()
        url = urlsplit(server.device_url)
        request = (
            f"GET /api/ota/firmware/{release.sha256} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        baseline = _rss_bytes(server.process.pid)
        sockets = []
        try:
            for _ in range(clients):
                sock = socket.create_connection((url.hostname, url.port), timeout=10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
                sock.sendall(request)
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
                sockets.append(sock)
            time.sleep(1.0)  # let the server push whatever it would buffer
            growth = _rss_bytes(server.process.pid) - baseline
        finally:
            for sock in sockets:
                sock.close()
    whole_images = clients * len(release.image)
    assert growth < whole_images / 3, f"RSS grew {growth} bytes for {clients} stalled downloads"


def test_x_accel_redirect_offload_through_nginx(tmp_path, make_release, release_public_key):
    """nginx in front sends the bytes (Range included); the controller still decides who may download."""
    from services import controller_server, nginx_server

    release = make_release()
    args = ["--x-accel-redirect", "/_firmware/"]
    with controller_server(tmp_path / "data", trusted_keys=[release_public_key], extra_args=args) as server:
        assert upload(server, release).status_code == 201
        with server.management_client() as mgmt:
            token = mgmt.post("/api/devices", json={"device_id": "offloaded"}).json()["token"]
            mgmt.put(
                "/api/devices/offloaded/assignment", json={"release": release.version}
            ).raise_for_status()
        with server.device_client(token) as direct:
            redirected = direct.get(f"/api/ota/firmware/{release.sha256}")
        assert redirected.headers["x-accel-redirect"] == f"/_firmware/{release.sha256}.bin"
        assert redirected.content == b""
        port = server.device_url.rsplit(":", 1)[1]
        front = f"""
            location /_firmware/ {{ internal; alias {server.firmware_dir}/; }}
            location / {{ proxy_pass http://127.0.0.1:{port}; }}
        """
        with nginx_server(tmp_path / "empty-root", extra_server_config=front) as nginx:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=nginx.base_url, headers=headers) as device:
                full = device.get(f"/api/ota/firmware/{release.sha256}")
                partial = device.get(f"/api/ota/firmware/{release.sha256}", headers={"Range": "bytes=500-"})
                assert device.get(f"/_firmware/{release.sha256}.bin").status_code == 404  # internal only
            with httpx.Client(base_url=nginx.base_url) as stranger:
                assert stranger.get(f"/api/ota/firmware/{release.sha256}").status_code == 401
    assert full.status_code == 200 and full.content == release.image
    assert partial.status_code == 206 and partial.content == release.image[500:]
    assert partial.headers["content-range"] == f"bytes 500-{len(release.image) - 1}/{len(release.image)}"
