"""The MQTT path through a real Mosquitto with the password and ACL files `csi-ota mqtt-acl` writes."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from controller_helpers import BACKENDS
from paho.mqtt.enums import CallbackAPIVersion

from csi_ota.cli import cli
from csi_ota.controller.csi_sink import read_records
from csi_ota.controller.tokens import mqtt_password_for
from services import free_port, mosquitto_broker, start_controller

WAIT_S = 15.0

pytestmark = pytest.mark.mosquitto


class DeviceClient:
    """A device's MQTT connection (username = device id, password = device token)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"dev-{username}-{time.monotonic_ns()}",
        )
        self.client.username_pw_set(username, password)
        self.result = None

        def on_connect(client, userdata, flags, reason_code, properties):
            self.result = reason_code

        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        deadline = time.monotonic() + WAIT_S
        while self.result is None and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def accepted(self) -> bool:
        return self.result is not None and not self.result.is_failure

    def publish(self, topic: str, payload: bytes | dict) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1).wait_for_publish(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _poll(fetch, predicate, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    value = fetch()
    while not predicate(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = fetch()
    return value


@pytest.mark.parametrize("backend", BACKENDS)
def test_mqtt_heartbeat_stats_data_acl_and_reconnect(backend, backend_url, tmp_path, release_public_key):
    database_url = backend_url(backend)
    # 1. A controller with two devices writes the broker's files.
    server = start_controller(tmp_path / "data", database_url=database_url)
    try:
        tokens = {}
        with server.management_client() as mgmt:
            for device_id in ("mq_a", "mq_b"):
                tokens[device_id] = mgmt.post("/api/devices", json={"device_id": device_id}).json()["token"]
        result = CliRunner().invoke(
            cli,
            [
                "mqtt-acl",
                "--out-dir",
                str(tmp_path / "mqtt"),
                "--server",
                server.management_url,
                "--token",
                server.admin_token,
            ],
        )
        assert result.exit_code == 0, result.output
    finally:
        server.stop()
    passwd = (tmp_path / "mqtt" / "passwd").read_text()
    assert passwd.count("$7$") == 3 and "mq_a:" in passwd and "ota-controller:" in passwd
    assert tokens["mq_a"] not in passwd
    assert (tmp_path / "mqtt" / "passwd").stat().st_mode & 0o777 == 0o600

    # 2. The controller starts before the broker exists and connects once it is up.
    port = free_port()
    server = start_controller(
        tmp_path / "data",
        database_url=database_url or server.database_url,
        admin_token=server.admin_token,
        mqtt=("127.0.0.1", port),
        mqtt_username="ota-controller",
        extra_args=["--mqtt-password-file", str(tmp_path / "mqtt" / "controller.password")],
    )
    files = {"password_file": tmp_path / "mqtt" / "passwd", "acl_file": tmp_path / "mqtt" / "acl"}
    try:
        with server.management_client() as mgmt:

            def show(device_id):
                return mgmt.get(f"/api/devices/{device_id}").json()

            def heartbeat_until_seen(device: DeviceClient, uptime: int) -> dict:
                # Until the bridge has (re)subscribed, messages are lost: keep publishing, bounded.
                deadline = time.monotonic() + WAIT_S
                while show("mq_a")["uptime_s"] != uptime and time.monotonic() < deadline:
                    device.publish(
                        "csi/mq_a/heartbeat",
                        {"device_id": "mq_a", "uptime_s": uptime, "rssi": -50, "ota_state": "valid"},
                    )
                    time.sleep(0.3)
                return show("mq_a")

            # Round 1, then a broker restart: the bridge reconnects and resubscribes by itself.
            for uptime in (100, 200):
                with mosquitto_broker(port=port, **files) as broker:
                    assert not DeviceClient(broker.port, "mq_a", "wrong-password").accepted
                    # The MQTT password is derived from the token (tokens.mqtt_password_for), not the token.
                    assert not DeviceClient(broker.port, "mq_a", tokens["mq_a"]).accepted
                    device_a = DeviceClient(broker.port, "mq_a", mqtt_password_for(tokens["mq_a"]))
                    assert device_a.accepted
                    shown = heartbeat_until_seen(device_a, uptime)
                    assert (shown["uptime_s"], shown["rssi"], shown["health"]) == (uptime, -50, "healthy")
                    if uptime == 100:
                        device_a.close()
                        continue
                    # Impersonation: the ACL drops mq_a's publish under mq_b's id.
                    device_a.publish("csi/mq_b/heartbeat", {"uptime_s": 999, "rssi": -1})
                    device_a.publish("csi/mq_a/stats", {"frames_dropped": 3})
                    for index in range(3):
                        device_a.publish("csi/mq_a/data", b"\x00csi-frame-%d" % index)
                    assert _poll(lambda: show("mq_a")["stats"], lambda v: v == {"frames_dropped": 3}) == {
                        "frames_dropped": 3
                    }
                    assert _poll(lambda: show("mq_a")["csi_messages_received"], lambda v: v == 3) == 3
                    payloads = [p for _, p in read_records(server.data_dir / "csi" / "mq_a" / "csi.bin")]
                    assert payloads == [b"\x00csi-frame-%d" % i for i in range(3)]
                    assert show("mq_b")["uptime_s"] is None  # the ACL kept mq_a out of mq_b's topics
                    assert show("mq_b")["last_heartbeat"] is None
                    device_a.close()
    finally:
        server.stop()


def _mqtt_heartbeats(server) -> float:
    with server.management_client() as mgmt:
        text = mgmt.get("/metrics").text
    for line in text.splitlines():
        if line.startswith('csi_ota_heartbeats_total{transport="mqtt"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.postgres
def test_two_controller_processes_share_the_mqtt_subscriptions(pg, tmp_path):
    """One broker, two controllers on one PostgreSQL: each heartbeat is recorded by exactly one."""
    url = pg.create_database("csi_ota_mqtt_share")
    with mosquitto_broker() as broker:
        first = start_controller(tmp_path / "a", database_url=url, mqtt=broker)
        second = start_controller(
            tmp_path / "b", database_url=url, admin_token=first.admin_token, mqtt=broker
        )
        servers = (first, second)
        try:
            with first.management_client() as mgmt:
                assert mgmt.post("/api/devices", json={"device_id": "mq_shared"}).status_code == 201
            device = DeviceClient(broker.port, "mq_shared", "anonymous-broker")
            assert device.accepted
            # Until both bridges have subscribed, keep publishing (bounded); the broker then
            # alternates between the members of the shared group.
            deadline = time.monotonic() + WAIT_S
            uptime = 0
            while min(_mqtt_heartbeats(s) for s in servers) < 1 and time.monotonic() < deadline:
                uptime += 1
                device.publish("csi/mq_shared/heartbeat", {"uptime_s": uptime, "rssi": -50})
                time.sleep(0.2)
            assert min(_mqtt_heartbeats(s) for s in servers) >= 1, "both processes receive heartbeats"
            time.sleep(1.0)  # let the last of those land
            before = sum(_mqtt_heartbeats(s) for s in servers)
            extra = 20
            for step in range(1, extra + 1):
                device.publish("csi/mq_shared/heartbeat", {"uptime_s": uptime + step, "rssi": -50})
            total = _poll(lambda: sum(_mqtt_heartbeats(s) for s in servers), lambda v: v >= before + extra)
            time.sleep(1.0)  # a duplicate delivery would have arrived by now
            assert sum(_mqtt_heartbeats(s) for s in servers) == total == before + extra  # once each
            with first.management_client() as mgmt:
                assert mgmt.get("/api/devices/mq_shared").json()["health"] == "healthy"
            device.close()
        finally:
            second.stop()
            first.stop()
