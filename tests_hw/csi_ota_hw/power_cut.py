"""Scenario 9 on the virtual ESP32-S3: a power cut at every flash operation of a full v1 → v2 update.

The simulator numbers every flash erase and write and every KV-store operation (1, 2, 3, …
over the life of the process, reboots included) and ``--power-cut-at N`` performs operation N
torn, prints ``POWER CUT at flash op N (...)`` and exits with code 75.

1. :meth:`PowerCutSweep.count_ops` finds T, the operations of one complete update — first
   boot, check, download, ``esp_ota_end``, set boot partition, reboot, bootloader
   NEW → PENDING_VERIFY, self-test, mark valid, final report — as the smallest N whose run
   completes without a cut, minus one (exponential probe, then bisection; the count is
   deterministic for a given image and configuration).
2. For every N in 1..T, :meth:`PowerCutSweep.run_point` starts a fresh flash file (v1 in
   ota_0), cuts at N, powers on again and requires: the bootloader starts a valid image
   (v1 or v2), and the update then completes — by resuming, retrying or already being done —
   ending with v2 running and confirmed (``img_state`` valid) and the server knowing it.

Runs are independent (own flash file, KV store and device id) and run in parallel threads,
each driving one simulator process through :class:`csi_ota.sim.runner.SimProcess`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
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

POWER_CUT_RE = re.compile(r"POWER CUT at flash op (\d+) \((\w+) (0x[0-9a-f]+|\S+) len (\d+)\)")
APP_VERSION_RE = re.compile(r"App version:\s+(\S+)")
READY_RE = re.compile(r"app: ready; console commands on stdin")
STATUS_RE = re.compile(r'^\{"phase":')
NO_APP_RE = re.compile(r"no bootable app")
RUN_TIMEOUT_S = 20.0
MAX_STATUS_POLLS = 40
STATUS_POLL_INTERVAL_S = 0.25
MAX_BOOTS_PER_RUN = 10
PROBE_LIMIT_OPS = 100_000


@dataclass(frozen=True)
class CutResult:
    cut_at: int
    cut_op: str  # "write 0x170000 len 4096", "kv_set report ...", "" if the run did not cut
    booted_after_cut: str  # version the bootloader started after the cut
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
        server: OtaTestServer,
        token: str,
        v1_image: bytes,
        v2_image: bytes,
    ) -> None:
        self.workdir = workdir
        self.binary = binary
        self.kit = kit
        self.server = server
        self.token = token
        self.v1 = version_of(v1_image)
        self.v2 = version_of(v2_image)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pristine = create_flash_file(self.workdir / "pristine.bin", images={0: v1_image})
        server.assign(kit.manifest_for(v2_image), v2_image)

    # -- one device ---------------------------------------------------------------------------
    def _fresh_device(self, name: str) -> tuple[Path, Path, str]:
        device_dir = self.workdir / name
        if device_dir.exists():
            shutil.rmtree(device_dir)
        device_dir.mkdir()
        flash = device_dir / "flash.bin"
        shutil.copyfile(self.pristine, flash)
        device_id = f"cut-{name}"
        config = write_sim_config(
            device_dir / "sim.conf",
            server=self.server,
            device_id=device_id,
            token=self.token,
            key_id=self.kit.key_id,
            public_key_raw=self.kit.public_key_raw,
        )
        return flash, config, device_id

    def _process(self, flash: Path, config: Path, power_cut_at: int | None = None) -> SimProcess:
        return SimProcess(
            flash, config, binary=self.binary, power_cut_at=power_cut_at, max_boots=MAX_BOOTS_PER_RUN
        )

    def _run_with_cut(self, flash: Path, config: Path, n: int) -> tuple[int, str]:
        """One update attempt with the power cut at op ``n``: (exit code, cut line detail)."""
        with self._process(flash, config, power_cut_at=n) as sim:
            with contextlib.suppress(SimTimeout):  # the cut may come before the console opens
                sim.send("ota check")
            try:
                code = sim.wait_exit(RUN_TIMEOUT_S)
            except SimTimeout:
                code = -1  # no cut: the run outlived the update
            match = POWER_CUT_RE.search(sim.output())
        return code, match.group(0) if match else ""

    def _status(self, sim: SimProcess) -> dict:
        sim.send("ota status")
        return json.loads(sim.expect(STATUS_RE, RUN_TIMEOUT_S).string)

    def _completes(self, flash: Path, config: Path) -> tuple[str, dict]:
        """Power on again, check, and wait until v2 runs confirmed; (booted version, last status)."""
        with self._process(flash, config) as sim:
            booted = sim.expect(APP_VERSION_RE, RUN_TIMEOUT_S).group(1)
            sim.expect(READY_RE, RUN_TIMEOUT_S)
            sim.send("ota check")
            status: dict = {}
            for _ in range(MAX_STATUS_POLLS):
                status = self._status(sim)
                if (
                    status["version"] == self.v2
                    and status["img_state"] == "valid"
                    and status["phase"] == "idle"
                ):
                    break
                time.sleep(STATUS_POLL_INTERVAL_S)
            if NO_APP_RE.search(sim.output()):
                raise AssertionError("the bootloader found no bootable app")
        return booted, status

    def _server_knows(self, device_id: str) -> bool:
        reported = any(
            r.get("device_id") == device_id and r.get("state") == "success" and r.get("version") == self.v2
            for r in self.server.reports()
        )
        checked = any(
            r.query.get("device_id") == device_id
            and r.query.get("version") == self.v2
            and r.query.get("state") == "valid"
            for r in list(self.server.requests)
        )
        return reported or checked

    # -- the sweep ----------------------------------------------------------------------------
    def completes_without_cut_at(self, n: int) -> bool:
        flash, config, _ = self._fresh_device(f"probe-{n}")
        code, detail = self._run_with_cut(flash, config, n)
        shutil.rmtree(flash.parent, ignore_errors=True)
        if code == EXIT_POWER_CUT:
            return False
        if code != -1:
            raise AssertionError(f"probe run with --power-cut-at {n} exited with {code} ({detail})")
        return True

    def count_ops(self) -> int:
        """T: operations of one full update (the cut at T+1 never happens)."""
        low, high = 0, 64  # invariant: cut at `low` happens (or low == 0), run with cut at `high` completes
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
        flash, config, device_id = self._fresh_device(f"{n:04d}")
        booted, status, error = "", {}, ""
        code, detail = self._run_with_cut(flash, config, n)
        try:
            if code != EXIT_POWER_CUT:
                raise AssertionError(f"expected the power cut (exit {EXIT_POWER_CUT}), got exit {code}")
            if f"op {n} " not in detail:
                raise AssertionError(f"cut at the wrong operation: {detail!r}")
            booted, status = self._completes(flash, config)
            if booted not in (self.v1, self.v2):
                raise AssertionError(f"booted {booted!r} after the cut, neither {self.v1} nor {self.v2}")
            if (status.get("version"), status.get("img_state")) != (self.v2, "valid"):
                raise AssertionError(f"update did not complete: {status}")
        except (AssertionError, SimTimeout) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        knows = self._server_knows(device_id)
        if not error and not knows:
            error = "the server never learned that v2 runs confirmed"
        if not error:
            shutil.rmtree(flash.parent, ignore_errors=True)
        return CutResult(
            cut_at=n,
            cut_op=POWER_CUT_RE.search(detail).group(0).split("(", 1)[1].rstrip(")") if detail else "",
            booted_after_cut=booted,
            final_version=status.get("version", ""),
            final_img_state=status.get("img_state", ""),
            server_knows=knows,
            error=error,
        )

    def run_all(self, points: Iterable[int], workers: int) -> list[CutResult]:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(self.run_point, points))
