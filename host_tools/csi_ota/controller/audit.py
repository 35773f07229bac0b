"""The audit log: one row per management action and per device OTA state change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from csi_ota.controller.models import AuditEntry, utcnow
from csi_ota.errors import CsiOtaError


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


def export_json_lines(
    open_session: Callable[[], AbstractContextManager[Session]],
    *,
    after_id: int = 0,
    limit: int,
    page_size: int = 1000,
    **filters: Any,
) -> Iterator[str]:
    """The matching entries as JSON Lines, read one page (one short transaction) at a time."""
    last_id, remaining = after_id, limit
    while remaining > 0:
        with open_session() as session:
            page = query(session, after_id=last_id, limit=min(page_size, remaining), **filters)
            lines = list(to_json_lines(page))
        if not page:
            return
        yield from lines
        last_id, remaining = page[-1].id, remaining - len(page)


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 filter time (naive = UTC); CsiOtaError naming ``name`` when malformed."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CsiOtaError(f"{name}: not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
