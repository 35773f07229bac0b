"""Judging one device from what the controller knows about it.

A device has *succeeded* only when it runs the new version, has marked it
valid and has sent a healthy heartbeat after the update. It has *failed* an
attempt when it reports a failure or a rollback, when it comes back on the old
version, or when it has not succeeded ``health_timeout`` after it *took* the
offer (its first version check that received the manifest, or its first
download or report about it) — not after the offer was made: a device that
checks hourly has not failed because it has not checked yet. A device that
has not taken the offer within ``REACH_CHECK_INTERVALS`` of its own check
interval is *not reached* (neither success nor failure) while it is alive, and
also when it has not been heard from at all since the offer (offline, never
checked in: there is no silence to measure); when it was heard after the offer
(or took an earlier attempt) and is silent against its own heartbeat interval,
that is a failure resting on silence. Silence verdicts carry ``silent=True``: the engine applies
them only when devices outside the update are not silent at a comparable
rate (engine.py), and all elapsed times leave out spans in which a controller was
stalled (intake.py). The engine turns failed attempts into retries until
UPDATE_RETRY_COUNT is used up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from csi_ota.controller.models import Device, StatusReport
from csi_ota.controller.rollout.intake import StallLedger
from csi_ota.controller.rollout.models import RolloutDevice

# Status report states that end an attempt (docs/device-protocol.md).
FAILURE_REPORT_STATES = ("rejected", "failed", "rolled_back")
# A device whose last report is one of these is in the middle of an update.
IN_PROGRESS_REPORT_STATES = ("downloading", "downloaded", "pending_verify")
UNHEALTHY_HEALTH_VALUES = ("degraded", "offline")
# A device has had this many of its own check intervals to take an offer before it is "not reached".
REACH_CHECK_INTERVALS = 2
# Silent = nothing heard for this many of its own heartbeat intervals (as registry.OFFLINE_AFTER_INTERVALS).
SILENT_AFTER_HEARTBEATS = 3
# Failures that rest on not hearing from the device in time: revised when it comes back fine.
REVISABLE_FAILED_REASONS = ("silent", "timeout", "silent_after_update")


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "succeeded" | "failed" | "not_reached"
    reason: str
    at_real: dt.datetime | None = None  # when a failure report arrived (retries count from there)
    silent: bool = False  # rests on the device's silence: applied only if the control group is heard


@dataclass(frozen=True)
class Elapsed:
    """Virtual seconds since a wall-clock instant, for one tick, with controller stalls left out."""

    ledger: StallLedger
    now_real: dt.datetime

    def since(self, real: dt.datetime) -> float:
        return self.ledger.virtual_since(real, self.now_real)


@dataclass(frozen=True)
class DeviceIntervals:
    """How often a device checks for updates and heart-beats (virtual seconds)."""

    check_s: float
    heartbeat_s: float

    @property
    def reach_s(self) -> float:
        return REACH_CHECK_INTERVALS * self.check_s

    @property
    def silent_s(self) -> float:
        return SILENT_AFTER_HEARTBEATS * self.heartbeat_s


def _last_contact(device: Device) -> dt.datetime | None:
    times = [t for t in (device.last_seen, device.last_heartbeat) if t is not None]
    return max(times) if times else None


def is_silent(device: Device, intervals: DeviceIntervals, elapsed: Elapsed) -> bool:
    contact = _last_contact(device)
    return contact is None or elapsed.since(contact) > intervals.silent_s


def version_before_update(reports: Iterable[StatusReport], device: Device, target_version: str) -> str | None:
    """What a device ran before this update, for one offered before its first check-in.

    Its reports name the running version (``downloading`` still runs the old
    one); without a report, the version it last checked in with.
    """
    for report in reports:
        if report.version and report.version != target_version:
            return report.version
    if device.version and device.version != target_version:
        return device.version
    return None


def taken_at(
    rd: RolloutDevice, device: Device, reports: Iterable[StatusReport], release_id: int, target_sha256: str
) -> dt.datetime | None:
    """When the device took the current offer: first manifest fetch or download, or first report on it."""
    assert rd.offered_real is not None
    times = []
    if (
        device.offer_release_id == release_id
        and device.offer_taken_at is not None
        and device.offer_taken_at > rd.offered_real
    ):
        times.append(device.offer_taken_at)
    for report in reports:
        if report.received_at > rd.offered_real and report.target_sha256 in (None, "", target_sha256):
            times.append(report.received_at)
            break
    return min(times) if times else None


def judge_update(
    rd: RolloutDevice,
    device: Device,
    reports: Iterable[StatusReport],
    *,
    target_version: str,
    target_sha256: str,
    release_id: int,
    health_timeout_s: float,
    intervals: DeviceIntervals,
    elapsed: Elapsed,
    now_real: dt.datetime,
) -> Verdict | None:
    """The verdict on an offered device, or None while its attempt is still running.

    Updates ``rd.taken_real`` / ``rd.downloaded_real`` / ``rd.installed_real`` as evidence arrives.
    """
    assert rd.offered_real is not None and rd.offered_vt is not None
    reports = list(reports)
    for report in reports:
        if report.received_at <= rd.offered_real:
            continue
        if report.target_sha256 and report.target_sha256 != target_sha256:
            continue  # about another image (an earlier release)
        if report.state in FAILURE_REPORT_STATES:
            return Verdict("failed", f"{report.state}:{report.reason}"[:64], report.received_at)
        if report.state == "downloaded":
            rd.downloaded_real = report.received_at
        elif report.state == "success" and rd.installed_real is None:
            rd.installed_real = report.received_at
    if rd.taken_real is None:
        rd.taken_real = taken_at(rd, device, reports, release_id, target_sha256)
    on_target = device.version == target_version and device.ota_state != "pending_verify"
    if on_target and rd.installed_real is None and device.ota_state == "valid":
        rd.installed_real = now_real  # reconciled from the version check: the report was lost
        rd.taken_real = rd.taken_real or now_real
    if (
        rd.installed_real is not None
        and on_target
        and device.last_heartbeat is not None
        and device.last_heartbeat > rd.installed_real
        and device.health == "healthy"
    ):
        return Verdict("succeeded", "ok")
    contact = _last_contact(device)
    if (
        rd.downloaded_real is not None
        and rd.installed_real is None
        and contact is not None
        and contact > rd.downloaded_real
        and device.version is not None
        and device.version != target_version
        and device.version == rd.from_version
        and device.ota_state != "pending_verify"
    ):
        return Verdict("failed", "old_version")
    if rd.taken_real is None:  # has not picked the offer up yet: its own check interval decides
        if elapsed.since(rd.offered_real) <= intervals.reach_s:
            return None
        heard_since_offer = contact is not None and contact > rd.offered_real
        if not heard_since_offer and rd.attempts == 0:
            # Never heard from since the first offer (offline, unplugged, never checked in): there is
            # no silence to judge against its heartbeat interval and the release never reached it.
            return Verdict("not_reached", "not_heard", silent=True)
        if is_silent(device, intervals, elapsed):
            return Verdict("failed", "silent", silent=True)
        if heard_since_offer:  # alive since the offer, never took it
            return Verdict("not_reached", "not_reached")
        return None  # not heard since the retry, not silent for long enough yet: wait
    if elapsed.since(rd.taken_real) > health_timeout_s:
        heard_since = contact is not None and contact > rd.taken_real
        return Verdict("failed", "timeout", silent=not heard_since)
    return None


def judge_succeeded(
    rd: RolloutDevice,
    device: Device,
    *,
    target_version: str,
    health_timeout_s: float,
    elapsed: Elapsed,
) -> Verdict | None:
    """Watches a succeeded device during the soak: regressions, silence, bad health fail it."""
    contact = _last_contact(device)
    moved_on = rd.decided_real is None or (contact is not None and contact > rd.decided_real)
    if device.version is not None and device.version != target_version and moved_on:
        return Verdict("failed", "regressed")
    if device.health in UNHEALTHY_HEALTH_VALUES:
        return Verdict("failed", f"unhealthy:{device.health}")
    if contact is not None and elapsed.since(contact) > health_timeout_s:
        return Verdict("failed", "silent_after_update", silent=True)
    return None


def judge_rollback(
    rd: RolloutDevice,
    device: Device,
    *,
    previous_version: str,
    rollback_release_id: int,
    health_timeout_s: float,
    intervals: DeviceIntervals,
    elapsed: Elapsed,
) -> Verdict | None:
    """A device offered the signed rollback: back on the previous version and healthy, or timed out.

    The reason tells how it came back: `rollback_installed` when it reported
    `success` after the offer (it installed the signed rollback), otherwise
    `returned_by_itself` — it was still verifying the bad release when the
    rollout halted and its own self-test (or bootloader) took it back.
    """
    assert rd.offered_real is not None and rd.offered_vt is not None
    if (
        device.version == previous_version
        and device.ota_state != "pending_verify"
        and device.last_ota_state not in IN_PROGRESS_REPORT_STATES  # not between reports
        and device.last_heartbeat is not None
        and device.last_heartbeat > rd.offered_real
        and device.health == "healthy"
    ):
        installed = (
            device.last_ota_state == "success"
            and device.last_ota_at is not None
            and device.last_ota_at > rd.offered_real
        )
        return Verdict("succeeded", "rollback_installed" if installed else "returned_by_itself")
    if (
        rd.taken_real is None
        and device.offer_release_id == rollback_release_id
        and device.offer_taken_at is not None
        and device.offer_taken_at > rd.offered_real
    ):
        rd.taken_real = device.offer_taken_at
    if rd.taken_real is None and device.last_ota_at is not None and device.last_ota_at > rd.offered_real:
        rd.taken_real = device.last_ota_at  # reported about the rollback (or came back by itself)
    if rd.taken_real is None:  # the health clock starts when it takes the rollback
        if elapsed.since(rd.offered_real) <= intervals.reach_s:
            return None
        silent = is_silent(device, intervals, elapsed)
        return Verdict("failed", "rollback_silent" if silent else "rollback_not_reached", silent=silent)
    if elapsed.since(rd.taken_real) > health_timeout_s:
        return Verdict("failed", "rollback_timeout")
    return None


def judge_late_return(
    rd: RolloutDevice, device: Device, *, target_version: str, previous_version: str | None
) -> Verdict | None:
    """A device counted as failed for silence or a timeout, or as ``rollback_failed``, that came back fine.

    It came back when a healthy heartbeat arrived after the decision while it runs, valid and
    not between reports, the release (a failed device: ``late_success``) or the previous
    release (a device that did not come back from the rollback: ``late_rollback_installed``
    when it reported ``success`` after the rollback offer, else ``late_returned_by_itself``).
    """
    if (
        rd.decided_real is None
        or device.last_heartbeat is None
        or device.last_heartbeat <= rd.decided_real
        or device.health != "healthy"
        or device.ota_state == "pending_verify"
        or device.last_ota_state in IN_PROGRESS_REPORT_STATES
    ):
        return None
    if rd.state == "failed" and rd.reason in REVISABLE_FAILED_REASONS and device.version == target_version:
        return Verdict("succeeded", "late_success")
    if rd.state == "rollback_failed" and previous_version is not None and device.version == previous_version:
        installed = (
            device.last_ota_state == "success"
            and device.last_ota_at is not None
            and rd.offered_real is not None
            and device.last_ota_at > rd.offered_real
        )
        return Verdict("succeeded", "late_rollback_installed" if installed else "late_returned_by_itself")
    return None
