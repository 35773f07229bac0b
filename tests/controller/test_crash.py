"""kill -9 in the middle of status reports and uploads loses no acknowledged data and leaves no partial file."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

import httpx
import pytest
from controller_helpers import BACKENDS, upload
from sqlalchemy import select

from csi_ota.controller.db import make_engine
from csi_ota.controller.models import Release, StatusReport
from services import start_controller

WAIT_S = 20.0
MAX_REPORTS = 5000


def _stored_seqs(database_url: str, device_id: str) -> set[int]:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(select(StatusReport.seq).where(StatusReport.device_id == device_id)))
    finally:
        engine.dispose()


def _store_is_whole(firmware_dir) -> None:
    for path in firmware_dir.glob("*.bin"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem, f"{path} is not whole"


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill9_during_status_reports_keeps_every_acknowledged_report(backend, backend_url, tmp_path):
    database_url = backend_url(backend)
    server = start_controller(tmp_path / "data", database_url=database_url, extra_args=["--device-rate", "0"])
    database_url = server.database_url
    with server.management_client() as mgmt:
        token = mgmt.post("/api/devices", json={"device_id": "crashy"}).json()["token"]
    acked: list[int] = []
    stop = threading.Event()

    def report() -> None:
        with server.device_client(token, timeout=5) as device:
            for seq in range(1, MAX_REPORTS):
                if stop.is_set():
                    return
                try:
                    response = device.post(
                        "/api/ota/status", json={"device_id": "crashy", "seq": seq, "state": "downloading"}
                    )
                except httpx.HTTPError:
                    return
                if response.status_code == 200 and response.json() == {"ack_seq": seq}:
                    acked.append(seq)

    reporter = threading.Thread(target=report)
    reporter.start()
    deadline = time.monotonic() + WAIT_S
    while len(acked) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill9()
    stop.set()
    reporter.join(timeout=WAIT_S)
    assert len(acked) >= 30
    restarted = start_controller(tmp_path / "data", database_url=database_url, admin_token=server.admin_token)
    try:
        stored = _stored_seqs(database_url, "crashy")
        assert set(acked) <= stored
        with restarted.management_client() as mgmt:
            assert mgmt.get("/api/devices/crashy").json()["last_status_seq"] >= max(acked)
        # The device repeats its last report after the crash: acknowledged again, stored once.
        with restarted.device_client(token) as device:
            again = device.post(
                "/api/ota/status", json={"device_id": "crashy", "seq": max(acked), "state": "downloading"}
            )
        assert again.json() == {"ack_seq": max(acked)}
        assert _stored_seqs(database_url, "crashy") == stored
    finally:
        restarted.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill9_during_upload_leaves_no_partial_firmware(
    backend, backend_url, tmp_path, make_release, release_public_key
):
    database_url = backend_url(backend)
    server = start_controller(tmp_path / "data", database_url=database_url, trusted_keys=[release_public_key])
    database_url = server.database_url
    done = make_release(target_size_bytes=80_000)
    assert upload(server, done).status_code == 201  # acknowledged before the crash
    pending = make_release(target_size_bytes=600_000)
    sent = threading.Event()

    def slow_body():
        for offset in range(0, len(pending.image), 65536):
            if offset >= len(pending.image) // 2:
                sent.set()
                time.sleep(WAIT_S)  # the server dies meanwhile
            yield pending.image[offset : offset + 65536]

    outcome: list[object] = []

    def send() -> None:
        try:
            with server.management_client() as mgmt:
                outcome.append(
                    mgmt.post(
                        "/api/releases",
                        content=slow_body(),
                        headers={
                            "X-Release-Manifest": base64.b64encode(pending.manifest).decode(),
                            "Content-Length": str(len(pending.image)),
                        },
                    )
                )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    uploader = threading.Thread(target=send, daemon=True)
    uploader.start()
    assert sent.wait(WAIT_S)
    incoming = server.firmware_dir / ".incoming"
    deadline = time.monotonic() + WAIT_S
    while not any(incoming.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(incoming.glob("*.part")), "the upload never reached the server"
    server.kill9()
    assert not (server.firmware_dir / f"{pending.sha256}.bin").exists()
    _store_is_whole(server.firmware_dir)

    restarted = start_controller(
        tmp_path / "data",
        database_url=database_url,
        admin_token=server.admin_token,
        trusted_keys=[release_public_key],
    )
    try:
        assert list(incoming.glob("*.part")) == []  # half-written upload removed at start
        _store_is_whole(restarted.firmware_dir)
        engine = make_engine(database_url, pool_size=1)
        with engine.connect() as conn:
            versions = set(conn.scalars(select(Release.version)))
        engine.dispose()
        assert done.version in versions and pending.version not in versions
        assert (restarted.firmware_dir / f"{done.sha256}.bin").read_bytes() == done.image
        # The interrupted upload succeeds when retried.
        assert upload(restarted, pending).status_code == 201
    finally:
        restarted.stop()
