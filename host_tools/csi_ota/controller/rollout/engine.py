"""The rollout engine: one tick = one transaction that judges devices, applies gates and makes offers.

The engine keeps nothing in memory between ticks. Each tick takes (or renews)
the database lease; without it the tick does nothing, so with several
controller processes on one database exactly one engine decides. A tick:

1. judges every in-flight device (offered the release, or the rollback) from
   status reports, heartbeats and the version check (csi_ota.controller.rollout.judge),
   its health clock running from when it took the offer and never through a span in
   which a controller was stalled (intake.py); verdicts that rest on silence apply only
   if devices outside the update are not silent at a comparable rate (silence_is_systemic)
   — otherwise the engine pauses the rollout (a hold) and resumes it by itself when they
   are heard again; not-reached devices that were never heard since the offer are offered
   again once heard;
2. halts the rollout when the failure threshold is crossed (alert, and the
   signed rollback when the policy says so);
3. moves the stage gate: a stage whose devices are all decided (or not reached)
   soaks, and after the soak opens the next stage if the success threshold holds
   on at least ``success_min_count`` decided devices; an empty stage is skipped;
4. offers the release to pending devices of open stages, at most
   ``batch_size`` in flight, only inside the update window.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter as Tally
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from csi_ota.controller import registry
from csi_ota.controller.db import session_scope
from csi_ota.controller.models import Device, Release, StatusReport, utcnow
from csi_ota.controller.releases import first_forward_release
from csi_ota.controller.rollout import alerts, lease
from csi_ota.controller.rollout.clock import VirtualClock
from csi_ota.controller.rollout.intake import StallLedger, prune_stalls, record_stall
from csi_ota.controller.rollout.judge import (
    REVISABLE_FAILED_REASONS,
    UNHEALTHY_HEALTH_VALUES,
    DeviceIntervals,
    Elapsed,
    Verdict,
    is_silent,
    judge_late_return,
    judge_rollback,
    judge_succeeded,
    judge_update,
    version_before_update,
)
from csi_ota.controller.rollout.models import (
    DEVICE_STATES,
    IN_FLIGHT_DEVICE_STATES,
    OPEN_ROLLOUT_STATES,
    TERMINAL_ROLLOUT_STATES,
    Rollout,
    RolloutDevice,
    RolloutEvent,
    RolloutMembership,
    RolloutStage,
)
from csi_ota.controller.rollout.policy import RolloutPolicy
from csi_ota.controller.rollout.rollback_policy import (
    RollbackRefused,
    authorised_rollback_release,
    replaced_devices_clause,
)

log = logging.getLogger("csi_ota.rollout")

DEFAULT_TICK_INTERVAL_S = 1.0
DEFAULT_LEASE_TTL_S = 10.0
MAX_OFFER_ROUNDS = 10
OFFER_LOOKAHEAD = 50
# Devices outside the update that the engine looks at before blaming a device's silence on it.
CONTROL_SAMPLE = 2000
CONTROL_MIN_DEVICES = 3
CONTROL_LOOKBACK_SILENCES = 10  # a device silent for longer than this many silence bounds is just gone
# Silence inside the update (devices that took the release) is compared with silence outside it
# (the control group), both judged the same way: nothing heard for SILENT_AFTER_HEARTBEATS of
# the device's heartbeat intervals, controller stalls left out.
CONTROL_MIN_SILENT = 2  # fewer silent devices outside the update is background, not an outage
OUTSIDE_SILENT_MIN_SHARE = 0.10  # so is a smaller share of them: silence verdicts apply
SILENCE_RATE_MARGIN = 0.15  # inside rate <= outside rate + this: the same silence, not the release's
HOLD_SILENT_SHARE = 0.5  # hold whatever the inside rate when at least this share outside is silent
RESUME_SILENT_SHARE = 0.05  # a hold ends when fewer than this share (or one device) outside are silent
PRUNE_EVERY_TICKS = 600
# A finished rollout's verdicts are still revised when its devices come back late, for this long (virtual).
REVISE_AFTER_FINISH_S = 7 * 24 * 3600


def add_event(
    session: Session, rollout: Rollout, kind: str, message: str, now_vt: dt.datetime, **details
) -> RolloutEvent:
    event = RolloutEvent(
        rollout_id=rollout.id, at_real=utcnow(), at_vt=now_vt, kind=kind, message=message, details=details
    )
    session.add(event)
    log.info("rollout %d %s: %s", rollout.id, kind, message)
    return event


def release_memberships(session: Session, rollout_id: int, device_ids: list[str] | None = None) -> None:
    statement = delete(RolloutMembership).where(RolloutMembership.rollout_id == rollout_id)
    if device_ids is not None:
        statement = statement.where(RolloutMembership.device_id.in_(device_ids))
    session.execute(statement.execution_options(synchronize_session=False))


def unassign(rd: RolloutDevice, device: Device, release_id: int) -> None:
    """Stops offering ``release_id`` to the device; restores what it was assigned before the rollout."""
    if device.assigned_release_id == release_id:
        device.assigned_release_id = rd.prior_assigned_release_id


def start_offer(rd: RolloutDevice, device: Device, now_real: dt.datetime) -> None:
    """The (re)offer starts now: the device's health clock waits until it takes it."""
    rd.offered_real = now_real
    rd.taken_real = None
    if device.offer_taken_at is not None and device.offer_taken_at <= now_real:
        device.offer_taken_at = None


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _some(items: list[str], shown: int = 5, sep: str = ", ") -> str:
    """The first few of a list, for an event message (all of them go in its details)."""
    head = sep.join(items[:shown])
    return head if len(items) <= shown else f"{head}{sep}and {len(items) - shown} more"


