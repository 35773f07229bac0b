"""The management API against a real server: releases, registry, batch, audit, roles, metrics."""

from __future__ import annotations

import json

import httpx
from controller_helpers import new_device, upload

from csi_ota.controller.semver import semver_key


def test_release_upload_list_show_retire(controller, make_release):
    older, newer = make_release("5.9.0"), make_release("5.10.0")
    for release in (newer, older):
        created = upload(controller, release)
        assert created.status_code == 201, created.text
        assert created.json()["sha256"] == release.sha256
        assert (controller.firmware_dir / f"{release.sha256}.bin").read_bytes() == release.image
    with controller.management_client() as mgmt:
        versions = [r["version"] for r in mgmt.get("/api/releases").json()]
        assert versions.index("5.9.0") < versions.index("5.10.0")  # semantic, not string, order
        shown = mgmt.get("/api/releases/5.10.0").json()
        assert shown["manifest"].encode() == newer.manifest
        assert mgmt.get(f"/api/releases/{shown['id']}").json()["version"] == "5.10.0"
        device_id, token = new_device(controller)
        assert mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": "5.10.0"}).status_code == 200
        assert mgmt.post("/api/releases/5.10.0/retire").json()["retired"] is True
        assert "5.10.0" not in [r["version"] for r in mgmt.get("/api/releases").json()]
        assert "5.10.0" in [
            r["version"] for r in mgmt.get("/api/releases", params={"include_retired": "true"}).json()
        ]
        # A retired release is neither offered nor assignable.
        with controller.device_client(token) as device:
            assert device.get("/api/ota/version").status_code == 204
        assert mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": "5.10.0"}).status_code == 409


def test_semver_ordering_rules():
    ordered = [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-beta",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "10.0.0",
    ]
    assert sorted(reversed(ordered), key=semver_key) == ordered


def test_registry_list_filters_show_tag_decommission(controller):
    a, token_a = new_device(controller, tags=["site-a", "floor1"])
    b, _ = new_device(controller, tags=["site-b"])
    with controller.device_client(token_a) as device:
        device.post(f"/api/devices/{a}/heartbeat", json={"version": "4.4.4", "uptime_s": 1})
    with controller.management_client() as mgmt:
        by_tag = [d["device_id"] for d in mgmt.get("/api/devices", params={"tag": "site-a"}).json()]
        assert a in by_tag and b not in by_tag
        assert [d["device_id"] for d in mgmt.get("/api/devices", params={"version": "4.4.4"}).json()] == [a]
        healthy = [d["device_id"] for d in mgmt.get("/api/devices", params={"health": "healthy"}).json()]
        assert a in healthy and b not in healthy
        assert b in [d["device_id"] for d in mgmt.get("/api/devices", params={"health": "unknown"}).json()]
        seen = [d["device_id"] for d in mgmt.get("/api/devices", params={"seen_within_s": 600}).json()]
        assert a in seen and b not in seen
        assert b in [
            d["device_id"] for d in mgmt.get("/api/devices", params={"not_seen_within_s": 600}).json()
        ]
        tags = mgmt.post(f"/api/devices/{b}/tags", json={"add": ["canary"], "remove": ["site-b"]}).json()[
            "tags"
        ]
        assert tags == ["canary"]
        assert mgmt.post(f"/api/devices/{b}/decommission").status_code == 200
        assert b not in [d["device_id"] for d in mgmt.get("/api/devices").json()]
        shown = mgmt.get(f"/api/devices/{b}").json()
        assert shown["decommissioned"] is True and shown["token_active"] is False
        assert mgmt.post(f"/api/devices/{b}/token/rotate").status_code == 409


