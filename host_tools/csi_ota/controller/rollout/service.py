"""Rollout management as library functions: create, operator controls, views.

The HTTP routes (api.py) and the tests call these; each runs in the caller's
transaction and records an audit entry, so a refused request changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter as Tally
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csi_ota.controller import audit
from csi_ota.controller.models import Device, Release, utcnow
from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.controller.releases import first_forward_release
from csi_ota.controller.rollout.clock import VirtualClock
from csi_ota.controller.rollout.engine import add_event, release_memberships, unassign
from csi_ota.controller.rollout.models import (
    OPEN_ROLLOUT_STATES,
    Rollout,
    RolloutDevice,
    RolloutEvent,
    RolloutMembership,
    RolloutStage,
)
from csi_ota.controller.rollout.policy import RolloutPolicy, assign_stages
from csi_ota.errors import CsiOtaError

MAX_EXPLICIT_DEVICES = 100_000
MAX_ID = 2**31 - 1
NAME_MAX_CHARS = 80


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def find_release(session: Session, ref: str | int) -> Release:
    """A release by id or by version (not a rollback release, not retired)."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        if not (1 <= int(ref) <= MAX_ID):
            raise NotFound(f"no release {ref!r}")
        release = session.get(Release, int(ref))
    else:
        release = first_forward_release(session, [str(ref)])
    if release is None:
        raise NotFound(f"no release {ref!r}")
    if release.retired:
        raise Conflict(f"release {release.version} is retired")
    if release.rollback:
        raise Conflict(f"release {release.version} is a rollback release; roll out a normal release")
    return release


def select_devices(session: Session, selection: dict[str, Any]) -> list[Device]:
    """Devices named by a selection: {"all": true}, {"tag": "..."} or {"devices": [...]}."""
    keys = {k for k, v in selection.items() if v not in (None, False, "", [])}
    if len(keys) != 1 or not keys <= {"all", "tag", "devices"}:
        raise CsiOtaError(
            'selection must be exactly one of {"all": true}, {"tag": "<tag>"}, {"devices": [ids]}'
        )
    active = select(Device).where(Device.decommissioned.is_(False)).order_by(Device.id)
    if "all" in keys:
        if selection["all"] is not True:
            raise CsiOtaError('selection "all" must be true')
        return list(session.scalars(active))
    if "tag" in keys:
        tag = selection["tag"]
        if not isinstance(tag, str):
            raise CsiOtaError("selection tag must be a string")
        return [d for d in session.scalars(active) if tag in (d.tags or [])]
    ids = selection["devices"]
    if (
        not isinstance(ids, list)
        or not all(isinstance(i, str) for i in ids)
        or len(ids) > MAX_EXPLICIT_DEVICES
    ):
        raise CsiOtaError(f"selection devices must be a list of up to {MAX_EXPLICIT_DEVICES} device ids")
    wanted = sorted(set(ids))
    found = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(wanted)))}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"unknown device(s): {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
    gone = [i for i in wanted if found[i].decommissioned]
    if gone:
        raise Conflict(f"decommissioned device(s): {', '.join(gone[:10])}")
    return [found[i] for i in wanted]


def infer_previous_release(session: Session, devices: list[Device], target: Release) -> Release | None:
    """The release most selected devices run now (what a rollback returns them to)."""
    versions = Tally(d.version for d in devices if d.version and d.version != target.version)
    return first_forward_release(session, (version for version, _count in versions.most_common()))