def _version_of(release_id_column):
    return select(Release.version).where(Release.id == release_id_column).scalar_subquery()


def revisable_clause(release: Release, previous: Release | None):
    """Rollout devices whose verdict may be revised: judge_late_return's candidates, narrowed in SQL."""
    failed = and_(
        RolloutDevice.state == "failed",
        RolloutDevice.reason.in_(REVISABLE_FAILED_REASONS),
        Device.version == release.version,
    )
    candidates = (
        or_(failed, and_(RolloutDevice.state == "rollback_failed", Device.version == previous.version))
        if previous is not None
        else failed
    )
    return and_(candidates, Device.last_heartbeat > RolloutDevice.decided_real)


@dataclass
class RolloutStep:
    """One tick's work on one rollout (all in the caller's transaction).

    Work is proportional to the devices in flight, not to the fleet: counts
    come from GROUP BY queries and only in-flight devices (at most the batch
    size), succeeded devices that look unhealthy, and the next candidates are
    loaded.
    """

    session: Session
    rollout: Rollout
    clock: VirtualClock
    now_vt: dt.datetime
    now_real: dt.datetime
    signing_key: Path | None
    ledger: StallLedger | None = None
    policy: RolloutPolicy = field(init=False)
    release: Release = field(init=False)
    stages: list[RolloutStage] = field(init=False)
    tally: Tally = field(init=False)  # (stage, state) -> devices

    def __post_init__(self) -> None:
        s, rollout = self.session, self.rollout
        self.policy = RolloutPolicy.from_dict(rollout.policy, environ={})
        self.release = s.get(Release, rollout.release_id)
        self.stages = list(
            s.scalars(
                select(RolloutStage).where(RolloutStage.rollout_id == rollout.id).order_by(RolloutStage.index)
            )
        )
        if self.ledger is None:
            self.ledger = StallLedger.load(s, self.clock, self.now_real)
        self.elapsed = Elapsed(self.ledger, self.now_real)
        self._control: tuple[int, int] | None = None
        self._inside: tuple[int, int] = (0, 0)
        self.tally = Tally()
        for stage, state, count in s.execute(
            select(RolloutDevice.stage, RolloutDevice.state, func.count())
            .where(RolloutDevice.rollout_id == rollout.id)
            .group_by(RolloutDevice.stage, RolloutDevice.state)
        ):
            self.tally[(stage, state)] = count

    # ------------------------------------------------------------------ helpers

    def event(self, kind: str, message: str, **details) -> None:
        add_event(self.session, self.rollout, kind, message, self.now_vt, **details)

    def counts(self, max_stage: int | None = None) -> Tally:
        result = Tally()
        for (stage, state), count in self.tally.items():
            if max_stage is None or stage <= max_stage:
                result[state] += count
        return +result

    def move(self, rd: RolloutDevice, state: str) -> None:
        self.tally[(rd.stage, rd.state)] -= 1
        self.tally[(rd.stage, state)] += 1
        rd.state = state

    def decide(self, rd: RolloutDevice, state: str, reason: str) -> None:
        self.move(rd, state)
        rd.reason = reason[:64]
        rd.decided_vt = self.now_vt
        rd.decided_real = self.now_real

    def intervals(self, device: Device) -> DeviceIntervals:
        """The device's own check and heartbeat intervals: what it reports, what was pushed, the policy's."""
        check_s = device.check_interval_s
        if check_s is None:
            pushed = registry.merged_config(self.session, device).get("check_interval_sec")
            check_s = int(pushed) if pushed else self.policy.check_interval_s
        return DeviceIntervals(
            check_s=check_s, heartbeat_s=device.heartbeat_interval_s or self.policy.heartbeat_interval_s
        )

    def control_group(self) -> tuple[int, int]:
        """(silent, considered) among devices outside the update: not offered by this rollout."""
        if self._control is not None:
            return self._control
        offered = select(RolloutDevice.device_id).where(
            RolloutDevice.rollout_id == self.rollout.id, RolloutDevice.first_offered_vt.is_not(None)
        )
        rows = self.session.scalars(
            select(Device)
            .where(
                Device.decommissioned.is_(False),
                Device.token_hash.is_not(None),
                or_(Device.last_seen.is_not(None), Device.last_heartbeat.is_not(None)),
                Device.id.not_in(offered),
            )
            .order_by(Device.id)
            .limit(CONTROL_SAMPLE)
        )
        silent = considered = 0
        for device in rows:
            intervals = self.intervals(device)
            contact = max(t for t in (device.last_seen, device.last_heartbeat) if t is not None)
            if self.elapsed.since(contact) > CONTROL_LOOKBACK_SILENCES * intervals.silent_s:
                continue  # long gone: says nothing about now
            considered += 1
            silent += is_silent(device, intervals, self.elapsed)
        self._control = (silent, considered)
        return self._control

    def inside_silence(self, verdicts: list[tuple[RolloutDevice, Device, Verdict]]) -> tuple[int, int]:
        """(silent, considered) among devices inside the update: those that took the release.

        In flight with the offer taken, or succeeded; plus this tick's silence verdicts. Silent by
        the control group's measure, or because a silence verdict was reached on it.
        """
        took = or_(
            and_(RolloutDevice.state.in_(IN_FLIGHT_DEVICE_STATES), RolloutDevice.taken_real.is_not(None)),
            and_(RolloutDevice.state == "succeeded", RolloutDevice.reason != "already_current"),
        )
        silent = {rd.device_id for rd, _device, _verdict in verdicts}
        considered = set(silent)
        for rd, device in self._rds(took, order=(RolloutDevice.device_id,), limit=CONTROL_SAMPLE):
            considered.add(rd.device_id)
            if is_silent(device, self.intervals(device), self.elapsed):
                silent.add(rd.device_id)
        return len(silent), len(considered)

    def silence_is_systemic(self, verdicts: list[tuple[RolloutDevice, Device, Verdict]]) -> bool:
        """Devices outside the update are silent at a comparable rate: controller, network or fleet trouble."""
        silent, considered = self.control_group()
        if considered < CONTROL_MIN_DEVICES or silent < CONTROL_MIN_SILENT:
            return False
        outside = silent / considered
        if outside < OUTSIDE_SILENT_MIN_SHARE:
            return False
        self._inside = self.inside_silence(verdicts)
        inside_silent, inside_considered = self._inside
        return (
            outside >= HOLD_SILENT_SHARE
            or inside_silent <= (outside + SILENCE_RATE_MARGIN) * inside_considered
        )

    def apply_silence(self, verdicts: list[tuple[RolloutDevice, Device, Verdict]], apply) -> None:
        """Silence verdicts count only when devices outside the update are not silent at a comparable rate."""
        if not verdicts:
            return
        if self.silence_is_systemic(verdicts):
            silent, considered = self.control_group()
            inside_silent, inside_considered = self._inside
            if self.rollout.state == "active":
                self.hold(
                    f"{silent} of {considered} devices outside the update went silent too "
                    f"({silent * 100 // considered} %; inside it {inside_silent} of {inside_considered}, "
                    f"{len(verdicts)} of them judged silent): controller, network or fleet, not the release"
                )
            return
        for rd, device, verdict in verdicts:
            apply(rd, device, verdict)

    def hold(self, reason: str) -> None:
        self.rollout.state = "paused"
        self.rollout.hold_reason = reason
        self.rollout.updated = self.now_real
        self.event("hold", f"paused by the engine: {reason}; resumes by itself when they are heard again")

    def maybe_end_hold(self) -> None:
        rollout = self.rollout
        if rollout.state != "paused" or not rollout.hold_reason:
            return
        silent, considered = self.control_group()
        if (
            considered >= CONTROL_MIN_DEVICES
            and silent >= CONTROL_MIN_SILENT
            and silent >= RESUME_SILENT_SHARE * considered
        ):
            return
        started = self.session.scalar(
            select(RolloutEvent.at_real)
            .where(RolloutEvent.rollout_id == rollout.id, RolloutEvent.kind == "hold")
            .order_by(RolloutEvent.id.desc())
            .limit(1)
        )
        if started is not None:  # nobody's silence counts across the hold
            record_stall(self.session, f"rollout {rollout.id} hold", started, self.now_real, 0.0)
            self.ledger = StallLedger.build(
                self.clock, [*self.ledger.spans, (started.timestamp(), self.now_real.timestamp())]
            )
            self.elapsed = Elapsed(self.ledger, self.now_real)
        rollout.state = "active"
        rollout.hold_reason = ""
        rollout.updated = self.now_real
        self.event(
            "resumed",
            f"resumed by the engine: devices outside the update are heard again ({silent} of {considered} silent)",
        )

    def _with_devices(self, statement) -> list[tuple[RolloutDevice, Device]]:
        rows = self.session.execute(
            statement.join(Device, Device.id == RolloutDevice.device_id).add_columns(Device)
        )
        return [(rd, device) for rd, device in rows]

    def _rds(self, *conditions, order=None, limit: int | None = None) -> list[tuple[RolloutDevice, Device]]:
        statement = select(RolloutDevice).where(RolloutDevice.rollout_id == self.rollout.id, *conditions)
        if order is not None:
            statement = statement.order_by(*order)
        if limit is not None:
            statement = statement.limit(limit)
        return self._with_devices(statement)

    # ------------------------------------------------------------------ the tick

    def run(self) -> None:
        self.revise_late_returners()
        self.maybe_end_hold()
        state = self.rollout.state
        if state in ("active", "paused"):
            self.offer_again_when_heard()
            self.judge_offered()
            self.watch_succeeded()
            if self.failure_threshold_crossed():
                self.publish_metrics()
                return
            if state == "active":
                self.move_gate()
                if self.rollout.state == "active":
                    self.make_offers()
        elif state == "rolling_back":
            self.sweep_rollback()
        self.publish_metrics()

    def _reports_for(self, pairs: list[tuple[RolloutDevice, Device]]) -> dict[str, list[StatusReport]]:
        if not pairs:
            return {}
        since = min(rd.offered_real for rd, _ in pairs if rd.offered_real is not None)
        by_device: dict[str, list[StatusReport]] = defaultdict(list)
        ids = [rd.device_id for rd, _ in pairs]
        for start in range(0, len(ids), 500):
            statement = (
                select(StatusReport)
                .where(StatusReport.device_id.in_(ids[start : start + 500]), StatusReport.received_at > since)
                .order_by(StatusReport.id)
            )
            for report in self.session.scalars(statement):
                by_device[report.device_id].append(report)
        return by_device

    def judge_offered(self) -> None:
        offered = self._rds(RolloutDevice.state == "offered")
        reports = self._reports_for(offered)
        silent: list[tuple[RolloutDevice, Device, Verdict]] = []
        for rd, device in offered:
            if rd.from_version is None:  # offered before its first check-in: learn it from the reports
                rd.from_version = version_before_update(
                    reports.get(rd.device_id, ()), device, self.release.version
                )
            verdict = judge_update(
                rd,
                device,
                reports.get(rd.device_id, ()),
                target_version=self.release.version,
                target_sha256=self.release.sha256,
                release_id=self.release.id,
                health_timeout_s=self.policy.health_timeout_s,
                intervals=self.intervals(device),
                elapsed=self.elapsed,
                now_real=self.now_real,
            )
            if verdict is None:
                continue
            if verdict.silent:
                silent.append((rd, device, verdict))
                continue
            self.apply_update_verdict(rd, device, verdict)
        self.apply_silence(silent, self.apply_update_verdict)

    def revise_late_returners(self) -> None:
        """Devices counted as failed for silence, or as not back from the rollback, that came back fine.

        Their verdicts and the rollout's counts are corrected, in every rollout state (a finished
        rollout for REVISE_AFTER_FINISH_S); a halt, a rollback or a completion is not undone.
        """
        previous = (
            self.session.get(Release, self.rollout.previous_release_id)
            if self.rollout.previous_release_id
            else None
        )
        rows = self._rds(revisable_clause(self.release, previous), order=(RolloutDevice.device_id,))
        revised: list[tuple[str, str]] = []
        for rd, device in rows:
            verdict = judge_late_return(
                rd,
                device,
                target_version=self.release.version,
                previous_version=previous.version if previous is not None else None,
            )
            if verdict is None:
                continue
            was = f"{rd.state} ({rd.reason})"
            if rd.state == "failed":
                self.decide(rd, "succeeded", verdict.reason)
                how = f"runs {self.release.version}, healthy"
                if self.rollout.state in ("active", "paused"):  # like every succeeded device
                    device.assigned_release_id = self.release.id
            else:
                self.decide(rd, "rolled_back", verdict.reason)
                how = f"back on {previous.version}, healthy ({verdict.reason.removeprefix('late_')})"
            revised.append((rd.device_id, f"{rd.device_id} came back: {how}, after being counted as {was}"))
        if not revised:
            return
        entries = [entry for _device_id, entry in revised]
        head = (
            f"device {entries[0]}"
            if len(entries) == 1
            else f"{len(entries)} devices: {_some(entries, 3, '; ')}"
        )
        self.event(
            "revised",
            f"{head}; counts now: {self._count_text()}{self._halt_note()}",
            devices=[device_id for device_id, _entry in revised],
            counts=dict(self.counts()),
        )

    def _count_text(self) -> str:
        counts = self.counts()
        shown = ("succeeded", "failed", "not_reached", "rolled_back", "rollback_failed", "rolling_back")
        return ", ".join(f"{counts[state]} {state}" for state in shown if counts[state])

    def _halt_note(self) -> str:
        """What a revision means for a halt: it stands; whether the failure threshold still holds."""
        rollout = self.rollout
        if rollout.state == "halted" and rollout.halt_reason.startswith("failure threshold crossed"):
            counts = self.counts()
            failed, decided = counts["failed"], counts["failed"] + counts["succeeded"]
            holds = self.threshold_holds(failed, decided)
            return (
                f"; the failure threshold {'still holds' if holds else 'no longer holds'} "
                f"({failed} of {decided} decided devices failed): the halt stands until an operator resumes"
            )
        if rollout.state in ("halted", "rolling_back", "rolled_back"):
            return "; the halt and the rollback stand"
        return ""

    def offer_again_when_heard(self) -> None:
        """Devices not reached because nothing was heard from them since the offer are offered again once heard."""
        heard_again = self._rds(
            RolloutDevice.state == "not_reached",
            RolloutDevice.reason == "not_heard",
            RolloutDevice.stage <= self.rollout.current_stage,
            or_(
                Device.last_seen > RolloutDevice.decided_real,
                Device.last_heartbeat > RolloutDevice.decided_real,
            ),
            order=(RolloutDevice.stage, RolloutDevice.bucket),
        )
        for rd, _device in heard_again:
            self.move(rd, "pending")
            rd.reason = "heard_again"
        if heard_again:
            ids = [rd.device_id for rd, _device in heard_again]
            self.event(
                "revised",
                f"{len(ids)} not-reached device(s) heard from again, offered again: {_some(ids)}",
                devices=ids,
            )

    def apply_update_verdict(self, rd: RolloutDevice, device: Device, verdict: Verdict) -> None:
        if verdict.outcome == "succeeded":
            self.decide(rd, "succeeded", verdict.reason)
            return
        if verdict.outcome == "not_reached":  # alive, but never took the offer: neither success nor failure
            self.decide(rd, "not_reached", verdict.reason)
            unassign(rd, device, self.release.id)
            return
        rd.attempts += 1
        rd.reason = verdict.reason[:64]
        if rd.attempts > self.policy.max_retries:
            self.decide(rd, "failed", verdict.reason)
            unassign(rd, device, self.release.id)
        else:  # retry: the device keeps the assignment and tries again at its next check
            rd.offered_vt = self.now_vt
            start_offer(rd, device, verdict.at_real or self.now_real)
            rd.downloaded_real = None
            rd.installed_real = None

    def watch_succeeded(self) -> None:
        """Succeeded devices that moved off the release, turned unhealthy or went silent fail."""
        # A superset of the silent ones (stalls only shorten silence); judge_succeeded decides.
        cutoff_real = self.now_real - dt.timedelta(
            seconds=self.clock.real_seconds(self.policy.health_timeout_s)
        )
        suspicious = or_(
            Device.version != self.release.version,
            Device.health.in_(UNHEALTHY_HEALTH_VALUES),
            and_(
                or_(Device.last_seen.is_(None), Device.last_seen < cutoff_real),
                or_(Device.last_heartbeat.is_(None), Device.last_heartbeat < cutoff_real),
            ),
        )
        candidates = self._rds(
            RolloutDevice.state == "succeeded", RolloutDevice.reason != "already_current", suspicious
        )
        silent: list[tuple[RolloutDevice, Device, Verdict]] = []
        for rd, device in candidates:
            verdict = judge_succeeded(
                rd,
                device,
                target_version=self.release.version,
                health_timeout_s=self.policy.health_timeout_s,
                elapsed=self.elapsed,
            )
            if verdict is None:
                continue
            if verdict.silent:
                silent.append((rd, device, verdict))
            else:
                self.decide(rd, "failed", verdict.reason)
        self.apply_silence(silent, lambda rd, _device, verdict: self.decide(rd, "failed", verdict.reason))

    def threshold_holds(self, failed: int, decided: int) -> bool:
        p = self.policy
        return failed >= p.failure_min_count and failed * 100 >= p.failure_percent * decided

    def failure_threshold_crossed(self) -> bool:
        counts = self.counts()
        failed, succeeded = counts["failed"], counts["succeeded"]
        decided = failed + succeeded
        p = self.policy
        if self.threshold_holds(failed, decided):
            reasons = Tally(
                reason.split(":")[0]
                for reason in self.session.scalars(
                    select(RolloutDevice.reason).where(
                        RolloutDevice.rollout_id == self.rollout.id, RolloutDevice.state == "failed"
                    )
                )
            )
            self.halt(
                f"failure threshold crossed in stage {self.rollout.current_stage + 1}: "
                f"{failed} of {decided} decided devices failed (limit {p.failure_percent:g} % and "
                f"at least {p.failure_min_count})",
                failed=failed,
                succeeded=succeeded,
                reasons=dict(reasons),
            )
            return True
        return False

    def move_gate(self) -> None:
        for _ in range(len(self.stages)):  # empty stages pass at once, without a soak
            index = self.rollout.current_stage
            if not self._move_gate(index) or self.rollout.current_stage == index:
                return

    def _stage_members(self, index: int) -> int:
        return sum(n for (stage, state), n in self.tally.items() if stage == index and state != "excluded")

    def _move_gate(self, index: int) -> bool:
        """One gate step for the current stage; True when the stage passed."""
        stage = self.stages[index]
        counts = self.counts(index)
        members = sum(n for state, n in counts.items() if state != "excluded")
        succeeded, failed, unreached = counts["succeeded"], counts["failed"], counts["not_reached"]
        decided = succeeded + failed
        label = f"stage {index + 1} ({stage.percent} %)"
        if stage.state == "open" and self._stage_members(index) == 0:
            self.pass_stage(index, f"{label} has no devices; skipped without a soak", skipped=True)
            return True
        if stage.state == "open" and decided + unreached == members:
            stage.state = "soaking"
            stage.soak_started_vt = self.now_vt
            self.event(
                "soak",
                f"{label}: all {members} devices decided ({succeeded} succeeded, {failed} failed"
                + (f", {unreached} not reached" if unreached else "")
                + f"); soaking {format_duration(stage.soak_s)}",
                stage=index,
                succeeded=succeeded,
                failed=failed,
                not_reached=unreached,
            )
            return False
        if stage.state != "soaking" or stage.soak_started_vt is None:
            return False
        if (self.now_vt - stage.soak_started_vt).total_seconds() < stage.soak_s:
            return False
        if counts["offered"] or counts["pending"]:  # not-reached devices heard again: wait for them
            return False
        p = self.policy
        needed = max(p.success_min_count, 1)
        if decided < needed or succeeded < needed or succeeded * 100 < p.success_percent * decided:
            self.halt(
                f"{label}: {succeeded} of {decided} decided devices succeeded after the soak"
                + (f" ({unreached} not reached)" if unreached else "")
                + f", below the success threshold ({p.success_percent:g} %, at least {needed})",
                succeeded=succeeded,
                failed=failed,
                not_reached=unreached,
            )
            return False
        self.pass_stage(
            index,
            f"gate passed: {label} {succeeded}/{decided} decided devices succeeded"
            + (f" ({unreached} not reached)" if unreached else "")
            + f" after {format_duration(stage.soak_s)} soak",
            succeeded=succeeded,
            failed=failed,
        )
        return True

    def pass_stage(self, index: int, message: str, **details) -> None:
        stage = self.stages[index]
        stage.state = "passed"
        stage.passed_vt = self.now_vt
        if index + 1 < len(self.stages):
            nxt = self.stages[index + 1]
            nxt.state = "open"
            nxt.opened_vt = self.now_vt
            self.rollout.current_stage = index + 1
            self.rollout.updated = self.now_real
            self.event(
                "gate", f"{message}; opening stage {index + 2} ({nxt.percent} %)", stage=index, **details
            )
            return
        if details.get("skipped"):
            self.event("gate", message, stage=index, **details)
        counts = self.counts()
        members = sum(n for state, n in counts.items() if state != "excluded")
        self.complete(counts["succeeded"], counts["failed"], members)

    def make_offers(self) -> None:
        if not self.policy.window.contains(self.now_vt):
            return
        slots = self.policy.batch_size - self.counts()["offered"]
        index = self.rollout.current_stage
        for _ in range(MAX_OFFER_ROUNDS):
            if slots <= 0:
                return
            candidates = self._rds(
                RolloutDevice.state == "pending",
                RolloutDevice.stage <= index,
                order=(RolloutDevice.stage, RolloutDevice.bucket),
                limit=slots + OFFER_LOOKAHEAD,
            )
            if not candidates:
                return
            for rd, device in candidates:
                if slots <= 0:
                    return
                if device.decommissioned or device.token_hash is None:
                    self.decide(
                        rd, "excluded", "decommissioned" if device.decommissioned else "token_revoked"
                    )
                    continue
                if (
                    device.version == self.release.version
                    and device.ota_state == "valid"
                    and rd.first_offered_vt is None
                ):
                    self.decide(rd, "succeeded", "already_current")
                    continue
                if rd.first_offered_vt is None:
                    rd.prior_assigned_release_id = device.assigned_release_id
                    rd.first_offered_vt = self.now_vt
                    rd.from_version = device.version
                device.assigned_release_id = self.release.id
                self.move(rd, "offered")
                rd.offered_vt = self.now_vt
                start_offer(rd, device, self.now_real)
                rd.downloaded_real = None
                rd.installed_real = None
                slots -= 1
            self.session.flush()

    # ------------------------------------------------------------------ terminal transitions

    def complete(self, succeeded: int, failed: int, members: int) -> None:
        self.rollout.state = "completed"
        self.rollout.finished = self.now_real
        self.rollout.updated = self.now_real
        release_memberships(self.session, self.rollout.id)
        self.event(
            "completed",
            f"rollout completed: {succeeded}/{members} devices run {self.release.version} ({failed} failed)",
            succeeded=succeeded,
            failed=failed,
        )

    def cancel_offers(self) -> int:
        cancelled = 0
        for rd, device in self._rds(RolloutDevice.state == "offered"):
            unassign(rd, device, self.release.id)
            self.move(rd, "pending")
            rd.offered_vt = rd.offered_real = None
            cancelled += 1
        return cancelled

    def halt(self, reason: str, **details) -> None:
        rollout = self.rollout
        rollout.state = "halted"
        rollout.halt_reason = reason
        rollout.updated = self.now_real
        self.stages[rollout.current_stage].state = "halted"
        cancelled = self.cancel_offers()
        self.event("halt", f"halted: {reason}", cancelled_offers=cancelled, **details)
        alerts.ROLLOUT_HALTS.labels(str(rollout.id)).inc()
        payload = {
            "event": "rollout_halted",
            "rollout_id": rollout.id,
            "rollout": rollout.name,
            "release": self.release.version,
            "stage": rollout.current_stage + 1,
            "reason": reason,
            "message": f"rollout {rollout.id} ({rollout.name}) halted: {reason}",
            "counts": dict(self.counts()),
            "rollback": self.policy.rollback,
            "at": self.now_real.isoformat().replace("+00:00", "Z"),
            "virtual_time": self.now_vt.isoformat().replace("+00:00", "Z"),
            **details,
        }
        alerts.queue_alert(self.session, rollout.id, self.policy.alert_webhook, payload)
        if self.policy.rollback == "auto":
            self.start_rollback()

    def start_rollback(self) -> None:
        rollout = self.rollout
        previous = (
            self.session.get(Release, rollout.previous_release_id) if rollout.previous_release_id else None
        )
        if previous is None:  # not known at creation (devices had not checked in): what they ran when offered
            previous = self._infer_previous_release()
            rollout.previous_release_id = previous.id if previous is not None else None
        if previous is None:
            self.event(
                "rollback_skipped",
                "no previous release is known for this rollout; devices stay where they are",
            )
            return
        if self.signing_key is None:
            self.event(
                "rollback_skipped", "ROLLBACK_SIGNING_KEY is not configured; cannot sign a rollback manifest"
            )
            return
        try:  # H3: the engine signs only what the rollout's creator may have signed (rollback_policy)
            rollback_release = authorised_rollback_release(
                self.session,
                rollout,
                self.release,
                previous,
                self.signing_key,
                notes=f"rollback of rollout {rollout.id} ({self.release.version} -> {previous.version})",
            )
        except RollbackRefused as exc:
            self.event("rollback_skipped", str(exc))
            return
        rollout.rollback_release_id = rollback_release.id
        rollout.state = "rolling_back"
        self.event(
            "rollback_started",
            f"rolling devices on {self.release.version} back to {previous.version} with signed rollback "
            f"release (sequence {rollback_release.sequence})",
            rollback_release_id=rollback_release.id,
            sequence=rollback_release.sequence,
        )
        self.sweep_rollback()

    def _infer_previous_release(self) -> Release | None:
        """What the rollout's devices ran when offered, else what its other devices run now."""
        members = (RolloutDevice.rollout_id == self.rollout.id,)
        for column, statement in (
            (RolloutDevice.from_version, select(RolloutDevice.from_version, func.count()).where(*members)),
            (
                Device.version,
                select(Device.version, func.count())
                .join(RolloutDevice, RolloutDevice.device_id == Device.id)
                .where(*members),
            ),
        ):
            counted = self.session.execute(
                statement.where(column.is_not(None), column != self.release.version)
                .group_by(column)
                .order_by(func.count().desc())
            ).all()
            release = first_forward_release(self.session, (version for version, _count in counted))
            if release is not None:
                return release
        return None

    def sweep_rollback(self) -> None:
        rollout = self.rollout
        rollback_release = self.session.get(Release, rollout.rollback_release_id)
        previous = self.session.get(Release, rollout.previous_release_id)

        def apply(rd: RolloutDevice, _device: Device, verdict: Verdict) -> None:
            outcome = "rolled_back" if verdict.outcome == "succeeded" else "rollback_failed"
            self.decide(rd, outcome, verdict.reason)

        silent: list[tuple[RolloutDevice, Device, Verdict]] = []
        for rd, device in self._rds(RolloutDevice.state == "rolling_back"):
            verdict = judge_rollback(
                rd,
                device,
                previous_version=previous.version,
                rollback_release_id=rollback_release.id,
                health_timeout_s=self.policy.health_timeout_s,
                intervals=self.intervals(device),
                elapsed=self.elapsed,
            )
            if verdict is not None and verdict.silent:
                silent.append((rd, device, verdict))  # judged unless devices outside are silent too
            elif verdict is not None:
                apply(rd, device, verdict)
        self.apply_silence(silent, apply)
        # Every device running the halted release (including late installers) gets the signed rollback,
        # and so does one that took the offer before the halt cancelled it: it may be installing the
        # halted release right now, and the rollback must not finish without it.
        for rd, device in self._rds(
            RolloutDevice.state.not_in(("rolling_back", "rolled_back", "rollback_failed", "excluded")),
            RolloutDevice.reason != "already_current",
            or_(
                Device.version == self.release.version,
                and_(RolloutDevice.state == "pending", RolloutDevice.taken_real.is_not(None)),
            ),
            replaced_devices_clause(rollout, previous),  # only back to what they ran before (H3)
        ):
            device.assigned_release_id = rollback_release.id
            self.move(rd, "rolling_back")
            rd.offered_vt = self.now_vt
            start_offer(rd, device, self.now_real)
        counts = self.counts()
        if counts["rolling_back"] == 0:
            rollout.state = "rolled_back"
            rollout.finished = self.now_real
            rollout.updated = self.now_real
            release_memberships(self.session, rollout.id)
            self.event(
                "rolled_back",
                f"rollback finished: {counts['rolled_back']} devices back on {previous.version}, "
                f"{counts['rollback_failed']} did not come back",
                rolled_back=counts["rolled_back"],
                rollback_failed=counts["rollback_failed"],
            )

    def publish_metrics(self) -> None:
        counts = self.counts()
        label = str(self.rollout.id)
        for state in DEVICE_STATES:
            alerts.ROLLOUT_DEVICES.labels(label, state).set(counts.get(state, 0))
        alerts.ROLLOUT_STAGE.labels(label).set(self.rollout.current_stage)


