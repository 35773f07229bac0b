"""Drive the virtual ESP32-S3 (``firmware/sim/build/csi-ota-sim``) from Python.

``build_sim()`` builds it when missing or stale; ``SimConfig`` writes its
``--config`` file; ``SimProcess`` runs it on a flash file, collects its
stdout lines, sends console commands and waits — always with a timeout — for
a regex. Used by tests/test_sim_e2e.py, the power-cut sweep and the
pytest-embedded integration of tests_hw.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError
from csi_ota.fileio import write_atomic

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_sim.sh"
# csi-ota-sim: the firmware (sdkconfig.ci.v1: HTTP publishing) on the virtual ESP32-S3.
SIM_BINARY = Path(
    os.environ.get("CSI_OTA_SIM_BINARY", REPO_ROOT / "firmware" / "sim" / "build" / "csi-ota-sim")
)
# The same firmware built with other sdkconfig.ci.* variants, beside it: sdkconfig.ci.mqtt
# (MQTT publishing) and sdkconfig.ci.https_only (no CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP).
SIM_MQTT_BINARY = SIM_BINARY.parent / "csi-ota-sim-mqtt"
SIM_HTTPS_ONLY_BINARY = SIM_BINARY.parent / "csi-ota-sim-https-only"
# Sources whose change makes the binary stale (the firmware's Kconfig and sdkconfig files too).
SIM_SOURCE_DIRS = (
    REPO_ROOT / "firmware" / "sim",
    REPO_ROOT / "firmware" / "components",
    REPO_ROOT / "firmware" / "main",
)
SIM_SOURCE_SUFFIXES = (".c", ".h", ".txt", ".projbuild", ".py")
BUILD_TIMEOUT_S = 600.0

# Exit codes of csi-ota-sim (firmware/sim/idf/board/sim_board.c).
EXIT_OK = 0
EXIT_NO_BOOTABLE_APP = 1
EXIT_USAGE = 2
EXIT_BOOT_LOOP = 4
EXIT_POWER_CUT = 75

DEFAULT_EXPECT_TIMEOUT_S = 20.0
DEFAULT_STOP_TIMEOUT_S = 5.0


class SimTimeout(CsiOtaError):
    """A wait on the simulator's output ran out of time (or the process ended first)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_OPERATION_FAILED)


def _newest_source_mtime() -> float:
    newest = 0.0
    for root in SIM_SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "build" and not d.startswith(".")]
            for name in filenames:
                if name.endswith(SIM_SOURCE_SUFFIXES):
                    newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
    for config in (*(REPO_ROOT / "firmware").glob("sdkconfig.ci.*"), REPO_ROOT / "sdkconfig.defaults"):
        if config.is_file():
            newest = max(newest, config.stat().st_mtime)
    return newest


def sim_is_stale(binary: Path = SIM_BINARY) -> bool:
    """True when the binary (or a variant build beside the default one) is missing or older
    than a source of the simulator."""
    binaries = [binary, SIM_MQTT_BINARY, SIM_HTTPS_ONLY_BINARY] if binary == SIM_BINARY else [binary]
    if not all(path.exists() for path in binaries):
        return True
    return _newest_source_mtime() > min(path.stat().st_mtime for path in binaries)


