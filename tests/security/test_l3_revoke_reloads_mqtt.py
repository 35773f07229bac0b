"""L3: revoking a device token cuts its MQTT access at once, without a manual `csi-ota mqtt-acl` run.

Before: a revoked device kept publishing heartbeats and CSI through Mosquitto until an operator
regenerated the password/ACL files and reloaded the broker. Now `serve --mqtt-acl-dir DIR
--mosquitto-pid-file F` rewrites the files after every credential change and SIGHUPs Mosquitto,
which disconnects the revoked device; a newly registered device can connect right away.
"""

from __future__ import annotations

import time

import pytest
from mqtt_support import MqttConnection, metric, poll, write_acl_files

from services import mosquitto_broker, start_controller

pytestmark = pytest.mark.mosquitto


def test_revoke_regenerates_the_files_and_reloads_mosquitto(tmp_path):
    setup = start_controller(tmp_path / "data")
    with setup.management_client() as mgmt:
        token = mgmt.post("/api/devices", json={"device_id": "l3_dev"}).json()["token"]
    acl_dir = write_acl_files(setup, tmp_path / "mqtt")
    setup.stop()
    with mosquitto_broker(password_file=acl_dir / "passwd", acl_file=acl_dir / "acl") as broker:
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(f"{broker.process.pid}\n")
        server = start_controller(
            tmp_path / "data",
            admin_token=setup.admin_token,
            mqtt=broker,
            mqtt_username="ota-controller",
            extra_args=["--mqtt-acl-dir", str(acl_dir), "--mosquitto-pid-file", str(pid_file)],
        )
        connections = []
        try:
            device = MqttConnection(broker.port, "l3_dev", token)
            connections.append(device)
            assert device.accepted
            recorded = poll(
                lambda: (
                    device.publish("csi/l3_dev/heartbeat", {"uptime_s": 1}),
                    metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"'),
                )[1],
                lambda count: count >= 1,
            )
            assert recorded >= 1, broker.log()

            with server.management_client() as mgmt:
                assert mgmt.post("/api/devices/l3_dev/token/revoke").status_code == 200
            assert "l3_dev" not in (acl_dir / "passwd").read_text()
            assert "l3_dev" not in (acl_dir / "acl").read_text()
            assert poll(lambda: device.disconnected, bool), "Mosquitto kept the revoked device connected"
            before = metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"')
            again = MqttConnection(broker.port, "l3_dev", token)
            connections.append(again)
            assert not again.accepted, "the revoked token still logs in to the broker"
            time.sleep(1.0)
            assert metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"') == before

            # A device registered now can use MQTT without anyone running `csi-ota mqtt-acl`.
            with server.management_client() as mgmt:
                fresh = mgmt.post("/api/devices", json={"device_id": "l3_new"}).json()["token"]
            newcomer = poll(lambda: MqttConnection(broker.port, "l3_new", fresh), lambda c: c.accepted)
            connections.append(newcomer)
            assert newcomer.accepted
        finally:
            for connection in connections:
                connection.close()
            server.stop()