class RolloutEngine:
    """Runs ticks while holding the lease; safe to run in every controller process.

    ``active`` and ``generation`` describe the last tick that *committed*: a tick that
    took the lease but has not committed yet does not claim it (GET /api/rollouts/engine
    reads the committed row anyway, lease.view).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: VirtualClock | None = None,
        holder: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        tick_interval_s: float = DEFAULT_TICK_INTERVAL_S,
        signing_key: Path | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock or VirtualClock()
        self.holder = holder or lease.new_holder_id()
        self.lease_ttl_s = lease_ttl_s
        self.tick_interval_s = tick_interval_s
        self.signing_key = signing_key
        self.active = False
        self.generation = 0
        self.ticks = 0

    def tick(self, now_real: dt.datetime | None = None) -> bool:
        """One engine pass; returns True when this process held the lease and its work committed.

        ``now_real`` freezes the real clock for the whole pass (tests); otherwise the
        claim is extended from the wall-clock time at which the pass ends.
        """
        started_real = now_real or utcnow()
        now_vt = self.clock.to_virtual(started_real)
        generation = None
        try:
            with session_scope(self.sessions) as session:
                generation = lease.acquire(session, self.holder, self.lease_ttl_s, started_real)
                if generation is None:
                    held = False
                else:
                    held = True
                    rollouts = session.scalars(
                        select(Rollout)
                        .where(Rollout.state.in_(OPEN_ROLLOUT_STATES))
                        .order_by(Rollout.id)
                        .with_for_update()
                    ).all()
                    rollouts = [*rollouts, *self._finished_with_late_returners(session, started_real)]
                    ledger = StallLedger.load(session, self.clock, started_real) if rollouts else None
                    for rollout in rollouts:
                        RolloutStep(
                            session, rollout, self.clock, now_vt, started_real, self.signing_key, ledger
                        ).run()
                    if self.ticks % PRUNE_EVERY_TICKS == 0:
                        prune_stalls(session, started_real)
                    lease.confirm(session, self.holder, generation, self.lease_ttl_s, now_real or utcnow())
        except lease.LeaseLost:
            log.warning(
                "rollout engine %s lost the lease during a tick; its work was rolled back", self.holder
            )
            held = False
        except BaseException:  # rolled back: this process claims nothing until a tick commits
            self.active, self.generation = False, 0
            alerts.ENGINE_ACTIVE.set(0)
            raise
        if held and not self.active:
            log.info("rollout engine %s took the lease (generation %d)", self.holder, generation)
        elif self.active and not held:
            log.warning("rollout engine %s no longer holds the lease", self.holder)
        self.active = held
        self.generation = generation if held else 0
        alerts.ENGINE_ACTIVE.set(1 if held else 0)
        if held:
            self.ticks += 1
        return held

    def _finished_with_late_returners(self, session: Session, now_real: dt.datetime) -> list[Rollout]:
        """Recently finished rollouts with a failed / rollback_failed device heard from since its verdict."""
        since = now_real - dt.timedelta(seconds=self.clock.real_seconds(REVISE_AFTER_FINISH_S))
        heard_since_verdict = (
            select(RolloutDevice.device_id)
            .join(Device, Device.id == RolloutDevice.device_id)
            .where(
                RolloutDevice.rollout_id == Rollout.id,
                or_(
                    and_(
                        RolloutDevice.state == "failed",
                        RolloutDevice.reason.in_(REVISABLE_FAILED_REASONS),
                        Device.version == _version_of(Rollout.release_id),
                    ),
                    and_(
                        RolloutDevice.state == "rollback_failed",
                        Device.version == _version_of(Rollout.previous_release_id),
                    ),
                ),
                Device.last_heartbeat > RolloutDevice.decided_real,
            )
            .exists()
        )
        return list(
            session.scalars(
                select(Rollout)
                .where(
                    Rollout.state.in_(TERMINAL_ROLLOUT_STATES), Rollout.finished > since, heard_since_verdict
                )
                .order_by(Rollout.id)
                .with_for_update()
            )
        )

    def give_up_lease(self) -> None:
        with session_scope(self.sessions) as session:
            lease.release(session, self.holder, utcnow())
        self.active = False
        self.generation = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Ticks every ``tick_interval_s`` until ``stop`` is set; delivers alerts in between."""
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    held = await asyncio.to_thread(self.tick)
                    if held:
                        await asyncio.to_thread(alerts.deliver_pending, self.sessions, client)
                except Exception:  # a bad tick must not kill the engine; the next one retries
                    log.exception("rollout engine tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.tick_interval_s)
        if self.active:
            await asyncio.to_thread(self.give_up_lease)
