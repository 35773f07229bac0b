"""Scenarios 1–8 of issue 6: the same test bodies on a USB ESP32-S3 and on the virtual ESP32-S3.

Each test asserts the documented log lines (docs/log-lines.md, through DeviceSession.expect)
and the server's record of the outcome (the status reports the device posted, the requests it
made). Every test starts from a known state: v1 running from ota_0 (a fresh flash file on the
simulator, a re-flash on hardware).
"""

from __future__ import annotations

import random
import time

import pytest

from csi_ota_hw.actions import SECTOR_BYTES, active_otadata, otadata_crc
from csi_ota_hw.device import DeviceSession
from csi_ota_hw.releases import version_of, with_app_desc

BOTH_TARGETS = [pytest.mark.sim, pytest.mark.esp32s3]
pytestmark = BOTH_TARGETS

BAD_IMAGES = ["truncate", "truncate-header", "random", "wrong-chip", "chip-rev"]  # scenario 2
HW_DOWNLOAD_S = 20.0  # s8's download on hardware: long enough for two resets inside it
BAD_RELEASES = ["bad-checksum", "bad-sha256", "bad-signature", "unknown-key", "other-image", "too-large"]  # 3


def _major_bump(version: str, by: int) -> str:
    major = int(version.split(".")[0])
    return f"{major + by}.0.0"


def _start(session: DeviceSession) -> str:
    """Boot into v1 from ota_0; returns v1's version."""
    v1 = version_of(session.kit.image("v1"))
    status = session.wait_ready(v1)
    assert status["version"] == v1
    assert status["running_slot"] == 0
    return v1


def _assert_still_running(session: DeviceSession, version: str) -> None:
    status = session.status()
    assert status["version"] == version
    assert status["running_slot"] == 0
    assert status["img_state"] in ("valid", "undefined")


# -- 1 ---------------------------------------------------------------------------------------------
def test_s1_happy_path_v1_to_v2_then_three_updates_in_a_row(session: DeviceSession) -> None:
    v1 = _start(session)
    v2_image = session.kit.image("v2")
    v2 = version_of(v2_image)

    report = session.update(v2_image, from_version=v1)
    assert report["reason"] == "ok" and report["target_version"] == v2
    status = session.status()
    assert (status["version"], status["running_slot"], status["img_state"]) == (v2, 1, "valid")
    active = active_otadata(session.otadata())
    assert active is not None and active.state == "valid" and (active.seq - 1) % 2 == 1

    current = v2
    chain = [v2]
    for step in (1, 2, 3):
        image = with_app_desc(v2_image, version=_major_bump(v2, step))
        session.update(image, from_version=current)
        current = version_of(image)
        chain.append(current)
    final = session.status()
    assert final["version"] == chain[-1] and final["img_state"] == "valid"

    # The server's record: one success per version, in order, with increasing report seqs.
    successes = session.server.reports("success")
    assert [r["version"] for r in successes] == chain
    seqs = [r["seq"] for r in session.server.status_reports]
    assert seqs == sorted(seqs)
    # Every version check reported the version that was running at the time.
    checked = [r.query.get("version") for r in session.server.requests if r.path == "/api/ota/version"]
    for version in [v1, *chain[:-1]]:
        assert version in checked


# -- 2 and 3 -------------------------------------------------------------------------------------
def _rejected_and_v1_keeps_running(session: DeviceSession, kind: str) -> None:
    v1 = _start(session)
    bad = session.kit.bad_release(kind, session.kit.image("v2"))
    report = session.reject(bad.manifest, bad.image, reason=bad.reason)
    assert report["reason"] == bad.reason
    assert report["version"] == v1
    _assert_still_running(session, v1)
    active = active_otadata(session.otadata())
    assert active is None or (active.seq - 1) % 2 == 0  # otadata still selects ota_0


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_s2_bad_image_rejected_v1_keeps_running(session: DeviceSession, kind: str) -> None:
    _rejected_and_v1_keeps_running(session, kind)


@pytest.mark.parametrize("kind", BAD_RELEASES)
def test_s3_bad_release_rejected(session: DeviceSession, kind: str) -> None:
    _rejected_and_v1_keeps_running(session, kind)


# -- 4 ---------------------------------------------------------------------------------------------
def test_s4_downgrade_without_signed_rollback_refused(session: DeviceSession) -> None:
    v1 = _start(session)
    older = with_app_desc(session.kit.image("v1"), version="0.9.0")
    manifest = session.kit.manifest_for(older)
    report = session.reject(manifest, older, reason="downgrade")
    assert report["reason"] == "downgrade" and report["target_version"] == "0.9.0"
    _assert_still_running(session, v1)

    # The same image under a signed rollback manifest (newer sequence) is accepted.
    session.server.assign(session.kit.manifest_for(older, rollback=True), older)
    session.check()
    session.expect("update_available", v1, "0.9.0")
    assert session.wait_boot() == "0.9.0"
    session.expect("selftest_passed", "0.9.0")
    session.server.wait_for_report(
        lambda r: r["state"] == "success" and r["version"] == "0.9.0", timeout_s=30
    )


