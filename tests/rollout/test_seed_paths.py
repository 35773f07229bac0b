"""The seed's own device paths (issue 11, item 5) against a real controller and a real Mosquitto.

GET /api/ota/firmware (the HTTP-only flow's download of the assigned image,
Range included) and OTA status reports published on csi/<id>/stats (the seed's
MQTT sequence) — same schema, idempotency and audit as POST /api/ota/status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from rollout_harness import start_world, stop_world

from services import mosquitto_broker, start_controller

FIRMWARE_KCONFIG = Path(__file__).resolve().parents[2] / "firmware" / "main" / "Kconfig.projbuild"


def _device_client(world, device_id: str) -> httpx.Client:
    token = dict(world.credentials)[device_id]
    return httpx.Client(
        base_url=world.server.device_url, headers={"Authorization": f"Bearer {token}"}, verify=False
    )


def test_get_api_ota_firmware_serves_the_assigned_image_with_range(tmp_path):
    world = start_world(tmp_path, devices=2, scale=1.0, prefix="seed")
    try:
        device_id, other = world.credentials[0][0], world.credentials[1][0]
        v2 = world.releases["2.0.0"]
        with _device_client(world, device_id) as client:
            assert client.get("/api/ota/firmware", params={"device_id": device_id}).status_code == 404
            with world.management() as management:
                response = management.put(f"/api/devices/{device_id}/assignment", json={"release": "2.0.0"})
                assert response.status_code == 200, response.text
            full = client.get("/api/ota/firmware", params={"device_id": device_id})
            assert full.status_code == 200 and full.content == v2.image
            assert full.headers["ETag"] == f'"{v2.sha256}"'
            part = client.get(
                "/api/ota/firmware", params={"device_id": device_id}, headers={"Range": "bytes=100-"}
            )
            assert part.status_code == 206 and part.content == v2.image[100:]
            assert part.headers["Content-Range"] == f"bytes 100-{len(v2.image) - 1}/{len(v2.image)}"
            assert client.get("/api/ota/firmware", params={"device_id": other}).status_code == 403
        with httpx.Client(base_url=world.server.device_url, verify=False) as anonymous:
            assert anonymous.get("/api/ota/firmware").status_code == 401
    finally:
        stop_world(world)


def test_status_reports_on_the_stats_topic_are_stored_once_and_audited(tmp_path):
    world = start_world(tmp_path / "world", devices=1, scale=1.0, prefix="mq")
    device_id = world.credentials[0][0]
    first = world.server
    first.stop()
    try:
        with mosquitto_broker() as broker:
            world.servers[0] = start_controller(
                first.data_dir,
                database_url=first.database_url,
                trusted_keys=[world.public_key_path],
                admin_token=first.admin_token,
                mqtt=broker,
            )
            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="seed-device")
            publisher.connect("127.0.0.1", broker.port)
            publisher.loop_start()
            report = {
                "device_id": device_id, "seq": 7, "state": "success", "reason": "ok", "version": "2.0.0",
                "target_version": "2.0.0", "target_sha256": world.releases["2.0.0"].sha256,
            }  # fmt: skip
            stats = {"device_id": device_id, "uptime_s": 5, "csi_frames": 10}
            time.sleep(1.0)  # the controller's subscription is in place
            for payload in (report, report, stats):  # the repeat changes nothing
                publisher.publish(f"csi/{device_id}/stats", json.dumps(payload), qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 20
            with world.management() as client:
                while time.monotonic() < deadline:
                    shown = client.get(f"/api/devices/{device_id}").json()
                    if shown.get("stats") and shown.get("last_status_seq") == 7:
                        break
                    time.sleep(0.2)
                reports = client.get(f"/api/devices/{device_id}/reports").json()
                audit = client.get("/api/audit", params={"action": "device.ota_state"}).json()
            publisher.loop_stop()
            publisher.disconnect()
    finally:
        stop_world(world)
    assert shown["last_status_seq"] == 7 and shown["last_ota_state"] == "success"
    assert shown["version"] == "2.0.0" and shown["stats"] == stats
    assert [(r["seq"], r["state"]) for r in reports] == [(7, "success")]
    entries = audit if isinstance(audit, list) else audit.get("entries", audit.get("items", []))
    assert sum(1 for e in entries if e.get("target") == f"device:{device_id}") == 1


def test_the_firmware_publishes_csi_data_to_the_device_api_by_default():
    """The shipped deployment opens 8080 (HTTPS) for devices, not :3000."""
    text = FIRMWARE_KCONFIG.read_text()
    block = text[text.index("config CSI_OTA_DATA_URL") :].split("config ", 2)[1]
    assert 'default "https://ota-controller.local:8080"' in block
    assert ":3000" not in text
