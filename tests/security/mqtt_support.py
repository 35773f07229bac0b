"""MQTT helpers of tests/security: a device's paho connection and a controller wired to a real Mosquitto.

The setup is what an operator does (docs/operations.md): register devices, run
`csi-ota mqtt-acl`, start Mosquitto with its files, start `csi-ota serve` with
the controller's broker account.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from csi_ota.cli import cli
from csi_ota.controller.tokens import mqtt_password_for
from services import ControllerServer

WAIT_S = 15.0
SHIPPED_MOSQUITTO_CONF = (
    Path(__file__).resolve().parents[2] / "deploy" / "config" / "mosquitto" / "mosquitto.conf"
)


class MqttConnection:
    """One client connection (a device, or an attacker holding a device's credentials)."""

    def __init__(
        self,
        port: int,
        username: str,
        device_token: str,
        *,
        tls_ca: Path | None = None,
        wait_s: float = WAIT_S,
        raw_password: bool = False,
    ) -> None:
        """Logs in as a device does: password = mqtt_password_for(token) (``raw_password``: the token as is)."""
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{username}-{time.monotonic_ns()}"
        )
        self.client.username_pw_set(
            username, device_token if raw_password else mqtt_password_for(device_token)
        )
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.result = None
        self.granted: list = []
        self.disconnected = False
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "result", rc)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.granted.extend(codes)
        self.client.on_disconnect = lambda *args: setattr(self, "disconnected", True)
        try:
            self.client.connect("127.0.0.1", port, keepalive=10)
        except OSError:  # e.g. a TLS handshake the broker never answers
            return
        self.client.loop_start()
        deadline = time.monotonic() + wait_s
        while self.result is None and not self.disconnected and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def accepted(self) -> bool:
        return self.result is not None and not self.result.is_failure

    def subscribe(self, topic: str) -> None:
        count = len(self.granted)
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + WAIT_S
        while len(self.granted) == count and time.monotonic() < deadline:
            time.sleep(0.02)

    def publish(self, topic: str, payload: bytes | dict, *, qos: int = 1) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=qos).wait_for_publish(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_acl_files(controller: ControllerServer, out_dir: Path) -> Path:
    result = CliRunner().invoke(
        cli,
        ["mqtt-acl", "--out-dir", str(out_dir), "--server", controller.management_url],
        env={"CSI_OTA_TOKEN": controller.admin_token},
    )
    assert result.exit_code == 0, result.output
    return out_dir


def metric(controller: ControllerServer, name: str, labels: str) -> float:
    text = httpx.get(f"{controller.management_url}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def poll(fetch, predicate, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    value = fetch()
    while not predicate(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = fetch()
    return value


def shipped_broker_limits() -> list[str]:
    """The size-limit lines of deploy/config/mosquitto/mosquitto.conf, for a test broker."""
    lines = SHIPPED_MOSQUITTO_CONF.read_text().splitlines()
    return [line for line in lines if line.split()[:1] in (["message_size_limit"], ["max_packet_size"])]
