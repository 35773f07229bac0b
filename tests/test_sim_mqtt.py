"""The firmware's MQTT publishing on the virtual ESP32-S3, against a real Mosquitto on loopback.

csi-ota-sim-mqtt is firmware/main built with sdkconfig.ci.mqtt (CONFIG_CSI_OTA_PUBLISH_MQTT,
the shipped default): publish_mqtt.c talks to esp-mqtt's API, which the host layer implements
over libmosquitto (firmware/sim/idf/src/mqtt_client.c). A paho-mqtt subscriber watches what
reaches the broker; the device authenticates with the password derived from its token.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from csi_ota.certs import create_ca, create_server_cert
from csi_ota.controller.tokens import mosquitto_password_hash, mqtt_password_for
from csi_ota.provision import ProvisionConfig, build_nvs_image
from csi_ota.sim.flashfile import create_flash_file
from csi_ota.sim.runner import SIM_MQTT_BINARY, SimConfig, SimProcess, build_sim
from services import free_port, mosquitto_broker
from sim_support import OtaTestServer, ReleaseSigner, app_image, write_flash

pytestmark = [pytest.mark.sim]

IMAGE_BYTES = 150_000
DEVICE = "csi_sensor_mq"
TOKEN = "tok-mqtt"
WATCHER, WATCHER_PASSWORD = "watcher", "watcher-secret"
CSI_FRAME_BYTES = 168  # 40-byte header + 128 CSI bytes (docs/csi-frame.md)
V1_BOOT = r"app: running partition ota_0, version 1\.0\.0"
V2_BOOT = r"app: running partition ota_1, version 2\.0\.0"
WAIT_S = 20.0


@pytest.fixture(scope="module")
def mqtt_binary() -> Path:
    build_sim()
    assert SIM_MQTT_BINARY.exists()
    return SIM_MQTT_BINARY


@dataclass
class Watcher:
    """A paho subscriber on csi/#: every message, in arrival order."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self.cond.notify_all()

    def wait_for(self, topic: str, timeout_s: float = WAIT_S) -> bytes:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for got_topic, payload in self.messages:
                    if got_topic == topic:
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({t for t, _ in self.messages})
                    raise AssertionError(f"nothing on {topic} within {timeout_s} s (seen: {seen})")
                self.cond.wait(min(remaining, 0.5))

    def payloads(self, topic: str) -> list[bytes]:
        with self.cond:
            return [p for t, p in self.messages if t == topic]


@contextlib.contextmanager
def watching(host: str, port: int, **tls: object) -> Iterator[Watcher]:
    watcher = Watcher()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-watcher")
    client.username_pw_set(WATCHER, WATCHER_PASSWORD)
    if tls:
        client.tls_set(**tls)
    client.on_message = watcher.on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, port)
    client.subscribe("csi/#", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT_S), "the watcher's SUBSCRIBE was not acknowledged"
        yield watcher
    finally:
        client.loop_stop()
        client.disconnect()


def password_file(path: Path, device_password: str) -> Path:
    path.write_text(
        f"{DEVICE}:{mosquitto_password_hash(device_password)}\n"
        f"{WATCHER}:{mosquitto_password_hash(WATCHER_PASSWORD)}\n"
    )
    return path


def device_config(path: Path, server: OtaTestServer, signer: ReleaseSigner, mqtt_uri: str) -> Path:
    return SimConfig(
        device_id=DEVICE,
        version_check_url=server.version_url,
        trusted_keys=signer.trusted_keys,
        auth_token=TOKEN,
        extra={"mqtt_uri": mqtt_uri},
    ).write(path)