def create_rollout(
    session: Session,
    *,
    release: str | int,
    selection: dict[str, Any],
    policy: dict[str, Any] | None = None,
    name: str = "",
    previous_release: str | int | None = None,
    allow_no_rollback_target: bool = False,
    actor: str,
    clock: VirtualClock | None = None,
) -> Rollout:
    clock = clock or VirtualClock()
    if not isinstance(selection, dict):
        raise CsiOtaError("selection must be a JSON object")
    rollout_policy = RolloutPolicy.from_dict(policy or {})
    target = find_release(session, release)
    devices = select_devices(session, selection)
    if not devices:
        raise CsiOtaError("the selection matches no device")
    ids = [d.id for d in devices]
    busy: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        for rollout_id, count in session.execute(
            select(RolloutMembership.rollout_id, func.count())
            .where(RolloutMembership.device_id.in_(ids[start : start + 500]))
            .group_by(RolloutMembership.rollout_id)
        ):
            busy[rollout_id] = busy.get(rollout_id, 0) + count
    if busy:
        detail = ", ".join(f"{n} in rollout {rid}" for rid, n in sorted(busy.items()))
        raise Conflict(
            f"devices already belong to an open rollout ({detail}); exclude them or abort that rollout"
        )
    previous = find_release(session, previous_release) if previous_release is not None else None
    if previous is None:
        previous = infer_previous_release(session, devices, target)
    if previous is not None and previous.id == target.id:
        raise CsiOtaError("the previous release (rollback target) cannot be the release being rolled out")
    if previous is None and rollout_policy.rollback == "auto" and not allow_no_rollback_target:
        raise CsiOtaError(
            "rollback=auto but no previous release is known (no selected device runs a stored release): "
            "name one with previous_release (--previous-release), choose rollback none, or accept "
            "halting without a rollback with allow_no_rollback_target (--no-rollback-target-ok)"
        )
    name = (name or f"{target.project} {target.version}").strip()[:NAME_MAX_CHARS]
    now_real, now_vt = utcnow(), clock.now()
    rollout = Rollout(
        name=name,
        release_id=target.id,
        previous_release_id=previous.id if previous else None,
        selection=selection,
        policy=rollout_policy.to_dict(),
        state="active",
        current_stage=0,
        created_by=actor,
        created=now_real,
        updated=now_real,
    )
    session.add(rollout)
    session.flush()
    per_stage = Tally()
    rows = []
    stages = assign_stages(
        rollout.id, [d.id for d in devices], rollout_policy.stages, rollout_policy.success_min_count
    )
    for device in devices:
        stage, bucket = stages[device.id]
        per_stage[stage] += 1
        rows.append(
            RolloutDevice(
                rollout_id=rollout.id, device_id=device.id, stage=stage, bucket=bucket, state="pending"
            )
        )
    session.add_all(rows)
    for index, percent in enumerate(rollout_policy.stages):
        session.add(
            RolloutStage(
                rollout_id=rollout.id,
                index=index,
                percent=percent,
                soak_s=rollout_policy.soak_s,
                state="open" if index == 0 else "waiting",
                member_count=per_stage[index],
                opened_vt=now_vt if index == 0 else None,
            )
        )
    session.add_all(RolloutMembership(device_id=d.id, rollout_id=rollout.id) for d in devices)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create took some of these devices
        raise Conflict("devices already belong to an open rollout (created concurrently)") from exc
    sizes = ", ".join(f"{p} %: {per_stage[i]}" for i, p in enumerate(rollout_policy.stages))
    target_text = f"rollback to {previous.version}" if previous else "no rollback target"
    add_event(
        session,
        rollout,
        "created",
        f"rollout of {target.version} to {len(devices)} devices created by {actor} (stages {sizes}; "
        f"batch {rollout_policy.batch_size}; window {rollout_policy.window.describe()}; {target_text})",
        now_vt,
        devices=len(devices),
    )
    audit.record(
        session,
        actor,
        "rollout.create",
        f"rollout:{rollout.id}",
        release=target.version,
        devices=len(devices),
    )
    return rollout


def get_rollout(session: Session, rollout_id: int, *, for_update: bool = False) -> Rollout:
    statement = select(Rollout).where(Rollout.id == rollout_id)
    if for_update:
        statement = statement.with_for_update()
    rollout = session.scalar(statement)
    if rollout is None:
        raise NotFound(f"no rollout {rollout_id}")
    return rollout


def _require_state(rollout: Rollout, allowed: tuple[str, ...], action: str) -> None:
    if rollout.state not in allowed:
        raise Conflict(
            f"cannot {action} rollout {rollout.id}: it is {rollout.state} (needs {' or '.join(allowed)})"
        )


