"""The audit log: one row per management action and per device OTA state change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from csi_ota.controller.models import AuditEntry, utcnow


def record(session: Session, actor: str, action: str, target: str = "", **details: Any) -> AuditEntry:
    """Adds an audit row in the caller's transaction (so it commits or rolls back with the change)."""
    entry = AuditEntry(
        at=utcnow(), actor=actor[:80], action=action[:64], target=target[:128], details=details
    )
    session.add(entry)
    return entry


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat().replace("+00:00", "Z"),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[AuditEntry]:
    statement = select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
    if actor:
        statement = statement.where(AuditEntry.actor == actor)
    if action:
        statement = statement.where(AuditEntry.action == action)
    if target:
        statement = statement.where(AuditEntry.target == target)
    if since:
        statement = statement.where(AuditEntry.at >= since)
    if until:
        statement = statement.where(AuditEntry.at < until)
    return list(session.scalars(statement))


def to_json_lines(entries: list[AuditEntry]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(entry_to_dict(entry), sort_keys=True, separators=(",", ":")) + "\n"
