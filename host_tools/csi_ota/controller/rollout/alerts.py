"""Alerts: a webhook POST with a JSON body, a log line and Prometheus metrics.

An alert is stored in ``rollout_alerts`` in the same transaction as the
decision that raised it, then delivered by the engine holding the lease —
so a crash between deciding and sending still sends it (at least once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from csi_ota.controller.db import session_scope
from csi_ota.controller.rollout.models import RolloutAlert

log = logging.getLogger("csi_ota.rollout")

WEBHOOK_TIMEOUT_S = 5.0
MAX_DELIVERY_ATTEMPTS = 5
DELIVERY_BATCH = 20

# Created unregistered; attach() registers them with the controller's /metrics registry.
ROLLOUT_HALTS = Counter(
    "csi_ota_rollout_halts", "Rollouts halted by a failure gate", ["rollout"], registry=None
)
ROLLOUT_ALERTS = Counter(
    "csi_ota_rollout_alerts", "Rollout alert webhooks by delivery result", ["result"], registry=None
)
ROLLOUT_DEVICES = Gauge(
    "csi_ota_rollout_devices", "Devices of open rollouts by state", ["rollout", "state"], registry=None
)
ROLLOUT_STAGE = Gauge(
    "csi_ota_rollout_stage", "Current stage index of open rollouts", ["rollout"], registry=None
)
ENGINE_ACTIVE = Gauge(
    "csi_ota_rollout_engine_active", "1 when this process holds the engine lease", registry=None
)
ALL_METRICS = (ROLLOUT_HALTS, ROLLOUT_ALERTS, ROLLOUT_DEVICES, ROLLOUT_STAGE, ENGINE_ACTIVE)


def register_metrics(registry) -> None:
    """Adds the rollout metrics to ``registry`` (the controller's), once."""
    for metric in ALL_METRICS:
        with contextlib.suppress(ValueError):  # already registered with this registry
            registry.register(metric)


def queue_alert(session: Session, rollout_id: int, url: str, payload: dict) -> None:
    """Logs the alert and stores it for delivery (no URL: log line and metric only)."""
    log.warning("rollout alert: %s", payload.get("message", payload))
    if url:
        session.add(RolloutAlert(rollout_id=rollout_id, url=url, payload=payload, state="pending"))


def deliver_pending(sessions: sessionmaker[Session], client: httpx.Client) -> int:
    """POSTs pending alerts; returns how many were delivered. Bounded in count and time."""
    with session_scope(sessions) as session:
        pending = session.scalars(
            select(RolloutAlert)
            .where(RolloutAlert.state == "pending")
            .order_by(RolloutAlert.id)
            .limit(DELIVERY_BATCH)
        ).all()
        work = [(a.id, a.url, dict(a.payload)) for a in pending]
    delivered = 0
    for alert_id, url, payload in work:
        error = ""
        try:
            response = client.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with session_scope(sessions) as session:
            alert = session.get(RolloutAlert, alert_id)
            if alert is None or alert.state != "pending":
                continue
            alert.attempts += 1
            if not error:
                alert.state = "sent"
                alert.sent = dt.datetime.now(dt.UTC)
                delivered += 1
                ROLLOUT_ALERTS.labels("sent").inc()
            else:
                alert.last_error = error[:500]
                ROLLOUT_ALERTS.labels("error").inc()
                log.warning("rollout alert %d to %s failed: %s", alert_id, url, error)
                if alert.attempts >= MAX_DELIVERY_ATTEMPTS:
                    alert.state = "failed"
    return delivered
