"""MQTT for simulated devices: heartbeats on ``csi/<id>/heartbeat`` (the seed's current architecture).

Each MQTT device has its own paho-mqtt connection (user = device id,
password = mqtt_password_for(device token), as the firmware derives it and the broker files expect),
so the broker's ACL really confines it to its own topics. paho runs each
connection's network loop in a thread; keep the MQTT share of a large fleet
modest (tens of devices) — the rest heart-beat over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from csi_ota.controller.tokens import mqtt_password_for

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30


class MqttDevices:
    def __init__(self, host: str, port: int, credentials: list[tuple[str, str]]) -> None:
        self.host = host
        self.port = port
        self.clients: dict[str, mqtt.Client] = {}
        self.connected: dict[str, threading.Event] = {}
        self.published = 0
        for device_id, token in credentials:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{device_id}")
            client.username_pw_set(device_id, mqtt_password_for(token))  # as the firmware derives it
            event = threading.Event()

            def on_connect(_client, _userdata, _flags, reason_code, _properties, event=event) -> None:
                if not reason_code.is_failure:
                    event.set()

            def on_disconnect(_client, _userdata, _flags, _reason_code, _properties, event=event) -> None:
                event.clear()

            client.on_connect = on_connect
            client.on_disconnect = on_disconnect
            client.reconnect_delay_set(1, 10)
            self.clients[device_id] = client
            self.connected[device_id] = event

    def start(self) -> int:
        """Connects every device; returns how many are connected within the timeout."""
        for client in self.clients.values():
            client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
            client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for event in self.connected.values():
            event.wait(max(0.0, deadline - time.monotonic()))
        return sum(1 for e in self.connected.values() if e.is_set())

    def publish(self, device_id: str, suffix: str, payload: dict[str, Any]) -> bool:
        """Publishes for an MQTT device (QoS 1); False when it is not an MQTT device or not connected."""
        client = self.clients.get(device_id)
        if client is None or not self.connected[device_id].is_set():
            return False
        info = client.publish(f"csi/{device_id}/{suffix}", json.dumps(payload), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self.published += 1
        return True

    def stop(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