def pause(session: Session, rollout_id: int, *, actor: str, clock: VirtualClock) -> Rollout:
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_state(rollout, ("active",), "pause")
    rollout.state = "paused"
    rollout.updated = utcnow()
    add_event(session, rollout, "operator", f"paused by {actor}", clock.now())
    audit.record(session, actor, "rollout.pause", f"rollout:{rollout.id}")
    return rollout


def resume(session: Session, rollout_id: int, *, actor: str, clock: VirtualClock) -> Rollout:
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_state(rollout, ("paused", "halted"), "resume")
    was = rollout.state
    rollout.state = "active"
    rollout.halt_reason = ""
    rollout.hold_reason = ""
    rollout.updated = utcnow()
    stage = session.get(RolloutStage, (rollout.id, rollout.current_stage))
    if stage is not None and stage.state == "halted":
        stage.state = "open"
        stage.soak_started_vt = None
    add_event(session, rollout, "operator", f"resumed by {actor} (was {was})", clock.now())
    audit.record(session, actor, "rollout.resume", f"rollout:{rollout.id}", was=was)
    return rollout


def abort(session: Session, rollout_id: int, *, actor: str, clock: VirtualClock) -> Rollout:
    """Stops the rollout: offers are withdrawn (downloading devices stop at their next check)."""
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_state(rollout, OPEN_ROLLOUT_STATES, "abort")
    withdrawn = 0
    rds = session.scalars(
        select(RolloutDevice).where(
            RolloutDevice.rollout_id == rollout.id, RolloutDevice.state.in_(("offered", "rolling_back"))
        )
    ).all()
    for rd in rds:
        device = session.get(Device, rd.device_id)
        if device is not None:
            unassign(rd, device, rollout.release_id)
        rd.state = "pending" if rd.state == "offered" else rd.state
        rd.reason = "aborted"
        withdrawn += 1
    rollout.state = "aborted"
    rollout.finished = rollout.updated = utcnow()
    release_memberships(session, rollout.id)
    add_event(session, rollout, "operator", f"aborted by {actor}; {withdrawn} offers withdrawn", clock.now())
    audit.record(session, actor, "rollout.abort", f"rollout:{rollout.id}", withdrawn=withdrawn)
    return rollout


def promote(session: Session, rollout_id: int, *, actor: str, clock: VirtualClock) -> Rollout:
    """Opens the next stage now, without waiting for the soak and the success threshold."""
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_state(rollout, ("active", "paused"), "promote")
    stages = list(
        session.scalars(
            select(RolloutStage).where(RolloutStage.rollout_id == rollout.id).order_by(RolloutStage.index)
        )
    )
    index = rollout.current_stage
    if index + 1 >= len(stages):
        raise Conflict(f"rollout {rollout.id} is already at its last stage")
    now_vt = clock.now()
    stages[index].state = "passed"
    stages[index].passed_vt = now_vt
    stages[index + 1].state = "open"
    stages[index + 1].opened_vt = now_vt
    rollout.current_stage = index + 1
    rollout.updated = utcnow()
    add_event(
        session,
        rollout,
        "gate",
        f"stage {index + 2} ({stages[index + 1].percent} %) opened early: promoted by {actor}",
        now_vt,
        stage=index,
        promoted=True,
    )
    audit.record(session, actor, "rollout.promote", f"rollout:{rollout.id}", stage=index + 2)
    return rollout


def exclude(
    session: Session, rollout_id: int, device_id: str, *, actor: str, clock: VirtualClock
) -> RolloutDevice:
    rollout = get_rollout(session, rollout_id, for_update=True)
    _require_state(rollout, OPEN_ROLLOUT_STATES, "exclude a device from")
    rd = session.get(RolloutDevice, (rollout.id, device_id))
    if rd is None:
        raise NotFound(f"device {device_id!r} is not in rollout {rollout.id}")
    if rd.state == "excluded":
        return rd
    device = session.get(Device, device_id)
    if device is not None and rd.state in ("offered", "pending"):
        unassign(rd, device, rollout.release_id)
    was = rd.state
    rd.state = "excluded"
    rd.reason = f"excluded by {actor}"[:64]
    release_memberships(session, rollout.id, [device_id])
    add_event(
        session, rollout, "operator", f"device {device_id} excluded by {actor} (was {was})", clock.now()
    )
    audit.record(session, actor, "rollout.exclude", f"rollout:{rollout.id}", device_id=device_id, was=was)
    return rd


