"""Scenario 9 on the virtual ESP32-S3: a power cut at every flash operation of a full v1 → v2 update.

The simulator numbers every flash erase and write and every KV-store operation (1, 2, 3, …
over the life of the process, reboots included) and ``--power-cut-at N`` performs operation N
torn, prints ``POWER CUT at flash op N (...)`` and exits with code 75.

1. :meth:`PowerCutSweep.count_ops` finds T, the operations of one complete update — first
   boot, check, download, ``esp_ota_end``, set boot partition, reboot, bootloader
   NEW → PENDING_VERIFY, self-test, mark valid, final report — as the smallest N whose run
   completes without a cut, minus one (exponential probe, then bisection; the count is
   deterministic for a given image and configuration).
2. For every N in 1..T, :meth:`PowerCutSweep.run_point` takes a fresh flash file (v1 in
   ota_0) and its own OTA server, cuts at N, powers on again and requires:

   - the bootloader starts a valid image, v1 or v2;
   - the update then completes: the device resumes or retries by itself — or, when it
     reported ``rolled_back`` (the bootloader abandoned an unconfirmed v2, as ESP-IDF does
     after any reset in PENDING_VERIFY), the controller re-issues the release with a new
     sequence number and that completes — ending with v2 running confirmed (``img_state``
     valid) and the server told so. A device that neither completes nor reports a rollback
     (e.g. says "will retry" and then refuses the same release as a replay) fails the point.

Runs are independent (own flash file, KV store, device id and server) and run in parallel
threads, each driving one simulator process through :class:`csi_ota.sim.runner.SimProcess`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from csi_ota.sim.flashfile import create_flash_file
from csi_ota.sim.runner import EXIT_POWER_CUT, SimProcess, SimTimeout
from csi_ota_hw.ota_server import OtaTestServer
from csi_ota_hw.releases import ReleaseKit, version_of
from csi_ota_hw.sim_env import write_sim_config

POWER_CUT_RE = re.compile(r"POWER CUT at flash op (\d+) \(([^)]*)\)")
APP_VERSION_RE = re.compile(r"App version:\s+(\S+)")
READY_RE = re.compile(r"ota_client: boot complete: ")
CUT_OR_READY_RE = re.compile(r"POWER CUT at flash op \d+|ota_client: boot complete: ")
STATUS_RE = re.compile(r'^\{"phase":')
CHECK_RAN_RE = re.compile(r" ota: checking | ota_client: boot complete: ")
RUN_TIMEOUT_S = 20.0
STATUS_TIMEOUT_S = 10.0
STATUS_ATTEMPTS = 3
CONFIRM_CHECKS = 3  # checks a confirmed v2 makes at most until the server has heard of it
MAX_STATUS_POLLS = 120  # 30 s: the console hands `ota check` to the OTA task (asynchronous)
STATUS_POLL_INTERVAL_S = 0.25
MAX_BOOTS_PER_RUN = 10
PROBE_LIMIT_OPS = 100_000
NO_CUT = -1  # _run_with_cut: the update finished before op N


@dataclass(frozen=True)
class CutResult:
    cut_at: int
    cut_op: str  # "write 0x170000 len 4096", "kv_set report 0x000000 len 0", …
    booted_after_cut: str  # version the bootloader started after the cut
    outcome: str  # "completed" (device finished by itself) or "reissued" (after a rolled_back report)
    final_version: str
    final_img_state: str
    server_knows: bool  # a success report for v2, or a version check from v2 in state valid
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


class PowerCutSweep:
    def __init__(
        self,
        *,
        workdir: Path,
        binary: Path,
        kit: ReleaseKit,
        token: str,
        v1_image: bytes,
        v2_image: bytes,
    ) -> None:
        self.workdir = workdir
        self.binary = binary
        self.kit = kit
        self.token = token
        self.v2_image = v2_image
        self.v1 = version_of(v1_image)
        self.v2 = version_of(v2_image)
        self._sign_lock = threading.Lock()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pristine = create_flash_file(self.workdir / "pristine.bin", images={0: v1_image})

    # -- one device ---------------------------------------------------------------------------
    def _issue(self, server: OtaTestServer) -> None:
        """Assign v2 under a freshly signed manifest (a new sequence number)."""
        with self._sign_lock:
            manifest = self.kit.manifest_for(self.v2_image)
        server.assign(manifest, self.v2_image)

    def _fresh_device(self, name: str, server: OtaTestServer) -> tuple[Path, Path]:
        device_dir = self.workdir / name
        if device_dir.exists():
            shutil.rmtree(device_dir)
        device_dir.mkdir()
        flash = device_dir / "flash.bin"
        shutil.copyfile(self.pristine, flash)
        config = write_sim_config(
            device_dir / "sim.conf",
            server=server,
            device_id=f"cut-{name}",
            token=self.token,
            key_id=self.kit.key_id,
            public_key_raw=self.kit.public_key_raw,
        )
        self._issue(server)
        return flash, config

    def _process(self, flash: Path, config: Path, power_cut_at: int | None = None) -> SimProcess:
        return SimProcess(
            flash, config, binary=self.binary, power_cut_at=power_cut_at, max_boots=MAX_BOOTS_PER_RUN
        )

    def _run_with_cut(self, flash: Path, config: Path, n: int) -> tuple[int, str]:
        """One update attempt with the power cut at op ``n``: (exit code, the POWER CUT line).

        The exit code is NO_CUT when the update finished first (the second "ready" line: v2
        booted, self-tested, confirmed and reported).
        """
        with self._process(flash, config, power_cut_at=n) as sim:
            with contextlib.suppress(SimTimeout):  # the cut may come before the console opens
                sim.send("ota check")
            readies = 0
            try:
                while readies < 2:
                    match = sim.expect(CUT_OR_READY_RE, RUN_TIMEOUT_S)
                    if match.group(0).startswith("POWER CUT"):
                        return sim.wait_exit(RUN_TIMEOUT_S), match.string
                    readies += 1
            except SimTimeout:
                pass  # exited without a cut line, or hung: the exit code tells
            if readies == 2:
                return NO_CUT, ""
            return (sim.wait_exit(RUN_TIMEOUT_S) if not sim.alive() else -2), ""

    def _status(self, sim: SimProcess) -> dict:
        """One status line; asked again when a reset swallowed the command (a line typed while
        the board restarts is lost, as on a serial console)."""
        for attempt in range(STATUS_ATTEMPTS):
            sim.send("ota status")
            try:
                return json.loads(sim.expect(STATUS_RE, STATUS_TIMEOUT_S).string)
            except SimTimeout:
                if attempt == STATUS_ATTEMPTS - 1 or not sim.alive():
                    raise
        raise AssertionError("unreachable")

    def _confirmed(self, status: dict) -> bool:
        return (
            status["version"] == self.v2
            and status["img_state"] == "valid"
            and status["phase"] == "idle"
            and bool(status["last_report_acked"])
        )

    def _check_until_done(self, sim: SimProcess, after_report_seq: int = 0) -> dict:
        """Ask for a check and poll until v2 runs confirmed, or the device is settled on a
        rejected / rolled_back report newer than ``after_report_seq``.

        Settled means the requested check has run: the OTA task printed ``checking`` (or the
        device rebooted and finished its boot) after the request, and the status is not
        marked ``busy`` (a busy status is the snapshot from before the running check).
        """
        mark = len(sim.lines)
        sim.send("ota check")
        status: dict = {}
        for _ in range(MAX_STATUS_POLLS):
            status = self._status(sim)
            report = status.get("last_report") or {}
            ran = any(CHECK_RAN_RE.search(line) for line in sim.lines[mark:])
            settled = (
                ran and status["phase"] == "idle" and status["last_report_acked"] and not status.get("busy")
            )
            if settled and (
                self._confirmed(status)
                or (
                    report.get("state") in ("rejected", "rolled_back")
                    and int(report.get("seq", 0)) > after_report_seq
                )
            ):
                break
            time.sleep(STATUS_POLL_INTERVAL_S)
        return status

    @staticmethod
    def _reported(server: OtaTestServer, state: str, version: str | None = None) -> bool:
        return any(
            r.get("state") == state and (version is None or r.get("target_version") == version)
            for r in server.reports()
        )

    def _server_knows(self, server: OtaTestServer) -> bool:
        reported = any(r.get("state") == "success" and r.get("version") == self.v2 for r in server.reports())
        checked = any(
            r.query.get("version") == self.v2 and r.query.get("state") == "valid" for r in server.requests
        )
        return reported or checked

    # -- the sweep ----------------------------------------------------------------------------
    def completes_without_cut_at(self, n: int) -> bool:
        with OtaTestServer(token=self.token) as server:
            flash, config = self._fresh_device(f"probe-{n}", server)
            code, detail = self._run_with_cut(flash, config, n)
        shutil.rmtree(flash.parent, ignore_errors=True)
        if code == EXIT_POWER_CUT:
            return False
        if code != NO_CUT:
            raise AssertionError(f"probe run with --power-cut-at {n} ended with code {code} ({detail})")
        return True

    def count_ops(self) -> int:
        """T: operations of one full update (the cut at T+1 never happens)."""
        low, high = (
            0,
            64,
        )  # invariant: the cut at `low` happens (or low == 0); the run cut at `high` completes
        while not self.completes_without_cut_at(high):
            low, high = high, high * 2
            if high > PROBE_LIMIT_OPS:
                raise AssertionError(f"the update still cuts at op {low}: more than {PROBE_LIMIT_OPS} ops?")
        while high - low > 1:
            middle = (low + high) // 2
            if self.completes_without_cut_at(middle):
                high = middle
            else:
                low = middle
        return low

    def run_point(self, n: int) -> CutResult:
        booted, outcome, status, error, knows, log = "", "", {}, "", False, ""
        with OtaTestServer(token=self.token) as server:
            flash, config = self._fresh_device(f"{n:04d}", server)
            code, detail = self._run_with_cut(flash, config, n)
            cut = POWER_CUT_RE.search(detail)
            try:
                if code != EXIT_POWER_CUT or cut is None or int(cut.group(1)) != n:
                    raise AssertionError(
                        f"expected the power cut at op {n} (exit {EXIT_POWER_CUT}), got {code} {detail!r}"
                    )
                with self._process(flash, config) as sim:
                    booted = sim.expect(APP_VERSION_RE, RUN_TIMEOUT_S).group(1)
                    if booted not in (self.v1, self.v2):
                        raise AssertionError(
                            f"booted {booted!r} after the cut, neither {self.v1} nor {self.v2}"
                        )
                    sim.expect(READY_RE, RUN_TIMEOUT_S)
                    status = self._check_until_done(sim)
                    outcome = "completed"
                    if not self._confirmed(status) and self._reported(server, "rolled_back", self.v2):
                        self._issue(server)  # the controller's answer to a rollback: a new release
                        status = self._check_until_done(sim, int(status["last_report"]["seq"]))
                        outcome = "reissued"
                    # A confirmed v2 tells the server by its success report or, when a cut took
                    # that report's record, by its next version check (state valid); on a busy
                    # machine a check can time out, so the device checks again, as it would.
                    for _ in range(CONFIRM_CHECKS):
                        if not self._confirmed(status) or self._server_knows(server):
                            break
                        status = self._check_until_done(sim)
                    log = " | ".join(line for line in sim.lines if " ota: " in line)
                if not self._confirmed(status):
                    raise AssertionError(
                        f"update neither completed nor was rolled back and reported; device log: {log}"
                    )
                knows = self._server_knows(server)
                if not knows:
                    raise AssertionError("the server never learned that v2 runs confirmed")
            except (AssertionError, SimTimeout) as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not error:
            shutil.rmtree(flash.parent, ignore_errors=True)
        return CutResult(
            cut_at=n,
            cut_op=cut.group(2) if cut else "",
            booted_after_cut=booted,
            outcome=outcome,
            final_version=status.get("version", ""),
            final_img_state=status.get("img_state", ""),
            server_knows=knows,
            error=error,
        )

    def run_all(self, points: Iterable[int], workers: int) -> list[CutResult]:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(self.run_point, points))
