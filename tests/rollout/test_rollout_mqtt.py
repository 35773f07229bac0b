"""`csi-ota fleet` end to end: registered devices, MQTT heartbeats through a real Mosquitto, a rollout."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from rollout_harness import create_rollout, start_world, stop_world

from csi_ota.cli import cli
from csi_ota.controller.mqtt_acl import write_mqtt_files
from csi_ota.controller.tokens import mosquitto_password_hash, mqtt_password_for
from csi_ota.fleet.runner import save_credentials
from services import mosquitto_broker, start_controller

SCALE = 10_800.0
DEVICES = 20
MQTT_DEVICES = 10


def test_fleet_command_heart_beats_over_mqtt_and_completes_a_rollout(tmp_path):
    world = start_world(tmp_path / "world", devices=DEVICES, scale=SCALE, prefix="mq")
    first = world.server
    first.stop()
    files = write_mqtt_files(
        tmp_path / "mqtt",
        [
            (device_id, mosquitto_password_hash(mqtt_password_for(token)))
            for device_id, token in world.credentials
        ],
    )
    try:
        with mosquitto_broker(password_file=files.password_file, acl_file=files.acl_file) as broker:
            world.servers[0] = start_controller(
                first.data_dir,
                database_url=first.database_url,
                trusted_keys=[world.public_key_path],
                extra_env=world.controller_env(),
                admin_token=first.admin_token,
                mqtt=broker,
                mqtt_username="ota-controller",
                extra_args=["--mqtt-password-file", str(files.controller_password_file)],
            )
            policy = {
                "stages": [50, 100],
                "soak_s": 3 * 3600,
                "batch_size": DEVICES,
                "health_timeout_s": int(30 * SCALE),
            }
            rollout = create_rollout(world, "2.0.0", policy)
            credentials = save_credentials(tmp_path / "fleet.json", world.credentials)
            args = [
                "fleet", "--controller", world.server.device_url, "--credentials", str(credentials),
                "--trusted-key", str(world.public_key_path), "--initial-sequence", "1",
                "--check-interval", f"{int(2 * SCALE)}s", "--heartbeat-interval", f"{int(4 * SCALE)}s",
                "--time-scale", str(SCALE), "--duration", "90s", "--rollout", str(rollout["id"]),
                "--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-devices", str(MQTT_DEVICES), "--quiet",
                "--server", world.server.management_url, "--token", world.server.admin_token,
                "--summary", str(tmp_path / "summary.json"),
            ]  # fmt: skip
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            with world.management() as client:
                metrics = client.get("/metrics").text
    finally:
        stop_world(world)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["rollout"]["state"] == "completed"
    assert summary["versions"] == {"2.0.0": DEVICES}
    assert summary["mqtt_devices_connected"] == MQTT_DEVICES and summary["mqtt_heartbeats"] >= MQTT_DEVICES
    mqtt_heartbeats = re.search(r'csi_ota_heartbeats_total\{transport="mqtt"\} ([0-9.]+)', metrics)
    assert mqtt_heartbeats and float(mqtt_heartbeats.group(1)) >= MQTT_DEVICES
    assert any("gate passed" in message for message in summary["rollout"]["gate_decisions"])
