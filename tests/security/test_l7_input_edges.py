"""L7 (host parts): odd input gets a 4xx with a reason, never a 500 or a silent acceptance.

- a NUL in a reported version reached PostgreSQL (500);
- check_interval_sec "²²" passed str.isdigit() and crashed int() (500), "١٢٣" was accepted;
- a URL with a trailing newline passed the ``$``-anchored check;
- versions ``1.0.0-01`` / ``1.0.0-2`` ordered differently on host and device (now invalid on both);
- the last admin could revoke its own tokens (locking everyone out);
- /docs and /openapi.json on the management port answered without a token.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from controller_helpers import new_device

from csi_ota import imagegen, keys
from csi_ota.controller.semver import is_semver, semver_key
from csi_ota.errors import CsiOtaError
from csi_ota.manifest import manifest_for_image, sign_manifest


def test_nul_in_reported_version_is_a_4xx_on_postgresql(pg_controller):
    device_id, token = new_device(pg_controller)
    with pg_controller.device_client(token) as client:
        beat = client.post(f"/api/devices/{device_id}/heartbeat", json={"version": "1.0\u00000"})
        report = client.post(
            "/api/ota/status",
            json={"device_id": device_id, "seq": 1, "state": "downloading", "version": "1.0\u00000"},
        )
        target = client.post(
            "/api/ota/status",
            json={"device_id": device_id, "seq": 2, "state": "downloading", "target_version": "\u0000"},
        )
    for response in (beat, report, target):
        assert response.status_code == 422, response.text
        assert "version" in response.json()["detail"]
    with pg_controller.management_client() as mgmt:
        listed = mgmt.get("/api/devices", params={"version": "1\u00000"})
        batch = mgmt.post(
            "/api/batch",
            json={"selection": {"version": "1\u00000"}, "action": "config", "config": {}},
        )
    assert listed.status_code == 422, listed.text
    assert batch.status_code == 422, batch.text


@pytest.mark.parametrize(
    "key,value",
    [
        ("check_interval_sec", "²²"),  # str.isdigit() is True, int() raises
        ("check_interval_sec", "١٢٣"),  # Arabic-Indic digits: int() reads 123, the device does not
        ("check_interval_sec", "60\n"),
        ("update_url", "https://ota.example/fw\n"),
        ("version_check_url", "https://ota.example/v\r\n"),
        ("update_url", "https://ota.example/a\tb"),
    ],
)
def test_config_values_are_ascii_and_whole(sqlite_controller, key, value):
    device_id, _ = new_device(sqlite_controller)
    with sqlite_controller.management_client() as mgmt:
        response = mgmt.put(f"/api/devices/{device_id}/config", json={"config": {key: value}})
        assert response.status_code == 422, response.text
        assert key in response.json()["detail"]
        stored = mgmt.get(f"/api/devices/{device_id}").json()
    assert not stored.get("config"), "a refused config must not be stored"


def test_good_config_values_still_pass(sqlite_controller):
    device_id, _ = new_device(sqlite_controller)
    with sqlite_controller.management_client() as mgmt:
        response = mgmt.put(
            f"/api/devices/{device_id}/config",
            json={"config": {"check_interval_sec": "123", "update_url": "https://ota.example/fw"}},
        )
    assert response.status_code == 200, response.text


def test_leading_zero_prerelease_is_not_semver_on_host(release_key):
    # The device (ota_version.c) and the host must agree; a numeric identifier with a leading zero
    # is invalid under semver 2.0, so both refuse it rather than order it differently.
    assert not is_semver("1.0.0-01")
    assert not is_semver("1.0.0-rc.007")
    assert is_semver("1.0.0-2") and is_semver("1.0.0-0a") and is_semver("1.0.0-0")
    assert semver_key("1.0.0-2") < semver_key("1.0.0-10") < semver_key("1.0.0-a") < semver_key("1.0.0")
    image = imagegen.build_app_image(imagegen.ImageSpec(version="1.0.0-2", target_size_bytes=4096))
    private = keys.load_private_key(release_key)
    manifest = manifest_for_image(image, sequence=1, key_id=keys.key_id_for(private.public_key()))
    with pytest.raises(CsiOtaError, match="semver"):
        sign_manifest(replace(manifest, version="1.0.0-01"), private)


def test_the_last_admin_cannot_revoke_itself(tmp_path):
    from services import start_controller

    server = start_controller(tmp_path / "data")
    try:
        with server.management_client() as mgmt:
            refused = mgmt.post("/api/admin/users/admin/revoke")
            assert refused.status_code == 409, refused.text
            assert mgmt.get("/api/whoami").status_code == 200, "the refused revoke must change nothing"
            second = mgmt.post("/api/admin/users", json={"name": "second", "role": "admin"}).json()
            assert mgmt.post("/api/admin/users/admin/revoke").status_code == 200
        with httpx.Client(
            base_url=server.management_url, headers={"Authorization": f"Bearer {second['token']}"}
        ) as other:
            assert other.post("/api/admin/users/second/revoke").status_code == 409
            assert other.post("/api/admin/users/nobody/revoke").status_code == 404
    finally:
        server.stop()


def test_docs_and_openapi_need_a_token(sqlite_controller):
    for path in ("/docs", "/openapi.json", "/redoc"):
        anonymous = httpx.get(f"{sqlite_controller.management_url}{path}")
        assert anonymous.status_code in (401, 404), (path, anonymous.status_code)
        assert anonymous.status_code != 200
    with sqlite_controller.management_client() as mgmt:
        assert "/api/releases" in mgmt.get("/openapi.json").json()["paths"]
        assert mgmt.get("/docs").status_code == 200


def test_an_empty_reported_version_is_still_accepted(sqlite_controller):
    # The firmware's reports always carry target_version, "" when there is no target.
    device_id, token = new_device(sqlite_controller)
    with sqlite_controller.device_client(token) as client:
        report = client.post(
            "/api/ota/status",
            json={
                "device_id": device_id,
                "seq": 1,
                "state": "rolled_back",
                "version": "1.0.0",
                "target_version": "",
            },
        )
    assert report.status_code == 200, report.text
