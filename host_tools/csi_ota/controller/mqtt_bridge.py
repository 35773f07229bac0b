"""The MQTT side (the seed's current architecture): csi/+/data, csi/+/stats, csi/+/heartbeat.

A paho-mqtt 2 client in its own thread (``loop_start``) that reconnects by
itself (1 s doubling to 30 s) and re-subscribes on every connect. Every
controller process runs one; they subscribe as one shared-subscription group
(``$share/<group>/csi/+/…``, MQTT 5 and Mosquitto ≥ 1.6 for 3.1.1 clients), so
the broker hands each message to exactly one process of a scale-out. An empty
group subscribes plainly (one controller process only). Heartbeats go
through :func:`registry.record_heartbeat` — the same update as the HTTP
heartbeat; stats replace the device's stats, except that a stats payload which
is an OTA status report (it has ``seq`` and ``state``: the seed's MQTT update
sequence) is stored as one through :func:`registry.record_status` — the same
schema, (device, seq) idempotency and audit as POST /api/ota/status; CSI data
goes to the CSI sink.
Messages from unknown or decommissioned devices, with bad ids or bad JSON are
dropped and counted (``dropped``). The broker's ACL (``csi-ota mqtt-acl``) is
what stops a device publishing under another device's id. CSI payloads over
``max_csi_bytes`` (the HTTP limit, 256 KiB) are dropped here too; the shipped
mosquitto.conf refuses them at the broker first (``message_size_limit``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections import Counter as Tally

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from csi_ota.controller import registry
from csi_ota.controller.context import ControllerContext
from csi_ota.controller.device_api import HeartbeatIn, StatusReportIn
from csi_ota.controller.models import Device
from csi_ota.errors import CsiOtaError

SUBSCRIPTIONS = [("csi/+/data", 0), ("csi/+/stats", 1), ("csi/+/heartbeat", 1)]
RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30
KEEPALIVE_S = 30
MAX_STATS_BYTES = 16 * 1024

log = logging.getLogger("csi_ota.mqtt")


SHARE_GROUP_SECRET_HEX_CHARS = 32
DEFAULT_MAX_CSI_BYTES = 256 * 1024


def share_group_for(share_group: str, password: str | None) -> str:
    """``share_group`` plus a 128-bit suffix only holders of the controller's broker password can compute.

    Every controller process of a scale-out has the same password, hence the same group.
    """
    if not share_group or not password:
        return share_group
    digest = hmac.new(password.encode("utf-8"), b"csi-ota mqtt share group", hashlib.sha256).hexdigest()
    return f"{share_group}-{digest[:SHARE_GROUP_SECRET_HEX_CHARS]}"


def subscriptions_for(share_group: str) -> list[tuple[str, int]]:
    """The topic filters to subscribe to, in ``share_group`` (plain when empty)."""
    if not share_group:
        return list(SUBSCRIPTIONS)
    if any(c in share_group for c in "/+#") or not share_group.isprintable():
        raise CsiOtaError(f"MQTT share group {share_group!r} must not contain '/', '+' or '#'")
    return [(f"$share/{share_group}/{topic}", qos) for topic, qos in SUBSCRIPTIONS]


class MqttBridge:
    def __init__(
        self,
        ctx: ControllerContext,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        share_group: str,
        max_csi_bytes: int = DEFAULT_MAX_CSI_BYTES,
        tls_ca: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.subscriptions = subscriptions_for(share_group_for(share_group, password))
        self.max_csi_bytes = max_csi_bytes
        self.host = host
        self.port = port
        self.counts: Tally[str] = Tally()
        self.connected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"csi-ota-controller-{os.getpid()}",
            clean_session=True,
        )
        if username:
            self._client.username_pw_set(username, password)
        if tls_ca:  # mqtts: the broker's certificate must chain to this CA and name the host
            self._client.tls_set(ca_certs=str(tls_ca))
        self._client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connect to %s:%s refused: %s", self.host, self.port, reason_code)
            return
        client.subscribe(self.subscriptions)
        self.connected.set()
        log.info("MQTT connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.info("MQTT disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.handle(message.topic, message.payload)
        except Exception:  # one bad message must not stop the bridge
            self.counts["error"] += 1
            log.exception("MQTT message on %s failed", message.topic)

    def handle(self, topic: str, payload: bytes) -> str:
        """Processes one message; returns what happened (for counts and tests)."""
        try:
            outcome = self._handle(topic, payload)
        except IntegrityError:  # the same (device, seq) report committed concurrently: already stored
            outcome = "status_repeat"
        self.counts[outcome] += 1
        return outcome

    def _handle(self, topic: str, payload: bytes) -> str:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "csi" or not registry.DEVICE_ID_PATTERN.match(parts[1]):
            return "dropped"
        device_id, kind = parts[1], parts[2]
        ctx = self.ctx
        if kind == "data":
            if not payload or len(payload) > self.max_csi_bytes:
                return "dropped"
            with ctx.session() as session:
                device = session.get(Device, device_id)
                if device is None or device.decommissioned:
                    return "dropped"
            ctx.csi_sink.write(device_id, payload)
            ctx.csi_counters.add(device_id, len(payload))
            ctx.metrics.csi_messages.labels(transport="mqtt").inc()
            return "data"
        if kind not in ("heartbeat", "stats"):
            return "dropped"
        if len(payload) > MAX_STATS_BYTES:
            return "dropped"
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return "dropped"
        if not isinstance(data, dict):
            return "dropped"
        with ctx.session() as session:
            device = session.get(Device, device_id)
            if device is None or device.decommissioned:
                return "dropped"
            if kind == "heartbeat":
                try:
                    beat = HeartbeatIn.model_validate(data)
                except ValidationError:
                    return "dropped"
                if beat.device_id is not None and beat.device_id != device_id:
                    return "dropped"
                registry.record_heartbeat(session, device, beat.model_dump(), ctx.now())
                ctx.metrics.heartbeats.labels(transport="mqtt").inc()
                return "heartbeat"
            if "seq" in data and "state" in data:
                return self._status_report(session, device, data)
            registry.record_stats(session, device, data, ctx.now())
            return "stats"

    def _status_report(self, session, device: Device, data: dict) -> str:
        try:
            report = StatusReportIn.model_validate(data)
        except ValidationError:
            return "dropped"
        if report.device_id != device.id:
            return "dropped"
        if registry.record_status(session, device, report.model_dump(), self.ctx.now()):
            self.ctx.metrics.status_reports.labels(state=report.state).inc()
            return "status"
        return "status_repeat"
