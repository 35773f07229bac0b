"""The virtual ESP32-S3 as a pytest-embedded DUT, built on pytest-embedded's own base classes.

``SimDut`` is a :class:`pytest_embedded.dut.Dut`: the test talks to it exactly as to the
``IdfDut`` of a USB board — ``dut.expect(...)`` (returns a ``re.Match`` over **bytes**) and
``dut.write("ota check")`` for a console line. The simulator process is a
:class:`SimPopen`, a :class:`pytest_embedded.log.DuplicateStdoutPopen` whose output reaches
the DUT's message queue through :class:`ThrottledRedirectProcess`.

Why the throttle: pytest-embedded's ``_PopenRedirectProcess`` re-reads the log file in a loop
with no pause, so each idle DUT burns about one CPU core. The subclass sleeps
``IDLE_POLL_INTERVAL_S`` whenever a read returns nothing. It lives in this importable module
because the redirect runs in a *spawned* process, which re-imports its class by name.

A "reset" of the virtual board kills the process (SIGKILL, like pulling power) and starts it
again on the same flash file; a power cut at flash operation N is the simulator's own
``--power-cut-at N``, after which the process exits by itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import AnyStr

from pytest_embedded.dut import Dut
from pytest_embedded.log import DuplicateStdoutPopen, _PopenRedirectProcess
from pytest_embedded.utils import to_bytes

IDLE_POLL_INTERVAL_S = 0.02
STOP_GRACE_S = 3.0


class ThrottledRedirectProcess(_PopenRedirectProcess):
    """pytest-embedded's log-file → message-queue forwarder without the busy loop."""

    @staticmethod
    def _forward_io(msg_queue, logfile) -> None:  # type: ignore[override]
        with open(logfile, "rb") as fr:  # binary: see the base class on split UTF-8 sequences
            while True:
                chunk = fr.read()
                if not chunk:
                    time.sleep(IDLE_POLL_INTERVAL_S)
                    continue
                try:
                    msg_queue.put(chunk)
                except Exception:  # the queue's manager is gone: the session is over
                    break


class SimPopen(DuplicateStdoutPopen):
    """One run of the simulator binary; stdout+stderr go to the DUT's message queue."""

    SOURCE = "SIM"
    REDIRECT_CLS = ThrottledRedirectProcess

    def close(self) -> None:
        # Let the redirect forward what the process printed last before it is terminated.
        time.sleep(2 * IDLE_POLL_INTERVAL_S)
        super().close()


def line_buffered(argv: Sequence[str]) -> list[str]:
    """``argv`` under ``stdbuf -oL -eL`` when available: the simulator's stdout is a file here."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", "-eL", *argv] if stdbuf else list(argv)


@dataclass
class SimLaunch:
    """How to start the virtual ESP32-S3: the binary, its flash file and its other arguments."""

    binary: Path
    flash_path: Path
    args: list[str] = field(default_factory=list)
    cwd: Path | None = None

    def argv(self, *, power_cut_at: int | None = None) -> list[str]:
        argv = [str(self.binary), *self.args]
        if power_cut_at is not None:
            argv += ["--power-cut-at", str(power_cut_at)]
        return argv


class SimDut(Dut):
    """A pytest-embedded DUT backed by the virtual ESP32-S3 process."""

    def __init__(self, *, launch: SimLaunch, **kwargs) -> None:
        super().__init__(**kwargs)
        self.launch = launch
        self.sim: SimPopen | None = None
        self.boot_count = 0

    # -- process control ---------------------------------------------------------------------
    def start(self, *, power_cut_at: int | None = None) -> None:
        """Power the virtual board on (it runs the bootloader model, then the app)."""
        if self.sim is not None and self.sim.poll() is None:
            raise RuntimeError("the virtual ESP32-S3 is already running; stop() or hard_reset() it first")
        self._discard_process()
        argv = line_buffered(self.launch.argv(power_cut_at=power_cut_at))
        self.sim = SimPopen(self._q, argv, meta=self._meta, cwd=self.launch.cwd, start_new_session=True)
        self.boot_count += 1
        logging.info("virtual ESP32-S3 power-on #%d (pid %s)", self.boot_count, self.sim.pid)

    def power_off(self) -> None:
        """Cut power: SIGKILL, no chance to flush or finish a flash operation."""
        if self.sim is not None and self.sim.poll() is None:
            os.killpg(self.sim.pid, signal.SIGKILL)
            self.sim.wait(timeout=STOP_GRACE_S)

    def hard_reset(self) -> None:
        """Like the EN button / esptool's hard reset: power off, power on."""
        self.power_off()
        self.start()

    def stop(self) -> None:
        """Stop the simulator politely (SIGTERM), then forcefully."""
        if self.sim is not None and self.sim.poll() is None:
            os.killpg(self.sim.pid, signal.SIGTERM)
            try:
                self.sim.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.power_off()
        self._discard_process()

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for the process to end by itself (e.g. ``--power-cut-at``); its exit code."""
        if self.sim is None:
            raise RuntimeError("the virtual ESP32-S3 was never started")
        return self.sim.wait(timeout=timeout_s)

    @property
    def running(self) -> bool:
        return self.sim is not None and self.sim.poll() is None

    def _discard_process(self) -> None:
        if self.sim is not None:
            self.sim.close()
            self.sim = None

    # -- Dut interface ----------------------------------------------------------------------
    def write(self, data: AnyStr) -> None:
        """One console line to the simulator's stdin (a newline is added to str input)."""
        if not self.running:
            raise RuntimeError("the virtual ESP32-S3 is not running")
        assert self.sim is not None
        self.sim.write(to_bytes(data, "\n"))

    def close(self) -> None:
        self.stop()
        super().close()