def test_batch_assign_config_revoke(controller, make_release):
    release = make_release()
    assert upload(controller, release).status_code == 201
    tag = "batch-x"
    members = [new_device(controller, tags=[tag]) for _ in range(3)]
    outsider, outsider_token = new_device(controller)
    with controller.management_client() as mgmt:
        result = mgmt.post(
            "/api/batch", json={"selection": {"tag": tag}, "action": "assign", "release": release.version}
        ).json()
        assert result["matched"] == 3 and sorted(result["device_ids"]) == sorted(d for d, _ in members)
        mgmt.post(
            "/api/batch",
            json={"selection": {"tag": tag}, "action": "config", "config": {"check_interval_sec": 120}},
        )
        for device_id, token in members:
            with controller.device_client(token) as device:
                offer = device.get("/api/ota/version", params={"device_id": device_id, "version": "1.0.0"})
            assert offer.content == release.manifest
            assert offer.headers["x-device-config"] == "check_interval_sec=120"
        with controller.device_client(outsider_token) as device:
            assert device.get("/api/ota/version").status_code == 204
        ids = [d for d, _ in members[:2]]
        assert (
            mgmt.post("/api/batch", json={"selection": {"device_ids": ids}, "action": "revoke"}).json()[
                "matched"
            ]
            == 2
        )
        with controller.device_client(members[0][1]) as device:
            assert device.get("/api/ota/version").status_code == 401
        with controller.device_client(members[2][1]) as device:
            assert device.get("/api/ota/version").status_code == 200


def test_audit_log_records_who_what_and_exports_json_lines(controller):
    device_id, token = new_device(controller)
    with controller.device_client(token) as device:
        device.post("/api/ota/status", json={"device_id": device_id, "seq": 1, "state": "downloading"})
    with controller.management_client() as mgmt:
        entries = mgmt.get("/api/audit", params={"target": f"device:{device_id}"}).json()
        assert [(e["actor"], e["action"]) for e in entries] == [
            ("admin:admin", "device.register"),
            (f"device:{device_id}", "device.ota_state"),
        ]
        assert entries[1]["details"]["state"] == "downloading"
        export = mgmt.get("/api/audit/export", params={"target": f"device:{device_id}"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = export.text.splitlines()
    assert [json.loads(line) for line in lines] == entries
    with controller.management_client() as mgmt:
        first = mgmt.get(
            "/api/audit/export", params={"limit": 1, "target": f"device:{device_id}"}
        ).text.splitlines()
        rest = mgmt.get(
            "/api/audit/export", params={"after_id": entries[0]["id"], "target": f"device:{device_id}"}
        ).text.splitlines()
        assert mgmt.get("/api/audit/export", params={"since": "not a time"}).status_code == 422
    assert [json.loads(line) for line in first + rest] == entries


def test_roles_viewer_operator_admin(controller):
    with controller.management_client() as mgmt:
        viewer = mgmt.post("/api/admin/users", json={"name": "vera", "role": "viewer"}).json()["token"]
        operator = mgmt.post("/api/admin/users", json={"name": "otto", "role": "operator"}).json()["token"]
    as_viewer = httpx.Client(
        base_url=controller.management_url, headers={"Authorization": f"Bearer {viewer}"}
    )
    as_operator = httpx.Client(
        base_url=controller.management_url, headers={"Authorization": f"Bearer {operator}"}
    )
    with as_viewer, as_operator:
        assert as_viewer.get("/api/devices").status_code == 200
        assert as_viewer.get("/api/whoami").json() == {"name": "vera", "role": "viewer"}
        assert as_viewer.post("/api/devices", json={"device_id": "byviewer"}).status_code == 403
        assert as_operator.post("/api/devices", json={"device_id": "byoperator"}).status_code == 201
        assert as_operator.post("/api/admin/users", json={"name": "eve", "role": "admin"}).status_code == 403
        assert as_operator.post("/api/devices/byoperator/decommission").status_code == 403
        with controller.management_client() as mgmt:
            assert mgmt.post("/api/admin/users/vera/revoke").json()["tokens_revoked"] == 1
        assert as_viewer.get("/api/devices").status_code == 401


def test_metrics_report_fleet_and_traffic(controller, make_release):
    release = make_release()
    upload(controller, release)
    device_id, token = new_device(controller)
    with controller.management_client() as mgmt:
        mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": release.version})
    with controller.device_client(token) as device:
        device.get(f"/api/ota/firmware/{release.sha256}")
        device.post(
            "/api/ota/status",
            json={"device_id": device_id, "seq": 1, "state": "success", "version": release.version},
        )
    text = httpx.get(f"{controller.management_url}/metrics").text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["csi_ota_firmware_bytes_served_total"] >= len(release.image)
    assert samples['csi_ota_firmware_downloads_total{status="started"}'] >= 1
    assert samples['csi_ota_status_reports_total{state="success"}'] >= 1
    assert samples[f'csi_ota_devices_by_version{{version="{release.version}"}}'] == 1
    assert samples['csi_ota_devices_by_ota_state{state="success"}'] >= 1
