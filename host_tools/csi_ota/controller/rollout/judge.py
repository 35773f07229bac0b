"""Judging one device from what the controller knows about it.

A device has *succeeded* only when it runs the new version, has marked it
valid and has sent a healthy heartbeat after the update. It has *failed* an
attempt when it reports a failure or a rollback, when it comes back on the old
version, or when it stays silent (no success) longer than the health timeout
after being offered the update — silence counts. The engine turns failed
attempts into retries until UPDATE_RETRY_COUNT is used up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from csi_ota.controller.models import Device, StatusReport
from csi_ota.controller.rollout.clock import VirtualClock
from csi_ota.controller.rollout.models import RolloutDevice

# Status report states that end an attempt (docs/device-protocol.md).
FAILURE_REPORT_STATES = ("rejected", "failed", "rolled_back")
# A device whose last report is one of these is in the middle of an update.
IN_PROGRESS_REPORT_STATES = ("downloading", "downloaded", "pending_verify")
UNHEALTHY_HEALTH_VALUES = ("degraded", "offline")


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "succeeded" | "failed"
    reason: str
    at_real: dt.datetime | None = None  # when a failure report arrived (retries count from there)


def _last_contact(device: Device) -> dt.datetime | None:
    times = [t for t in (device.last_seen, device.last_heartbeat) if t is not None]
    return max(times) if times else None


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


def judge_update(
    rd: RolloutDevice,
    device: Device,
    reports: Iterable[StatusReport],
    *,
    target_version: str,
    target_sha256: str,
    health_timeout_s: float,
    now_vt: dt.datetime,
    now_real: dt.datetime,
) -> Verdict | None:
    """The verdict on an offered device, or None while its attempt is still running.

    Updates ``rd.downloaded_real`` / ``rd.installed_real`` as evidence arrives.
    """
    assert rd.offered_real is not None and rd.offered_vt is not None
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
    on_target = device.version == target_version and device.ota_state != "pending_verify"
    if on_target and rd.installed_real is None and device.ota_state == "valid":
        rd.installed_real = now_real  # reconciled from the version check: the report was lost
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
    if (now_vt - rd.offered_vt).total_seconds() > health_timeout_s:
        return Verdict("failed", "timeout")
    return None


def judge_succeeded(
    rd: RolloutDevice,
    device: Device,
    *,
    target_version: str,
    health_timeout_s: float,
    clock: VirtualClock,
    now_vt: dt.datetime,
) -> Verdict | None:
    """Watches a succeeded device during the soak: regressions, silence, bad health fail it."""
    contact = _last_contact(device)
    moved_on = rd.decided_real is None or (contact is not None and contact > rd.decided_real)
    if device.version is not None and device.version != target_version and moved_on:
        return Verdict("failed", "regressed")
    if device.health in UNHEALTHY_HEALTH_VALUES:
        return Verdict("failed", f"unhealthy:{device.health}")
    if contact is not None and (now_vt - clock.to_virtual(contact)).total_seconds() > health_timeout_s:
        return Verdict("failed", "silent_after_update")
    return None


def judge_rollback(
    rd: RolloutDevice,
    device: Device,
    *,
    previous_version: str,
    health_timeout_s: float,
    now_vt: dt.datetime,
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
    if (now_vt - rd.offered_vt).total_seconds() > health_timeout_s:
        return Verdict("failed", "rollback_timeout")
    return None
