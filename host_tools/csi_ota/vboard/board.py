"""The virtual ESP32-S3 board: auto-reset circuit, ROM boot, download mode or the app.

Modem lines follow the auto-reset circuit of ESP32-S3 DevKits (two transistors between the
USB-UART's DTR/RTS and the chip's EN and GPIO0). pyserial's convention: ``True`` = asserted
= the pin pulled low through its transistor.

======  ======  ==========  ============
DTR     RTS     EN          GPIO0
======  ======  ==========  ============
off     off     high (run)  high
on      on      high (run)  high
off     on      **low**     high
on      off     high        **low**
======  ======  ==========  ============

EN low holds the chip in reset (the app stops at once, like power removed). When EN rises
the ROM samples GPIO0 as the EN capacitor charges: low → download mode
(``boot:0x0 (DOWNLOAD(USB/UART0))``, "waiting for download"), high → it boots from flash
(``boot:0x8 (SPI_FAST_FLASH_BOOT)``) and csi-ota-sim runs on the flash file with its console
on the same port.

When the ROM samples GPIO0 stands in for the EN RC delay: esptool's classic reset passes
through DTR=RTS=on (EN high, GPIO0 high) for one line write before it pulls GPIO0 low, and
over RFC 2217 every line write takes a round trip (pyserial polls for the answer every
50 ms). So the straps are sampled at the first line change after EN rises — GPIO0 low by
then means download mode — or :data:`STRAP_WINDOW_S` after the rise when nothing changes
(esptool's hard reset, the EN button).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from csi_ota.vboard import slip
from csi_ota.vboard.flashchip import FlashChip
from csi_ota.vboard.loader import REBOOT_TO_APP, REBOOT_TO_LOADER, Loader

log = logging.getLogger(__name__)

STRAP_WINDOW_S = 0.3
STOP_GRACE_S = 3.0

# Reset causes as the ESP32-S3 ROM prints them (components/soc/esp32s3/include/soc/reset_reasons.h).
RESET_POWERON = (0x1, "POWERON")
RESET_SW_SYS = (0x3, "RTC_SW_SYS_RST")
BOOT_FLASH = (0x8, "SPI_FAST_FLASH_BOOT")
BOOT_DOWNLOAD = (0x0, "DOWNLOAD(USB/UART0)")
ROM_BANNER = "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n"
# What the ROM prints while it loads the second-stage bootloader (a v6 bootloader's segments).
ROM_FLASH_BOOT_LINES = (
    "SPIWP:0xee\r\n"
    "mode:DIO, clock div:1\r\n"
    "load:0x3fce2820,len:0x1180\r\n"
    "load:0x403c8700,len:0xc2c\r\n"
    "load:0x403cb700,len:0x311c\r\n"
    "entry 0x403c8914\r\n"
)


def rom_boot_lines(reset: tuple[int, str], download: bool) -> str:
    mode = BOOT_DOWNLOAD if download else BOOT_FLASH
    text = ROM_BANNER + f"rst:{reset[0]:#x} ({reset[1]}),boot:{mode[0]:#x} ({mode[1]})\r\n"
    return text + ("waiting for download\r\n" if download else ROM_FLASH_BOOT_LINES)


def _line_buffered(argv: Sequence[str]) -> list[str]:
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", "-eL", *argv] if stdbuf else list(argv)


@dataclass
class BoardConfig:
    flash_path: Path
    sim_binary: Path
    sim_config: Path
    sim_args: list[str] = field(default_factory=list)  # e.g. ["--time-scale", "1"]
    strap_window_s: float = STRAP_WINDOW_S


class Board:
    """One board. ``output`` receives every byte the chip sends on its UART."""

    def __init__(self, config: BoardConfig) -> None:
        self.config = config
        self.output: Callable[[bytes], None] = lambda data: None
        self.dtr = False
        self.rts = False
        self.boots = 0
        self.mode = "off"  # off | reset | download | app
        self._lock = threading.RLock()
        self._generation = 0  # bumped by every reset: stale timers and threads stop
        self._io0_low_seen = False
        self._straps_pending = False
        self._frames: queue.Queue[bytes] = queue.Queue()
        self._decoder = slip.Decoder()
        self._app: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []

    # -- lines ----------------------------------------------------------------------------------
    @property
    def en_low(self) -> bool:
        return self.rts and not self.dtr

    @property
    def io0_low(self) -> bool:
        return self.dtr and not self.rts

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        with self._lock:
            before = (self.dtr, self.rts)
            was_in_reset = self.en_low
            if dtr is not None:
                self.dtr = bool(dtr)
            if rts is not None:
                self.rts = bool(rts)
            if (self.dtr, self.rts) == before:
                return  # esptool re-writes DTR after every RTS write
            if self.io0_low:
                self._io0_low_seen = True
            if self.en_low and not was_in_reset:
                self._hold_in_reset()
            elif was_in_reset and not self.en_low:
                self._release_reset()
            elif self._straps_pending:
                self._sample_straps(self._generation)

    def _hold_in_reset(self) -> None:
        self._generation += 1
        self._straps_pending = False
        self._stop_app()
        self.mode = "reset"
        log.info("board: EN low (reset held)")

    def _release_reset(self) -> None:
        self._generation += 1
        generation = self._generation
        self._io0_low_seen = self.io0_low
        self._straps_pending = True
        timer = threading.Timer(self.config.strap_window_s, self._sample_straps, args=(generation,))
        timer.daemon = True
        timer.start()

    def _sample_straps(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self.en_low or not self._straps_pending:
                return
            self._straps_pending = False
            self._boot(RESET_POWERON, download=self._io0_low_seen)

    # -- power ----------------------------------------------------------------------------------
    def power_on(self) -> None:
        """Plugging the board in: it boots from flash."""
        with self._lock:
            self._generation += 1
            self._boot(RESET_POWERON, download=False)

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            self._stop_app()
            self.mode = "off"

    # -- serial data ----------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes from the host (the UART's RX)."""
        with self._lock:
            if self.mode == "download":
                for frame in self._decoder.feed(data):
                    self._frames.put(frame)
            elif self.mode == "app" and self._app is not None and self._app.stdin is not None:
                try:
                    self._app.stdin.write(data)
                    self._app.stdin.flush()
                except (BrokenPipeError, ValueError):
                    pass

    def _emit(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # nobody listening: a UART's output is simply lost
            self.output(data)

    # -- boot -----------------------------------------------------------------------------------
    def _boot(self, reset: tuple[int, str], *, download: bool) -> None:
        self.boots += 1
        generation = self._generation
        log.info("board: boot %d (%s, %s)", self.boots, reset[1], "download" if download else "flash")
        self._emit(rom_boot_lines(reset, download).encode())
        if download:
            self.mode = "download"
            self._frames = queue.Queue()
            self._decoder = slip.Decoder()
            self._spawn(self._download_loop, generation)
        else:
            self.mode = "app"
            self._start_app(generation)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _next_frame(self, generation: int, timeout_s: float) -> bytes | None:
        deadline_step = 0.1
        waited = 0.0
        while waited < timeout_s and generation == self._generation:
            try:
                return self._frames.get(timeout=deadline_step)
            except queue.Empty:
                waited += deadline_step
        return None

    def _download_loop(self, generation: int) -> None:
        flash = FlashChip(self.config.flash_path)
        loader = Loader(
            flash=flash,
            send=self._emit,
            receive_frame=lambda timeout_s: self._next_frame(generation, timeout_s),
            reboot=lambda: None,
        )
        while generation == self._generation:
            frame = self._next_frame(generation, 0.5)
            if frame is None:
                continue
            with self._lock:
                if generation != self._generation:
                    return
            loader.handle(frame)
            if loader.reboot_requested == REBOOT_TO_LOADER:
                with self._lock:  # software reset: GPIO0 stays latched low, the ROM loader again
                    if generation == self._generation:
                        self._generation += 1
                        self._boot(RESET_SW_SYS, download=True)
                return
            if loader.reboot_requested == REBOOT_TO_APP:
                with self._lock:  # the ROM jumps to the flash bootloader: no reset, no banner
                    if generation == self._generation:
                        self._generation += 1
                        self.mode = "app"
                        self._start_app(self._generation)
                return

    # -- the app (csi-ota-sim) --------------------------------------------------------------------
    def _start_app(self, generation: int) -> None:
        if not self.config.sim_config.is_file():
            self._emit(
                f"E board: no app settings at {self.config.sim_config} "
                "(scripts/build_test_images.sh writes them); the app does not start\r\n".encode()
            )
            return
        argv = [
            str(self.config.sim_binary),
            "--flash",
            str(self.config.flash_path),
            "--config",
            str(self.config.sim_config),
            *self.config.sim_args,
        ]
        try:
            self._app = subprocess.Popen(
                _line_buffered(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                bufsize=0,
            )
        except OSError as exc:
            self._emit(f"E board: cannot start {argv[0]}: {exc}\r\n".encode())
            self._app = None
            return
        self._spawn(self._forward_app_output, self._app, generation)

    def _forward_app_output(self, app: subprocess.Popen[bytes], generation: int) -> None:
        assert app.stdout is not None
        fd = app.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            if generation == self._generation:
                self._emit(chunk)
        code = app.wait()
        if generation == self._generation:
            log.info("board: app exited with %s", code)

    def _stop_app(self) -> None:
        app, self._app = self._app, None
        if app is None:
            return
        if app.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            app.wait(timeout=STOP_GRACE_S)
        if app.stdin is not None:
            with contextlib.suppress(OSError):
                app.stdin.close()  # stdout: its reader thread sees EOF and closes it