def test_heartbeat_stats_and_csi_frames_reach_the_broker_and_an_update_confirms_over_mqtt(
    tmp_path: Path, mqtt_binary: Path
) -> None:
    passwords = password_file(tmp_path / "passwd", mqtt_password_for(TOKEN))
    with (
        mosquitto_broker(password_file=passwords) as broker,
        OtaTestServer(token=TOKEN) as server,
        watching(broker.host, broker.port) as watcher,
    ):
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        uri = f"mqtt://{broker.host}:{broker.port}"
        config = device_config(tmp_path / "device.conf", server, signer, uri)
        server.publish(signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
        with SimProcess(flash, config, binary=mqtt_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.expect(rf"publish_mqtt: publishing to {uri} as {DEVICE}", from_start=True)
            sim.expect(r"publish_mqtt: connected to the broker", from_start=True)
            # The heartbeat is QoS 1: "sent" is logged only after the broker's PUBACK.
            sim.expect(r"heartbeat: sent \(version 1\.0\.0, ota_state valid\)", from_start=True)
            heartbeat = json.loads(watcher.wait_for(f"csi/{DEVICE}/heartbeat"))
            assert (heartbeat["device_id"], heartbeat["version"], heartbeat["ota_state"]) == (
                DEVICE,
                "1.0.0",
                "valid",
            )
            stats = json.loads(watcher.wait_for(f"csi/{DEVICE}/stats"))
            assert stats["device_id"] == DEVICE and "publish_errors" in stats
            frames = watcher.wait_for(f"csi/{DEVICE}/data")
            assert frames and len(frames) % CSI_FRAME_BYTES == 0
            # v2's self-tests include heartbeat_acked: its PUBACK comes from this broker.
            sim.send("ota check")
            sim.expect(V2_BOOT)
            sim.expect(r"ota: self-test passed; marking 2\.0\.0 valid")
            server.wait_for_report("success")
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                versions = {json.loads(p)["version"] for p in watcher.payloads(f"csi/{DEVICE}/heartbeat")}
                if "2.0.0" in versions:
                    break
                time.sleep(0.1)
            assert versions == {"1.0.0", "2.0.0"}
            assert sim.stop() == 0
    # The device never sent its token to the broker: the broker knows only the derived password.
    assert TOKEN not in passwords.read_text()


def test_a_broker_refusing_the_device_fails_the_heartbeat_self_test_and_v2_rolls_back(
    tmp_path: Path, mqtt_binary: Path
) -> None:
    passwords = password_file(tmp_path / "passwd", "not-the-derived-password")
    with mosquitto_broker(password_file=passwords) as broker, OtaTestServer(token=TOKEN) as server:
        signer = ReleaseSigner()
        flash = write_flash(tmp_path / "flash.bin", app_image("1.0.0", size_bytes=IMAGE_BYTES))
        config = device_config(
            tmp_path / "device.conf", server, signer, f"mqtt://{broker.host}:{broker.port}"
        )
        server.publish(signer.release(app_image("2.0.0", size_bytes=IMAGE_BYTES)))
        with SimProcess(flash, config, binary=mqtt_binary).start() as sim:
            sim.expect(V1_BOOT)
            # CONNACK "not authorised": MQTT_EVENT_ERROR, then MQTT_EVENT_DISCONNECTED (esp-mqtt's order).
            sim.expect(r"W \(\d+\) publish_mqtt: MQTT error", from_start=True)
            sim.expect(r"publish_mqtt: disconnected from the broker", from_start=True)
            sim.expect(r"heartbeat: heartbeat not acknowledged", timeout_s=30)
            sim.send("ota check")
            sim.expect(V2_BOOT)
            sim.expect(r"self-test heartbeat_acked failed", timeout_s=30)
            sim.expect(V1_BOOT)
            report = server.wait_for_report("rolled_back")
            assert report["target_version"] == "2.0.0"
            assert sim.stop() == 0


def mqtts_flash(path: Path, server: OtaTestServer, ca_pem: str, mqtt_uri: str) -> Path:
    """A flash file running 1.0.0 whose NVS provisions an mqtts:// broker and the CA to trust."""
    nvs = build_nvs_image(
        ProvisionConfig(
            update_url=server.version_url.replace("/version", "/firmware"),
            version_check_url=server.version_url,
            device_id=DEVICE,
            auth_token=TOKEN,
            check_interval_sec=3600,
            auto_update_enabled=False,
            ca_cert=ca_pem,
            mqtt_uri=mqtt_uri,
        )
    )
    return create_flash_file(path, images={0: app_image("1.0.0", size_bytes=IMAGE_BYTES)}, nvs=nvs)


def test_mqtts_verifies_the_broker_with_the_provisioned_ca(tmp_path: Path, mqtt_binary: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    cert = create_server_cert(tmp_path / "ca", tmp_path / "server", hostnames=["127.0.0.1"])
    passwords = password_file(tmp_path / "passwd", mqtt_password_for(TOKEN))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(OtaTestServer(token=TOKEN))
        tls_port = free_port()
        broker = stack.enter_context(
            mosquitto_broker(
                password_file=passwords,
                extra_config=[
                    f"listener {tls_port} 127.0.0.1",
                    f"certfile {cert.cert}",
                    f"keyfile {cert.key}",
                ],
            )
        )
        watcher = stack.enter_context(watching(broker.host, broker.port))
        signer = ReleaseSigner()
        uri = f"mqtts://127.0.0.1:{tls_port}"
        flash = mqtts_flash(tmp_path / "flash.bin", server, ca.cert.read_text(), uri)
        config = SimConfig(trusted_keys=signer.trusted_keys).write(tmp_path / "device.conf")
        with SimProcess(flash, config, binary=mqtt_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.expect(r"provisioning: device csi_sensor_mq, .* CA provisioned", from_start=True)
            sim.expect(r"publish_mqtt: connected to the broker", from_start=True)
            heartbeat = json.loads(watcher.wait_for(f"csi/{DEVICE}/heartbeat"))
            assert heartbeat["device_id"] == DEVICE
            assert sim.stop() == 0
        # Another CA did not sign the broker's certificate: the TLS handshake fails.
        other = create_ca(tmp_path / "other-ca")
        flash = mqtts_flash(tmp_path / "flash2.bin", server, other.cert.read_text(), uri)
        before = len(watcher.payloads(f"csi/{DEVICE}/heartbeat"))
        with SimProcess(flash, config, binary=mqtt_binary).start() as sim:
            sim.expect(V1_BOOT)
            sim.expect(r"mqtt_client: Error transport connect", from_start=True)
            sim.expect(r"publish_mqtt: MQTT error", from_start=True)
            sim.expect(r"heartbeat: heartbeat not acknowledged", timeout_s=30)
            assert not any("publish_mqtt: connected" in line for line in sim.lines)
            assert sim.stop() == 0
        assert len(watcher.payloads(f"csi/{DEVICE}/heartbeat")) == before
