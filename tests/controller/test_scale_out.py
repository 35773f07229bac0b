"""Several controller processes sharing one PostgreSQL registry and one firmware store."""

from __future__ import annotations

import pytest
from controller_helpers import upload

from services import start_controller


@pytest.mark.postgres
def test_two_processes_share_registry_and_store(pg, tmp_path, make_release, release_public_key):
    url = pg.create_database("csi_ota_scale_out")
    first = start_controller(tmp_path / "a", database_url=url, trusted_keys=[release_public_key])
    shared_store = {"FIRMWARE_STORAGE_PATH": str(first.firmware_dir)}
    second = start_controller(
        tmp_path / "b",
        database_url=url,
        admin_token=first.admin_token,
        trusted_keys=[release_public_key],
        extra_env=shared_store,
    )
    try:
        release = make_release()
        assert upload(first, release).status_code == 201
        with first.management_client() as mgmt:
            token = mgmt.post("/api/devices", json={"device_id": "shared"}).json()["token"]
            mgmt.put("/api/devices/shared/assignment", json={"release": release.version})
        with second.device_client(token) as device:
            offer = device.get("/api/ota/version", params={"device_id": "shared", "version": "1.0.0"})
            assert offer.content == release.manifest
            assert device.get(offer.headers["x-firmware-url"]).content == release.image
            report = {"device_id": "shared", "seq": 1, "state": "success", "version": release.version}
            assert device.post("/api/ota/status", json=report).json() == {"ack_seq": 1}
        with first.device_client(token) as device:  # the repeat lands on the other process: still once
            assert device.post("/api/ota/status", json=report).json() == {"ack_seq": 1}
        with first.management_client() as mgmt:
            assert [r["seq"] for r in mgmt.get("/api/devices/shared/reports").json()] == [1]
        with second.management_client() as mgmt:
            assert mgmt.get("/api/devices/shared").json()["last_ota_state"] == "success"
            assert upload(second, release).status_code == 409  # the version is known to every process
    finally:
        second.stop()
        first.stop()