# --------------------------------------------------------------------------- views


def list_rollouts(session: Session, state: str | None = None, *, limit: int | None = None) -> list[Rollout]:
    """Rollouts, newest first (optionally only one state, at most ``limit``)."""
    statement = select(Rollout).order_by(Rollout.id.desc()).limit(limit)
    if state:
        statement = statement.where(Rollout.state == state)
    return list(session.scalars(statement))


def rollout_summary(session: Session, rollout: Rollout) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(RolloutDevice.state, func.count())
            .where(RolloutDevice.rollout_id == rollout.id)
            .group_by(RolloutDevice.state)
        ).all()
    )
    release = session.get(Release, rollout.release_id)
    previous = session.get(Release, rollout.previous_release_id) if rollout.previous_release_id else None
    return {
        "id": rollout.id,
        "name": rollout.name,
        "release": release.version if release else None,
        "release_id": rollout.release_id,
        "previous_release": previous.version if previous else None,
        "rollback_release_id": rollout.rollback_release_id,
        "state": rollout.state,
        "current_stage": rollout.current_stage + 1,
        "halt_reason": rollout.halt_reason,
        "hold_reason": rollout.hold_reason,
        "devices": sum(counts.values()),
        "counts": counts,
        "created": _iso(rollout.created),
        "finished": _iso(rollout.finished),
        "created_by": rollout.created_by,
    }


def rollout_detail(
    session: Session, rollout: Rollout, *, events_after: int = 0, event_limit: int = 500
) -> dict[str, Any]:
    data = rollout_summary(session, rollout)
    data["selection"] = rollout.selection
    data["policy"] = rollout.policy
    per_stage: dict[int, Tally] = {}
    for stage, state, count in session.execute(
        select(RolloutDevice.stage, RolloutDevice.state, func.count())
        .where(RolloutDevice.rollout_id == rollout.id)
        .group_by(RolloutDevice.stage, RolloutDevice.state)
    ):
        per_stage.setdefault(stage, Tally())[state] = count
    stages = session.scalars(
        select(RolloutStage).where(RolloutStage.rollout_id == rollout.id).order_by(RolloutStage.index)
    )
    data["stages"] = [
        {
            "stage": s.index + 1,
            "percent": s.percent,
            "soak_s": s.soak_s,
            "state": s.state,
            "members": s.member_count,
            "counts": dict(per_stage.get(s.index, {})),
            "opened_vt": _iso(s.opened_vt),
            "soak_started_vt": _iso(s.soak_started_vt),
            "passed_vt": _iso(s.passed_vt),
        }
        for s in stages
    ]
    events = session.scalars(
        select(RolloutEvent)
        .where(RolloutEvent.rollout_id == rollout.id, RolloutEvent.id > events_after)
        .order_by(RolloutEvent.id)
        .limit(event_limit)
    )
    data["events"] = [
        {
            "id": e.id,
            "at": _iso(e.at_real),
            "virtual_time": _iso(e.at_vt),
            "kind": e.kind,
            "message": e.message,
            "details": e.details,
        }
        for e in events
    ]
    return data


def rollout_devices(
    session: Session, rollout_id: int, *, state: str | None = None, limit: int = 10_000
) -> list[dict[str, Any]]:
    statement = (
        select(RolloutDevice)
        .where(RolloutDevice.rollout_id == rollout_id)
        .order_by(RolloutDevice.stage, RolloutDevice.bucket)
        .limit(limit)
    )
    if state:
        statement = statement.where(RolloutDevice.state == state)
    return [
        {
            "device_id": rd.device_id,
            "stage": rd.stage + 1,
            "state": rd.state,
            "attempts": rd.attempts,
            "reason": rd.reason,
            "from_version": rd.from_version,
            "first_offered_vt": _iso(rd.first_offered_vt),
            "offered_vt": _iso(rd.offered_vt),
            "decided_vt": _iso(rd.decided_vt),
            "taken_real": _iso(rd.taken_real),
        }
        for rd in session.scalars(statement)
    ]
