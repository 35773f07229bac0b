"""Bad input gets the right 4xx with a reason, and nothing is stored (rows and firmware files unchanged)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from controller_helpers import new_device, sign_release, upload

from csi_ota import imagegen, keys
from csi_ota.manifest import manifest_for_image, sign_manifest

U32_MAX = 0xFFFFFFFF


def _report(device_id: str, **fields) -> dict:
    return {"device_id": device_id, "seq": 1, "state": "downloading", "reason": "ok", **fields}


# --------------------------------------------------------------------------- device port


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"device_id": "x", "seq": ', "application/json", 400),  # malformed JSON
        (b"[1, 2]", "application/json", 422),  # not an object
        (b"seq=1", "application/x-www-form-urlencoded", 415),
    ],
)
def test_status_malformed_bodies(controller, snapshot, body, content_type, status):
    device_id, token = new_device(controller)
    before = snapshot()
    with controller.device_client(token) as device:
        response = device.post("/api/ota/status", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize(
    "fields",
    [
        {"seq": "12"},  # a string where a u32 belongs
        {"seq": -1},
        {"seq": U32_MAX + 1},
        {"seq": 1.5},
        {"state": "exploded"},
        {"reason": "Not A Reason!"},
        {"target_sha256": "zz" * 32},
        {"bytes_written": True},
        {"version": "x" * 40},
    ],
)
def test_status_wrong_types_and_values_are_422(controller, snapshot, fields):
    device_id, token = new_device(controller)
    before = snapshot()
    with controller.device_client(token) as device:
        response = device.post("/api/ota/status", json=_report(device_id, **fields))
    assert response.status_code == 422, response.text
    assert snapshot() == before


def test_oversized_bodies_are_413(controller, snapshot):
    device_id, token = new_device(controller)
    before = snapshot()
    with controller.device_client(token) as device:
        big_report = device.post("/api/ota/status", json=_report(device_id, notes="x" * 200_000))
        big_beat = device.post(f"/api/devices/{device_id}/heartbeat", content=b"{" + b" " * 100_000 + b"}")
        big_csi = device.post("/api/csi/data", content=b"\0" * (256 * 1024 + 1))
    assert (big_report.status_code, big_beat.status_code, big_csi.status_code) == (413, 413, 413)
    assert snapshot() == before


def test_unknown_and_wrong_tokens_are_401_without_detail(controller, snapshot):
    device_id, _ = new_device(controller)
    before = snapshot()
    for headers in ({}, {"Authorization": "Bearer dev_not-a-token"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        import httpx

        with httpx.Client(base_url=controller.device_url, headers=headers) as client:
            for method, path, body in (
                ("GET", "/api/ota/version", None),
                ("POST", "/api/ota/status", _report(device_id)),
                ("POST", f"/api/devices/{device_id}/heartbeat", {}),
                ("GET", f"/api/ota/firmware/{'0' * 64}", None),
            ):
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (headers, path)
                assert response.json() == {"detail": "unauthorized"}
    assert snapshot() == before


def test_admin_token_on_device_port_and_device_token_on_management_port(controller):
    device_id, token = new_device(controller)
    with controller.device_client(controller.admin_token) as as_admin:
        assert as_admin.get("/api/ota/version").status_code == 401
    import httpx

    with httpx.Client(
        base_url=controller.management_url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        assert client.get("/api/devices").status_code == 401
        assert client.get(f"/api/devices/{device_id}").status_code == 401


def test_another_devices_id_is_403_and_changes_nothing(controller, snapshot):
    mine, token = new_device(controller)
    theirs, _ = new_device(controller)
    before = snapshot()
    with controller.device_client(token) as device:
        assert device.post("/api/ota/status", json=_report(theirs)).status_code == 403
        assert device.post(f"/api/devices/{theirs}/heartbeat", json={"uptime_s": 1}).status_code == 403
        assert device.post(f"/api/devices/{mine}/heartbeat", json={"device_id": theirs}).status_code == 403
        assert device.get("/api/ota/version", params={"device_id": theirs}).status_code == 403
        assert device.post("/api/csi/data", params={"device_id": theirs}, content=b"x").status_code == 403
        assert device.get("/firmware/latest", params={"device_id": theirs}).status_code == 403
    assert snapshot() == before
    assert not (controller.data_dir / "csi" / theirs).exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/ota/firmware/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/ota/firmware/" + "../" * 3 + "etc/passwd",
        "/api/ota/firmware/" + "A" * 64,
        "/api/ota/firmware/" + "0" * 64,  # well-formed but no such release
        "/api/ota/firmware/.incoming",
    ],
)
def test_firmware_path_traversal_and_unknown_digests_are_404(controller, path):
    _, token = new_device(controller)
    with controller.device_client(token) as device:
        response = device.get(path)
    assert response.status_code == 404
    assert b"root:" not in response.content


def test_path_traversal_in_device_ids(controller, snapshot):
    _, token = new_device(controller)
    before = snapshot()
    with controller.device_client(token) as device:
        assert device.post("/api/csi/data", params={"device_id": "../../x"}, content=b"x").status_code == 422
        assert device.get("/api/ota/version", params={"device_id": "a/b"}).status_code == 422
    with controller.management_client() as mgmt:
        for bad_id in ("../evil", "a/b", "a+b", "#", "x" * 32, ""):
            assert mgmt.post("/api/devices", json={"device_id": bad_id}).status_code == 422, bad_id
        assert mgmt.get("/api/devices/..%2F..%2Fetc").status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=999999999-", 416),
        ("bytes=abc", 400),
        ("items=0-10", 400),
        ("bytes=10-5", 400),
    ],
)
def test_bad_range_headers(controller, make_release, range_header, status):
    release = make_release()
    assert upload(controller, release).status_code == 201
    device_id, token = new_device(controller)
    with controller.management_client() as mgmt:  # a device downloads only what it is offered
        mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": release.version}).raise_for_status()
    with controller.device_client(token) as device:
        response = device.get(f"/api/ota/firmware/{release.sha256}", headers={"Range": range_header})
    assert response.status_code == status
    if status == 416:
        assert response.headers["content-range"] == f"bytes */{len(release.image)}"


# --------------------------------------------------------------------------- release uploads


def test_duplicate_version_is_409(controller, make_release, snapshot):
    release = make_release()
    assert upload(controller, release).status_code == 201
    before = snapshot()
    again = upload(controller, release)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    assert snapshot() == before


def test_a_signed_rollback_may_repeat_a_version_once_per_sequence(
    controller, make_release, release_key, snapshot
):
    release = make_release()
    assert upload(controller, release).status_code == 201
    rollback_manifest = sign_release(release_key, release.image, rollback=True)
    stored = upload(controller, release, manifest=rollback_manifest)
    assert stored.status_code == 201, stored.text
    assert stored.json()["version"] == release.version and stored.json()["rollback"] is True
    before = snapshot()
    again = upload(controller, release, manifest=rollback_manifest)
    assert again.status_code == 409
    assert "rollback release" in again.json()["detail"] and "sequence" in again.json()["detail"]
    assert snapshot() == before
    with controller.management_client() as mgmt:  # the version still names the forward release
        shown = mgmt.get(f"/api/releases/{release.version}").json()
    assert shown["rollback"] is False and shown["sequence"] < stored.json()["sequence"]


def test_tampered_image_and_manifest_are_refused(controller, make_release, snapshot):
    release = make_release()
    before = snapshot()
    flipped_image = bytearray(release.image)
    flipped_image[5000] ^= 0x01
    flipped_manifest = release.manifest.replace(b"notes=", b"notes=x", 1)
    cases = {
        "image": upload(controller, release, image=bytes(flipped_image)),
        "manifest": upload(controller, release, manifest=flipped_manifest),
        "truncated image": upload(controller, release, image=release.image[:-100]),
        "garbage manifest": upload(controller, release, manifest=b"not a manifest"),
    }
    assert {name: r.status_code for name, r in cases.items()} == dict.fromkeys(cases, 422)
    assert "SHA-256" in cases["image"].json()["detail"]
    assert "signature" in cases["manifest"].json()["detail"]
    assert snapshot() == before


def test_untrusted_key_is_refused(controller, make_release, tmp_path, snapshot):
    release = make_release()
    keys.generate_key(tmp_path / "rogue.pem")
    rogue_manifest = sign_release(tmp_path / "rogue.pem", release.image)
    before = snapshot()
    response = upload(controller, release, manifest=rogue_manifest)
    assert response.status_code == 422
    assert "not trusted" in response.json()["detail"]
    assert snapshot() == before


def test_wrong_chip_is_refused(controller, release_key, snapshot):
    built = imagegen.build_app_image(imagegen.ImageSpec(version="3.0.1", target_size_bytes=50_000))
    image = bytearray(built)
    image[12:14] = (5).to_bytes(2, "little")  # esp_image_header_t.chip_id: ESP32-C3
    image = bytes(image)
    private = keys.load_private_key(release_key)
    base = manifest_for_image(built, sequence=9000, key_id=keys.key_id_for(private.public_key()))
    base = replace(base, sha256=hashlib.sha256(image).hexdigest())
    for_other_chip = sign_manifest(replace(base, chip_id=5), private)
    lying = sign_manifest(base, private)  # claims the fleet's chip over an image for another chip
    before = snapshot()
    for manifest_bytes in (for_other_chip, lying):
        with controller.management_client() as mgmt:
            response = mgmt.post(
                "/api/releases",
                content=image,
                headers={"X-Release-Manifest": base64.b64encode(manifest_bytes).decode()},
            )
        assert response.status_code == 422
        assert "chip" in response.json()["detail"]
    assert snapshot() == before


def test_oversized_upload_is_413(controller, make_release, snapshot):
    release = make_release()
    before = snapshot()
    response = upload(controller, release, image=release.image + b"\0" * (1_310_720 - len(release.image) + 1))
    assert response.status_code == 413

    # Streamed without Content-Length: refused while reading.
    def chunks():
        for _ in range(21):
            yield b"\xe9" * 65536

    with controller.management_client() as mgmt:
        streamed = mgmt.post(
            "/api/releases",
            content=chunks(),
            headers={"X-Release-Manifest": base64.b64encode(release.manifest).decode()},
        )
    assert streamed.status_code == 413
    assert snapshot() == before


def test_missing_or_bad_manifest_header_is_400(controller, make_release, snapshot):
    release = make_release()
    before = snapshot()
    with controller.management_client() as mgmt:
        assert mgmt.post("/api/releases", content=release.image).status_code == 400
        assert (
            mgmt.post(
                "/api/releases", content=release.image, headers={"X-Release-Manifest": "%%%"}
            ).status_code
            == 400
        )
    assert snapshot() == before


def test_truncated_upload_connection_stores_nothing(controller, make_release, snapshot):
    """The client promises more bytes than it sends and hangs up: no row, no file, no .part left."""
    release = make_release()
    before = snapshot()
    url = urlsplit(controller.management_url)
    head = (
        f"POST /api/releases HTTP/1.1\r\nHost: {url.hostname}\r\n"
        f"Authorization: Bearer {controller.admin_token}\r\n"
        f"X-Release-Manifest: {base64.b64encode(release.manifest).decode()}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(release.image)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + release.image[: len(release.image) // 2])
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            sock.recv(1024)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and snapshot() != before:
        time.sleep(0.1)
    assert snapshot() == before


# --------------------------------------------------------------------------- management port


def test_management_bad_input(controller, snapshot):
    device_id, _ = new_device(controller)
    before = snapshot()
    with controller.management_client() as mgmt:
        assert (
            mgmt.post(
                "/api/devices", content=b"{oops", headers={"Content-Type": "application/json"}
            ).status_code
            == 400
        )
        assert mgmt.post("/api/devices", json={"device_id": 12}).status_code == 422
        assert mgmt.post("/api/devices", json={"device_id": device_id}).status_code == 409
        assert (
            mgmt.put(f"/api/devices/{device_id}/config", json={"config": {"auth_token": "x"}}).status_code
            == 422
        )
        assert (
            mgmt.put(
                f"/api/devices/{device_id}/config", json={"config": {"check_interval_sec": "soon"}}
            ).status_code
            == 422
        )
        assert (
            mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": "99.99.99"}).status_code == 404
        )
        assert mgmt.put("/api/devices/nobody/assignment", json={"release": None}).status_code == 404
        assert mgmt.post("/api/batch", json={"selection": {}, "action": "revoke"}).status_code == 422
        assert (
            mgmt.post(
                "/api/batch", json={"selection": {"device_ids": [device_id, "ghost"]}, "action": "revoke"}
            ).status_code
            == 404
        )
        assert mgmt.get("/api/audit", params={"since": "yesterday"}).status_code == 422
        assert mgmt.get("/api/devices", params={"limit": "many"}).status_code == 422
    assert snapshot() == before