def test_s4_replayed_old_manifest_refused(session: DeviceSession) -> None:
    v1 = _start(session)
    v2_image = session.kit.image("v2")
    old_sequence = session.kit.next_sequence()  # signed earlier, never deployed
    v3_image = with_app_desc(v2_image, version=_major_bump(version_of(v2_image), 1))
    old_manifest = session.kit.manifest_for(v3_image, sequence=old_sequence)

    session.update(v2_image, from_version=v1)
    report = session.reject(old_manifest, v3_image, reason="manifest_replay")
    assert report["reason"] == "manifest_replay"
    status = session.status()
    assert status["version"] == version_of(v2_image)
    assert status["highest_sequence"] > old_sequence


def test_s4_secure_version_below_device_refused(session: DeviceSession) -> None:
    v1 = _start(session)
    v2_image = session.kit.image("v2")
    hardened = with_app_desc(v2_image, secure_version=2)
    session.update(hardened, from_version=v1)
    assert session.status()["secure_version"] == 2

    weaker = with_app_desc(v2_image, version=_major_bump(version_of(v2_image), 1), secure_version=1)
    report = session.reject(session.kit.manifest_for(weaker), weaker, reason="secure_version")
    assert report["reason"] == "secure_version"
    assert session.status()["version"] == version_of(v2_image)


# -- 5 ---------------------------------------------------------------------------------------------
def _expect_rolled_back_to_v1(session: DeviceSession, v1: str, v2: str, reason: str, after: int) -> None:
    report = session.server.wait_for_report(
        lambda r: r["state"] == "rolled_back", timeout_s=30 * session.timeout_scale, after_index=after
    )
    assert report["reason"] == reason
    assert report["target_version"] == v2
    _assert_still_running(session, v1)
    states = {v.state for v in session.otadata() if v.crc_ok and (v.seq - 1) % 2 == 1}
    assert states and states <= {"invalid", "aborted"}, states
    assert not session.server.reports("success")


