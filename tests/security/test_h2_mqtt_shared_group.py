"""H2: a device account cannot take a share of the controller's MQTT messages.

Before: any device could SUBSCRIBE ``$share/csi-ota-controller/csi/+/heartbeat``; Mosquitto 2's
ACL file does not check subscriptions, so the broker handed the attacker a round-robin share and
then dropped what it may not read (1 attacker connection: 25 of 50 heartbeats reached the
controller). Now the controller's group name carries a secret derived from its broker password
and devices have no read rights: the controller gets all 50 of 50.
"""

from __future__ import annotations

import pytest
from mqtt_support import MqttConnection, metric, poll, write_acl_files

from services import mosquitto_broker, start_controller

pytestmark = pytest.mark.mosquitto

HEARTBEATS = 50
ATTACKER_CONNECTIONS = 3
GROUP_FILTERS = [
    "$share/csi-ota-controller/csi/+/heartbeat",
    "$share/csi-ota-controller/csi/#",
    "$share/csi-ota-controller/#",
]


def test_a_device_cannot_starve_the_controller(tmp_path):
    setup = start_controller(tmp_path / "data")
    with setup.management_client() as mgmt:
        tokens = {
            d: mgmt.post("/api/devices", json={"device_id": d}).json()["token"] for d in ("h2_dev", "h2_evil")
        }
    acl_dir = write_acl_files(setup, tmp_path / "mqtt")
    setup.stop()
    with mosquitto_broker(password_file=acl_dir / "passwd", acl_file=acl_dir / "acl") as broker:
        server = start_controller(
            tmp_path / "data",
            admin_token=setup.admin_token,
            mqtt=broker,
            mqtt_username="ota-controller",
            extra_args=["--mqtt-password-file", str(acl_dir / "controller.password")],
        )
        connections = []
        try:
            device = MqttConnection(broker.port, "h2_dev", tokens["h2_dev"])
            connections.append(device)
            assert device.accepted
            # The bridge is subscribed once a probe heartbeat is recorded (bounded wait).
            seen = poll(
                lambda: (
                    device.publish("csi/h2_dev/heartbeat", {"uptime_s": 1}),
                    metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"'),
                )[1],
                lambda count: count >= 1,
            )
            assert seen >= 1, broker.log()
            for _ in range(ATTACKER_CONNECTIONS):
                attacker = MqttConnection(broker.port, "h2_evil", tokens["h2_evil"])
                connections.append(attacker)
                assert attacker.accepted
                for topic in GROUP_FILTERS:
                    attacker.subscribe(topic)
            before = metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"')
            for index in range(HEARTBEATS):
                device.publish("csi/h2_dev/heartbeat", {"uptime_s": 100 + index})
            after = poll(
                lambda: metric(server, "csi_ota_heartbeats_total", 'transport="mqtt"'),
                lambda count: count >= before + HEARTBEATS,
            )
            assert after - before == HEARTBEATS, f"controller got {after - before} of {HEARTBEATS} heartbeats"
            with server.management_client() as mgmt:
                assert mgmt.get("/api/devices/h2_dev").json()["uptime_s"] == 100 + HEARTBEATS - 1
        finally:
            for connection in connections:
                connection.close()
            server.stop()
