"""Device actions behind one interface: reset, write or corrupt a partition, read otadata, erase NVS.

On a USB ESP32-S3 every action is an esptool command (the lists built by the ``esptool_*``
functions below, run through the pytest-embedded serial's esptool connection — the same
thing a person types, see :func:`shell_command`). On the virtual ESP32-S3 the same action
edits the flash file with :mod:`csi_ota.sim.flashfile` while the virtual board is powered
off, exactly as esptool holds the chip in its ROM loader while it writes.

Every esptool action on hardware reboots the board (connecting puts it in the ROM loader,
``--after hard-reset`` starts the app again); :class:`~csi_ota_hw.device.DeviceSession` waits
for the app after reads. On the simulator reads are passive and writes power-cycle the board.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import tempfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SECTOR_BYTES = 4096
OTADATA_ENTRY = struct.Struct("<I20sII")  # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc
OTA_STATE_NAMES = {
    0x0: "new",
    0x1: "pending_verify",
    0x2: "valid",
    0x3: "invalid",
    0x4: "aborted",
    0xFFFFFFFF: "undefined",
}
ESPTOOL_CHIP = "esp32s3"
# esptool v5 spellings (hyphenated commands and reset modes).
ESPTOOL_BEFORE = "default-reset"
ESPTOOL_AFTER = "hard-reset"
ESPTOOL_NO_RESET = "no-reset"
EN_LOW_S = 0.1  # how long a reset holds EN low (esptool's hard reset)


@dataclass(frozen=True)
class PartitionSpan:
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class OtadataView:
    """One otadata copy as the tests see it."""

    index: int
    seq: int
    state: str
    crc_ok: bool

    @property
    def erased(self) -> bool:
        return self.seq == 0xFFFFFFFF and self.state == "undefined"


def otadata_crc(seq: int) -> int:
    """esp_rom_crc32_le(0xFFFFFFFF, &ota_seq, 4) — ESP-IDF's otadata CRC.

    The ROM function inverts its seed on entry and its result on exit, exactly like zlib's
    ``crc32(data, value)``, so the seed is passed as is (seq 1 → 0x4743989A).
    """
    return zlib.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def parse_otadata(raw: bytes) -> list[OtadataView]:
    """Both otadata copies from the raw partition bytes (at least two sectors)."""
    if len(raw) < 2 * SECTOR_BYTES:
        raise ValueError(f"otadata needs {2 * SECTOR_BYTES} bytes, got {len(raw)}")
    views = []
    for index in range(2):
        seq, _label, state, crc = OTADATA_ENTRY.unpack_from(raw, index * SECTOR_BYTES)
        views.append(
            OtadataView(
                index=index,
                seq=seq,
                state=OTA_STATE_NAMES.get(state, f"unknown({state:#x})"),
                crc_ok=crc == otadata_crc(seq),
            )
        )
    return views


def active_otadata(views: list[OtadataView]) -> OtadataView | None:
    """The entry the bootloader follows: CRC-valid, not invalid/aborted, highest seq (entry 0 on a tie)."""
    usable = [v for v in views if v.crc_ok and v.seq != 0xFFFFFFFF and v.state not in ("invalid", "aborted")]
    if not usable:
        return None
    return max(usable, key=lambda v: (v.seq, -v.index))


# -- esptool command lines (hardware) --------------------------------------------------------
def esptool_write_flash(offset: int, path: str | Path) -> list[str]:
    return ["--before", ESPTOOL_BEFORE, "--after", ESPTOOL_AFTER, "write-flash", hex(offset), str(path)]


def esptool_read_flash(offset: int, size: int, path: str | Path) -> list[str]:
    # Connecting stops the app anyway (ROM loader); reset afterwards so it runs again.
    return [
        "--before",
        ESPTOOL_BEFORE,
        "--after",
        ESPTOOL_AFTER,
        "read-flash",
        hex(offset),
        hex(size),
        str(path),
    ]


def esptool_erase_region(offset: int, size: int) -> list[str]:
    if offset % SECTOR_BYTES or size % SECTOR_BYTES:
        raise ValueError(f"erase-region needs 4 KiB alignment: offset {offset:#x}, size {size:#x}")
    return ["--before", ESPTOOL_BEFORE, "--after", ESPTOOL_AFTER, "erase-region", hex(offset), hex(size)]


def shell_command(port: str, args: list[str], *, chip: str = ESPTOOL_CHIP) -> list[str]:
    """The same action as a command QA can paste into a shell."""
    return ["esptool", "--chip", chip, "--port", port, *args]


def sector_span(offset: int, length: int) -> tuple[int, int]:
    """The whole sectors covering [offset, offset + length)."""
    start = offset - offset % SECTOR_BYTES
    end = offset + length
    end += (-end) % SECTOR_BYTES
    return start, end - start


def flip_bytes(data: bytes, offset: int, length: int) -> bytes:
    """``data`` with bytes [offset, offset + length) inverted (so they always differ)."""
    out = bytearray(data)
    for i in range(offset, offset + length):
        out[i] ^= 0xFF
    return bytes(out)


# -- the interface the tests use --------------------------------------------------------------
class DeviceActions(Protocol):
    def offline(self) -> contextlib.AbstractContextManager[None]: ...
    def reset(self) -> None: ...
    def partition(self, name: str) -> PartitionSpan: ...
    def write_partition(self, name: str, data: bytes, offset: int = 0) -> None: ...
    def corrupt_partition(self, name: str, offset: int, length: int) -> None: ...
    def read_partition(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...
    def read_otadata(self) -> list[OtadataView]: ...
    def erase_partition(self, name: str) -> None: ...
    def erase_nvs(self) -> None: ...


class SimActions:
    """Device actions on the virtual ESP32-S3's flash file (the board is off while it is edited)."""

    def __init__(self, dut: Any, flash_path: Path) -> None:
        from csi_ota.sim import flashfile

        self._flashfile = flashfile
        self.dut = dut
        self.flash_path = Path(flash_path)
        self._held = False

    @contextlib.contextmanager
    def _board_off(self):
        was_running = self.dut.running and not self._held
        self.dut.power_off()
        try:
            yield
        finally:
            if was_running:
                self.dut.start()

    @contextlib.contextmanager
    def offline(self):
        """Several edits with the board held off; it boots once, afterwards."""
        with self._board_off():
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def reset(self) -> None:
        self.dut.hard_reset()

    def partition(self, name: str) -> PartitionSpan:
        try:
            entry = self._flashfile.read_layout(self.flash_path).find(name)
        except KeyError:
            raise KeyError(f"no partition {name!r} in {self.flash_path}") from None
        return PartitionSpan(entry.name, entry.offset, entry.size)

    def write_partition(self, name: str, data: bytes, offset: int = 0) -> None:
        with self._board_off():
            self._flashfile.write_partition(self.flash_path, name, data, offset=offset)

    def corrupt_partition(self, name: str, offset: int, length: int) -> None:
        with self._board_off():
            self._flashfile.corrupt_partition(self.flash_path, name, offset, length)

    def read_partition(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self._flashfile.read_partition(self.flash_path, name)
        return data[offset:] if length is None else data[offset : offset + length]

    def read_otadata(self) -> list[OtadataView]:
        return [
            OtadataView(index=e.index, seq=e.seq, state=e.state_name, crc_ok=e.crc_ok)
            for e in self._flashfile.read_otadata(self.flash_path)
        ]

    def erase_partition(self, name: str) -> None:
        with self._board_off():
            self._flashfile.erase_partition(self.flash_path, name)

    def erase_nvs(self) -> None:
        """Erase the nvs partition (provisioning image and the OTA client's records alike)."""
        with self._board_off():
            self._flashfile.erase_partition(self.flash_path, "nvs")


class EsptoolActions:
    """Device actions on a USB ESP32-S3 (or the virtual board) through the pytest-embedded ``esp`` serial.

    ``partitions`` maps names to (offset, size) — from the flashed build's partition table
    (pytest-embedded-idf's ``app.partition_table``). Every action is logged at WARNING as the
    esptool command a person can paste (:func:`shell_command`), its data files kept under
    ``files_dir`` (the test's log folder), so a failed run can be replayed by hand.

    Each command runs with ``--after no-reset``; then the DUT's buffered output is dropped
    (``drain``) and the board is reset: the first boot line after an action is the boot of
    *this* flash, never a line the previous app printed before esptool stopped it.
    """

    def __init__(
        self,
        serial: Any,
        partitions: Mapping[str, PartitionSpan],
        *,
        files_dir: Path | None = None,
        drain: Any = None,
    ) -> None:
        self.serial = serial
        self.partitions = dict(partitions)
        self.history: list[list[str]] = []  # every esptool command run, for the log and the report
        self.files_dir = Path(files_dir) if files_dir else Path(tempfile.mkdtemp(prefix="csi-ota-esptool-"))
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._drain = drain or (lambda: None)
        self._held = False

    @classmethod
    def from_idf_app(cls, serial: Any, app: Any, **kwargs: Any) -> EsptoolActions:
        spans = {
            name: PartitionSpan(name, int(info["offset"]), int(info["size"]))
            for name, info in app.partition_table.items()
        }
        return cls(serial, spans, **kwargs)

    @contextlib.contextmanager
    def offline(self):
        """Several esptool commands without a reset in between, then one reset."""
        self._held = True
        try:
            yield
        finally:
            self._held = False
            self.reset()

    def _file(self, label: str) -> Path:
        """A new file under files_dir for one action's data (kept for the replay)."""
        return self.files_dir / f"{len(self.history) + 1:03d}-{label}.bin"

    def _esptool(self, args: list[str]) -> None:
        """Log (replayable, WARNING) and run one esptool command; reset afterwards unless held."""
        self.history.append(args)
        logging.warning("esptool (replay): %s", " ".join(shell_command(self.serial.port, args)))
        self._execute([ESPTOOL_NO_RESET if arg == ESPTOOL_AFTER else arg for arg in args])
        if not self._held:
            self.reset()

    def _execute(self, args: list[str]) -> None:
        """esptool.main on pytest-embedded's open connection, its serial redirect paused."""
        import esptool

        with self.serial.disable_redirect_thread(), contextlib.redirect_stdout(io.StringIO()):
            settings = self.serial.proc.get_settings()
            # pyserial's RFC 2217 client renegotiates the line settings on every timeout
            # change (~0.1 s); esptool's commands use DEFAULT_TIMEOUT, so start from it.
            self.serial.proc.timeout = esptool.loader.DEFAULT_TIMEOUT
            self.serial.esp.connect()
            esptool.main(args, esp=self.serial.esp)
            self.serial.proc.apply_settings(settings)

    def reset(self) -> None:
        """Drop what the DUT has buffered (the old app's lines), then pulse EN.

        The pulse is esptool's hard reset on the auto-reset circuit (RTS asserted with DTR
        released pulls EN low) done on the port's lines directly: pytest-embedded's
        ``hard_reset()`` first sends the ROM loader a register write, which a running app
        never answers (3 s lost, and SLIP bytes on the app's console).
        """
        self._drain()
        port = self.serial.proc
        port.dtr = False
        port.rts = True  # EN low: the chip stops
        time.sleep(EN_LOW_S)
        port.rts = False  # EN high, GPIO0 high: it boots from flash

    def flash_build(self, app: Any) -> None:
        """Write every file of the build (bootloader, partition table, ota_data_initial, app)."""
        args = ["--before", ESPTOOL_BEFORE, "--after", ESPTOOL_AFTER, "write-flash"]
        args += list(app.flash_args.get("write_flash_args", []))
        for file in app.flash_files:
            args += [hex(file.offset), str(file.file_path)]
        self._esptool(args)

    def partition(self, name: str) -> PartitionSpan:
        try:
            return self.partitions[name]
        except KeyError:
            raise KeyError(f"no partition {name!r} in the flashed partition table") from None

    def write_partition(self, name: str, data: bytes, offset: int = 0) -> None:
        span = self.partition(name)
        if offset % SECTOR_BYTES:
            raise ValueError("write_partition on hardware needs a 4 KiB-aligned offset")
        if offset + len(data) > span.size:
            raise ValueError(f"{len(data)} bytes at {offset:#x} do not fit partition {name} ({span.size:#x})")
        path = self._file(f"write-{name}-{offset:#x}")
        path.write_bytes(data)
        self._esptool(esptool_write_flash(span.offset + offset, path))

    def read_partition(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        span = self.partition(name)
        length = span.size - offset if length is None else length
        path = self._file(f"read-{name}-{offset:#x}")
        self._esptool(esptool_read_flash(span.offset + offset, length, path))
        return path.read_bytes()

    def corrupt_partition(self, name: str, offset: int, length: int) -> None:
        start, size = sector_span(offset, length)
        original = self.read_partition(name, start, size)
        self.write_partition(name, flip_bytes(original, offset - start, length), start)

    def read_otadata(self) -> list[OtadataView]:
        return parse_otadata(self.read_partition("otadata", 0, 2 * SECTOR_BYTES))

    def erase_partition(self, name: str) -> None:
        span = self.partition(name)
        self._esptool(esptool_erase_region(span.offset, span.size))

    def erase_nvs(self) -> None:
        self.erase_partition("nvs")
