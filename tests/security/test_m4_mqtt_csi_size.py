"""M4: CSI over MQTT has the HTTP path's 256 KiB limit, at the broker and in the bridge.

Before: 5 x 50 MiB on csi/<id>/data stored 201 MB for one device. Now the shipped mosquitto.conf
drops payloads over 256 KiB (message_size_limit) and the bridge drops them too (a broker
configured without the limit).
"""

from __future__ import annotations

import pytest
from mqtt_support import MqttConnection, metric, poll, shipped_broker_limits, write_acl_files

from csi_ota.controller.csi_sink import read_records
from services import mosquitto_broker, start_controller

pytestmark = pytest.mark.mosquitto

LIMIT_BYTES = 256 * 1024


@pytest.mark.parametrize("broker_limits", ["shipped", "none"])
def test_oversized_csi_is_dropped(tmp_path, broker_limits):
    extra = shipped_broker_limits() if broker_limits == "shipped" else []
    if broker_limits == "shipped":
        assert extra == [f"message_size_limit {LIMIT_BYTES}"]
    setup = start_controller(tmp_path / "data")
    with setup.management_client() as mgmt:
        token = mgmt.post("/api/devices", json={"device_id": "m4_dev"}).json()["token"]
    acl_dir = write_acl_files(setup, tmp_path / "mqtt")
    setup.stop()
    with mosquitto_broker(
        password_file=acl_dir / "passwd", acl_file=acl_dir / "acl", extra_config=extra
    ) as broker:
        server = start_controller(
            tmp_path / "data",
            admin_token=setup.admin_token,
            mqtt=broker,
            mqtt_username="ota-controller",
            extra_args=["--mqtt-password-file", str(acl_dir / "controller.password")],
        )
        device = MqttConnection(broker.port, "m4_dev", token)
        try:
            assert device.accepted
            probe = b"\x01probe"
            stored = poll(
                lambda: (
                    device.publish("csi/m4_dev/data", probe),
                    metric(server, "csi_ota_csi_messages_total", 'transport="mqtt"'),
                )[1],
                lambda count: count >= 1,
            )
            assert stored >= 1, broker.log()
            for size in (LIMIT_BYTES + 1, 5 * 1024 * 1024):
                if device.disconnected:
                    break
                device.publish("csi/m4_dev/data", b"\xee" * size)
            if device.disconnected:  # a broker may drop the connection instead of the message
                device.close()
                device = MqttConnection(broker.port, "m4_dev", token)
            largest_allowed = b"\x02" + b"\xab" * (LIMIT_BYTES - 1)
            device.publish("csi/m4_dev/data", largest_allowed)
            path = server.data_dir / "csi" / "m4_dev" / "csi.bin"
            payloads = poll(
                lambda: [p for _, p in read_records(path)] if path.exists() else [],
                lambda found: largest_allowed in found,
            )
            assert largest_allowed in payloads
            assert max(len(p) for p in payloads) == LIMIT_BYTES
            assert path.stat().st_size < 2 * LIMIT_BYTES
        finally:
            device.close()
            server.stop()