def build_sim(*, force: bool = False) -> Path:
    """Build the simulator with scripts/build_sim.sh if missing or stale; returns the binary.

    Concurrent callers (parallel test sessions) serialise on a lock file.
    """
    lock_path = SIM_BINARY.parent / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or sim_is_stale():
            result = subprocess.run(
                [str(BUILD_SCRIPT)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise CsiOtaError(
                    f"building the simulator failed (scripts/build_sim.sh):\n{tail}",
                    exit_code=EXIT_OPERATION_FAILED,
                )
    if not SIM_BINARY.exists():
        raise CsiOtaError(f"build finished but {SIM_BINARY} is missing", exit_code=EXIT_OPERATION_FAILED)
    return SIM_BINARY


@dataclass
class SimConfig:
    """The simulator's ``--config`` file (key=value lines; docs/sim.md).

    It stands for the firmware's built-in settings (Kconfig, trusted keys) and
    the sim-only ones; a provisioning image in the flash's nvs partition
    overrides device id, token, URLs, interval, auto-update and CA at boot.
    Empty device_id / URLs / token are left out (the image must supply them).
    """

    trusted_keys: str  # "<keyid>:<hex>,…" — csi_ota.keys.trusted_keys_value
    device_id: str = ""
    version_check_url: str = ""
    update_url: str = ""
    check_interval_sec: int = 3600
    auto_update_enabled: bool = False
    auth_token: str = ""
    ca_cert: str = ""
    project: str = "csi_sensor"
    retry_count: int = 3
    http_timeout_ms: int = 5000
    backoff_initial_ms: int = 200
    backoff_max_ms: int = 2000
    chunk_size_bytes: int = 4096
    persist_interval_bytes: int = 65536
    selftest_timeout_ms: int = 2000
    heartbeat_interval_sec: int = 300  # periodic heartbeat (time-scaled); 0 = off
    extra: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        values: dict[str, object] = {
            "device_id": self.device_id,
            "version_check_url": self.version_check_url,
            "update_url": self.update_url,
            "trusted_keys": self.trusted_keys,
            "check_interval_sec": self.check_interval_sec,
            "auto_update_enabled": 1 if self.auto_update_enabled else 0,
            "auth_token": self.auth_token,
            "ca_cert": self.ca_cert,
            "project": self.project,
            "retry_count": self.retry_count,
            "http_timeout_ms": self.http_timeout_ms,
            "backoff_initial_ms": self.backoff_initial_ms,
            "backoff_max_ms": self.backoff_max_ms,
            "chunk_size_bytes": self.chunk_size_bytes,
            "persist_interval_bytes": self.persist_interval_bytes,
            "selftest_timeout_ms": self.selftest_timeout_ms,
            "heartbeat_interval_sec": self.heartbeat_interval_sec,
            **self.extra,
        }
        lines = []
        for key, value in values.items():
            text = str(value)
            if "\n" in text or "\r" in text:
                raise CsiOtaError(f"sim config value for {key} must be one line")
            if text == "" and key in (
                "device_id",
                "version_check_url",
                "update_url",
                "auth_token",
                "ca_cert",
            ):
                continue
            lines.append(f"{key}={text}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + os.replace)."""
        return write_atomic(path, self.render().encode())


class SimProcess:
    """One running csi-ota-sim: ``start()``, ``expect()``, ``send()``, ``stop()``.

    ``lines`` holds every line printed so far (stdout and stderr merged).
    ``expect`` searches from a cursor that advances past each match, so a test
    reads the log in order; ``expect(..., from_start=True)`` searches everything.
    """

    def __init__(
        self,
        flash_path: str | os.PathLike[str],
        config_path: str | os.PathLike[str],
        *,
        power_cut_at: int | None = None,
        chip_rev_full: int | None = None,
        time_scale: float | None = None,
        max_boots: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.flash_path = Path(flash_path)
        self.config_path = Path(config_path)
        self.binary = Path(binary) if binary is not None else SIM_BINARY
        args = [str(self.binary), "--flash", str(self.flash_path), "--config", str(self.config_path)]
        if power_cut_at is not None:
            args += ["--power-cut-at", str(power_cut_at)]
        if chip_rev_full is not None:
            args += ["--chip-rev-full", str(chip_rev_full)]
        if time_scale is not None:
            args += ["--time-scale", str(time_scale)]
        if max_boots is not None:
            args += ["--max-boots", str(max_boots)]
        self.args = args + list(extra_args)
        self.env = env
        self.lines: list[str] = []
        self.cursor = 0
        self._proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = False

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> SimProcess:
        if not self.binary.exists():
            raise CsiOtaError(f"simulator binary {self.binary} not found; run scripts/build_sim.sh")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        )
        self._reader = threading.Thread(target=self._read_lines, name="csi-ota-sim-reader", daemon=True)
        self._reader.start()
        return self

    def __enter__(self) -> SimProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_lines(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            with self._cond:
                self.lines.append(raw.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- console -----------------------------------------------------------
    def send(self, line: str) -> None:
        """Type one console command (a newline is added)."""
        if "\n" in line:
            raise CsiOtaError("send one console line at a time")
        if self._proc is None or self._proc.stdin is None or not self.alive():
            raise SimTimeout(f"cannot send {line!r}: the simulator is not running{self._tail()}")
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise SimTimeout(
                f"cannot send {line!r}: the simulator closed its console{self._tail()}"
            ) from None

    # -- waiting -----------------------------------------------------------
    def expect(
        self,
        pattern: str | re.Pattern[str],
        timeout_s: float = DEFAULT_EXPECT_TIMEOUT_S,
        *,
        from_start: bool = False,
    ) -> re.Match[str]:
        """Wait for a line matching ``pattern`` (re.search) after the cursor; returns the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        index = 0 if from_start else self.cursor
        with self._cond:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    index += 1
                    if match is not None:
                        self.cursor = max(self.cursor, index)
                        return match
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise SimTimeout(
                        f"simulator exited (code {self.returncode}) before printing /{regex.pattern}/{self._tail()}"
                    )
                if remaining <= 0:
                    raise SimTimeout(
                        f"no line matching /{regex.pattern}/ within {timeout_s:.1f} s{self._tail()}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def expect_all(
        self, patterns: Iterable[str], timeout_s: float = DEFAULT_EXPECT_TIMEOUT_S
    ) -> list[re.Match[str]]:
        """expect() each pattern in order, sharing one deadline."""
        deadline = time.monotonic() + timeout_s
        return [self.expect(p, max(0.0, deadline - time.monotonic())) for p in patterns]

    def wait_exit(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int:
        """Wait for the process to end by itself; returns its exit code."""
        if self._proc is None:
            raise CsiOtaError("the simulator was never started")
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise SimTimeout(f"simulator still running after {timeout_s:.1f} s{self._tail()}") from None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        return code

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int | None:
        """Ask the console to ``exit``; terminate, then kill, if it does not. Returns the exit code."""
        if self._proc is None:
            return None
        if self.alive():
            with contextlib.suppress(SimTimeout):
                self.send("exit")
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=timeout_s)
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        return self._proc.returncode

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def _tail(self, count: int = 25) -> str:
        with self._cond:
            tail = self.lines[-count:]
        return "\n--- last simulator lines ---\n" + "\n".join(tail) if tail else " (no output)"