def test_s5_failing_selftest_rolled_back_by_app(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2_fail_selftest")
    v2 = version_of(image)
    before = len(session.server.status_reports)
    session.offer(image)
    session.check()
    session.expect("boot_set")
    assert session.wait_boot() == v2
    session.expect("pending_verify", v2)
    session.expect("selftest_failed")
    assert session.wait_boot() == v1
    _expect_rolled_back_to_v1(session, v1, v2, "selftest", before)


def test_s5_selftest_fail_next_console_hook_rolls_back(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2")
    v2 = version_of(image)
    before = len(session.server.status_reports)
    session.console("selftest fail-next")
    session.offer(image)
    session.check()
    session.expect("boot_set")
    assert session.wait_boot() == v2
    session.expect("selftest_failed")
    assert session.wait_boot() == v1
    _expect_rolled_back_to_v1(session, v1, v2, "selftest", before)


# -- 6 ---------------------------------------------------------------------------------------------
def test_s6_crash_before_confirm_rolled_back_by_bootloader(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2_crash_at_boot")
    v2 = version_of(image)
    before = len(session.server.status_reports)
    session.offer(image)
    session.check()
    session.expect("boot_set")
    assert session.wait_boot() == v2  # starts, crashes before confirming
    assert session.wait_boot() == v1  # the bootloader abandoned it
    session.expect("rollback_detected", v1, v2)
    _expect_rolled_back_to_v1(session, v1, v2, "rolled_back", before)


# -- 7 ---------------------------------------------------------------------------------------------
def _otadata_entry(seq: int, state: int) -> bytes:
    entry = seq.to_bytes(4, "little") + b"\xff" * 20 + state.to_bytes(4, "little")
    entry += otadata_crc(seq).to_bytes(4, "little")
    return entry.ljust(SECTOR_BYTES, b"\xff")


def test_s7_new_image_corrupted_in_flash_bootloader_falls_back(session: DeviceSession) -> None:
    """v2 written to ota_1 and set as boot partition (as esp_ota_set_boot_partition leaves it:
    a NEW otadata entry in the other sector), then corrupted in flash before it ever ran."""
    v1 = _start(session)
    v2_image = session.kit.image("v2")
    device = session.device
    before = len(session.server.status_reports)
    active = active_otadata(session.otadata())
    assert active is not None and (active.seq - 1) % 2 == 0
    next_seq = active.seq + 1  # (seq - 1) % 2 == 1: ota_1
    with device.offline():  # as esp_ota_write + esp_ota_set_boot_partition leave it, then bit rot
        device.write_partition("ota_1", v2_image)
        device.write_partition(
            "otadata", _otadata_entry(next_seq, 0x0), offset=(1 - active.index) * SECTOR_BYTES
        )
        device.corrupt_partition("ota_1", 0x1000, 64)  # segment data: checksum and SHA-256 now fail

    assert session.wait_boot() == v1  # ota_1 failed validation: fallback in the same boot
    session.expect("fallback_boot", timeout_s=20)
    report = session.server.wait_for_report(
        lambda r: r["state"] == "rolled_back", timeout_s=30 * session.timeout_scale, after_index=before
    )
    assert report["reason"] == "rolled_back"
    _assert_still_running(session, v1)
    entry = next(v for v in session.otadata() if v.seq == next_seq)
    assert entry.state in ("pending_verify", "aborted")  # written before validation (IDF fact 5)

    device.reset()  # the next boot turns it ABORTED and never tries ota_1 again
    assert session.wait_ready(v1)["version"] == v1
    entry = next(v for v in session.otadata() if v.seq == next_seq)
    assert entry.state == "aborted"


# -- 8 ---------------------------------------------------------------------------------------------
def _follow_to_success(session: DeviceSession, v1: str, v2: str, before: int) -> dict:
    session.expect("boot_set", timeout_s=60)
    assert session.wait_boot() == v2
    session.expect("selftest_passed", v2)
    return session.server.wait_for_report(
        lambda r: r["state"] == "success" and r["version"] == v2,
        timeout_s=30 * session.timeout_scale,
        after_index=before,
    )


def test_s8_resets_during_download_resume_with_range(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2")
    v2 = version_of(image)
    rng = random.Random(6)
    server = session.server
    # The resets must land mid-download: a board's reset (esptool over the serial port) takes
    # about a second, so there the download is slowed to last HW_DOWNLOAD_S at least.
    chunks = max(1, len(image) // 4096)
    server.behaviour.delay_per_chunk_s = (
        0.05 if session.target == "sim" else max(0.05, HW_DOWNLOAD_S / chunks)
    )
    before = len(server.status_reports)
    session.offer(image)
    streamed_at_offer = server.firmware_bytes_streamed
    for fraction in sorted(rng.uniform(0.2, 0.8) for _ in range(2)):
        session.check()
        # The device still needs at least the image minus everything streamed since the offer
        # (a resume starts at or before what was received), so a reset at up to 40 % of that
        # lower bound always lands mid-download, however far a resume got before this check.
        streamed_now = server.firmware_bytes_streamed
        still_needed = len(image) - (streamed_now - streamed_at_offer)
        threshold = streamed_now + int(fraction * still_needed / 2)
        deadline = time.monotonic() + 30 * session.timeout_scale
        while server.firmware_bytes_streamed < threshold and time.monotonic() < deadline:
            time.sleep(0.01)
        session.device.reset()
        session.wait_ready(v1)
    session.check()
    offset = int(session.expect("resuming").group(1))
    assert offset > 0
    _follow_to_success(session, v1, v2, before)

    ranged = [r for r in server.firmware_requests() if r.range_header]
    assert ranged and all(r.status == 206 for r in ranged)
    assert any(r.range_header == f"bytes={offset}-" for r in ranged)


def test_s8_cut_connection_resumes_with_range(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2")
    v2 = version_of(image)
    server = session.server
    server.behaviour.cut_after_bytes = [20_000]
    before = len(server.status_reports)
    session.offer(image)
    session.check()
    offset = int(session.expect("resuming").group(1))
    _follow_to_success(session, v1, v2, before)

    first, resumed = server.firmware_requests()[:2]
    assert first.body_bytes_sent == 20_000 and first.range_header is None
    assert resumed.status == 206 and resumed.range_header == f"bytes={offset}-"
    chunk = 4096
    assert 20_000 - chunk <= offset <= 20_000  # at most one chunk downloaded again
    assert server.firmware_bytes_sent() <= len(image) + chunk


def test_s8_server_without_range_support_restarts_cleanly(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2")
    v2 = version_of(image)
    server = session.server
    server.behaviour.range_support = False
    server.behaviour.cut_after_bytes = [20_000]
    before = len(server.status_reports)
    session.offer(image)
    session.check()
    session.expect("range_ignored")
    _follow_to_success(session, v1, v2, before)
    requests = server.firmware_requests()
    assert requests[1].range_header is not None and requests[1].status == 200
    assert session.read_partition("ota_1", 0, len(image)) == image


def test_s8_http_redirect_followed(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2")
    session.server.behaviour.redirect_firmware = True
    before = len(session.server.status_reports)
    session.offer(image)
    session.check()
    _follow_to_success(session, v1, version_of(image), before)
    statuses = [r.status for r in session.server.requests if "firmware" in r.path]
    assert statuses[:2] == [302, 200]


def test_s8_chunked_transfer_encoding(session: DeviceSession) -> None:
    v1 = _start(session)
    image = session.kit.image("v2")
    session.server.behaviour.chunked = True
    before = len(session.server.status_reports)
    session.offer(image)
    session.check()
    _follow_to_success(session, v1, version_of(image), before)
    assert session.server.firmware_bytes_sent() == len(image)
