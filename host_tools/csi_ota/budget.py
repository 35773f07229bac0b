"""Size budget: does the app (plus what Secure Boot v2 adds) fit the smallest OTA slot?

The seed promises a 1,310,720-byte (1.25 MB) OTA slot and 250–450 KB of
headroom for an app of 800 KB – 1 MB. The budget reports used / free /
percent against the smallest OTA slot of the partition table, warns above a
fill threshold, and fails above 100 % or above a per-project ceiling. Given a
linker map it adds esp-idf-size's per-archive (component) breakdown.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError
from csi_ota.image_info import ImageInfo, read_image
from csi_ota.partitions import Layout, default_layout, load_table

KIB = 1024
SEED_SLOT_BYTES = 1_310_720
SEED_HEADROOM_MIN_BYTES = 250 * KIB
SEED_HEADROOM_MAX_BYTES = 450 * KIB
DEFAULT_WARN_PERCENT = 80.0

# Secure Boot v2 (esptool elf2image --secure-pad-v2, espsecure sign-data --version 2):
# the image is padded so that it ends on a 64 KB MMU page, then a 4 KB signature
# sector (up to three 1216-byte signature blocks) is appended.
MMU_PAGE_BYTES = 0x10000
SBV2_SIGNATURE_SECTOR_BYTES = 4096
# esptool adds a padding segment (8-byte header) and then needs 16 bytes for the
# aligned checksum and 32 for the SHA-256 before the 64 KB boundary.
SBV2_PAD_SEGMENT_HEADER_BYTES = 8
SBV2_TAIL_BYTES = 16 + 32
# Without the image: its last segment ends 36..48 bytes before the end of the file,
# so padding to (size + 20) is an upper bound.
SBV2_SIZE_ONLY_SLACK_BYTES = 20

STATUS_OK = "ok"
STATUS_WARN = "warn"
STATUS_FAIL = "fail"


@dataclass(frozen=True)
class ComponentSize:
    """One static library (ESP-IDF component archive) from the linker map."""

    archive: str
    name: str
    image_bytes: int  # bytes it puts into the .bin (code, rodata, initialised data)
    flash_code_bytes: int
    flash_data_bytes: int
    ram_bytes: int  # IRAM/DRAM incl. .bss (not all of it is in the .bin)


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | fail
    message: str


@dataclass(frozen=True)
class BudgetReport:
    image: str
    image_bytes: int
    secure_boot_v2: bool
    sbv2_padding_bytes: int
    sbv2_signature_bytes: int
    counted_bytes: int
    slot_name: str
    slot_bytes: int
    ceiling_bytes: int | None
    limit_bytes: int
    free_bytes: int
    used_percent: float
    warn_percent: float
    headroom_bytes: int
    headroom_met: bool
    status: str
    findings: tuple[Finding, ...]
    map_image_bytes: int | None = None
    components: tuple[ComponentSize, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["headroom_target_bytes"] = [SEED_HEADROOM_MIN_BYTES, SEED_HEADROOM_MAX_BYTES]
        return data

    @property
    def summary(self) -> str:
        """The one line the CLI, the build and CI print."""
        over = self.counted_bytes - self.limit_bytes
        where = "project ceiling" if self.limit_bytes != self.slot_bytes else f"{self.slot_name} slot"
        if over > 0:
            return (
                f"{self.image}: {self.counted_bytes:,} bytes is {over:,} bytes over the {self.limit_bytes:,}-byte "
                f"{where} ({self.used_percent:.2f} %)"
            )
        return (
            f"{self.image}: {self.counted_bytes:,} of {self.limit_bytes:,} bytes in the {where} "
            f"({self.used_percent:.2f} %), {self.free_bytes:,} bytes free"
        )


def sbv2_padded_end(segments_end_bytes: int) -> int:
    """Where an image ends after esptool's --secure-pad-v2, given where its last segment's data ends."""
    need = segments_end_bytes + SBV2_PAD_SEGMENT_HEADER_BYTES + SBV2_TAIL_BYTES
    return -(-need // MMU_PAGE_BYTES) * MMU_PAGE_BYTES


def sbv2_overhead(info: ImageInfo | None, size_bytes: int) -> tuple[int, int, str]:
    """(padding, signature sector, note) Secure Boot v2 adds to this image."""
    if info is not None and info.secure_boot_v2_signed:
        return 0, 0, "image already carries a Secure Boot v2 signature sector"
    if (
        info is not None
        and info.segments
        and info.image_end_bytes % MMU_PAGE_BYTES == 0
        and info.segments[-1].load_address == 0
    ):
        return (
            0,
            SBV2_SIGNATURE_SECTOR_BYTES,
            "image already padded to 64 KB (--secure-pad-v2); adds the 4 KB signature",
        )
    if info is not None:
        padding = sbv2_padded_end(info.segments_end_bytes) - info.image_end_bytes
        return padding, SBV2_SIGNATURE_SECTOR_BYTES, "padding to a 64 KB page + 4 KB signature sector"
    padded = -(-(size_bytes + SBV2_SIZE_ONLY_SLACK_BYTES) // MMU_PAGE_BYTES) * MMU_PAGE_BYTES
    return (
        padded - size_bytes,
        SBV2_SIGNATURE_SECTOR_BYTES,
        "upper bound: padding to a 64 KB page + 4 KB signature",
    )


def _component_name(archive: str) -> str:
    base = Path(archive).name
    if base == "(exe)":
        return "(linked objects)"
    if base.startswith("lib") and base.endswith(".a"):
        return base[3:-2]
    return base


def components_from_map(map_path: str | Path) -> tuple[int, tuple[ComponentSize, ...]]:
    """(image bytes, per-archive sizes) from esp-idf-size's memory map of a linker map file."""
    from esp_idf_size import mapfile, memorymap

    path = Path(map_path)
    if not path.is_file():
        raise CsiOtaError(f"linker map {path} does not exist")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            memmap = memorymap.get(str(path), load_symbols=False, use_dwarf=False)
            memorymap.remove_unused(memmap)
            args = {"diff": None, "show_unchanged": False, "sort_diff": False, "sort_reverse": True}
            archives = memorymap.get_archives_summary(memmap, args)
    except (memorymap.MemMapException, mapfile.MapFileException) as exc:
        raise CsiOtaError(f"esp-idf-size cannot read {path}: {exc}") from exc
    except SystemExit as exc:  # esp_idf_size's log.die
        raise CsiOtaError(f"esp-idf-size cannot read {path}: {sink.getvalue().strip() or exc}") from exc

    out = []
    for archive, info in archives.items():
        flash_code = flash_data = ram = image = 0
        for mem_type, mem_info in info["memory_types"].items():
            for section, section_info in mem_info["sections"].items():
                size = int(section_info["size"])
                if not section.endswith((".bss", "noinit")):
                    image += size
                if mem_type == "Flash Code":
                    flash_code += size
                elif mem_type in ("Flash Data", "External RAM"):
                    flash_data += size
                else:
                    ram += size
        out.append(ComponentSize(archive, _component_name(archive), image, flash_code, flash_data, ram))
    out.sort(key=lambda c: (-c.image_bytes, c.name))
    return int(memmap["image_size"]), tuple(out)


def _slot(layout: Layout) -> tuple[str, int]:
    slot = layout.smallest_ota_slot()
    if slot is None:
        where = f" {layout.source}" if layout.source else ""
        raise CsiOtaError(f"partition table{where} has no OTA app slots (app/ota_N) to budget against")
    return slot.name, slot.size


def check_budget(
    image_path: str | Path | None = None,
    *,
    size_bytes: int | None = None,
    partitions: str | Path | None = None,
    warn_percent: float = DEFAULT_WARN_PERCENT,
    ceiling_bytes: int | None = None,
    secure_boot_v2: bool = False,
    map_path: str | Path | None = None,
) -> BudgetReport:
    """Measure an image (or a planned size) against the budget. Never raises for an over-budget image:
    the report's ``status`` says ``fail``; :func:`enforce` turns that into exit code 1."""
    if (image_path is None) == (size_bytes is None):
        raise CsiOtaError("give an image file or --size-bytes, not both and not neither")
    if not 0 < warn_percent <= 100:
        raise CsiOtaError(f"--warn-percent must be in (0, 100], got {warn_percent:g}")
    if ceiling_bytes is not None and ceiling_bytes <= 0:
        raise CsiOtaError(f"--ceiling-bytes must be positive, got {ceiling_bytes}")
    if size_bytes is not None and size_bytes <= 0:
        raise CsiOtaError(f"--size-bytes must be positive, got {size_bytes}")

    layout = load_table(partitions) if partitions is not None else default_layout()
    slot_name, slot_bytes = _slot(layout)
    map_result = components_from_map(map_path) if map_path is not None else None

    info: ImageInfo | None = None
    if image_path is not None:
        data, info = read_image(image_path)
        image_bytes = len(data)
        label = str(image_path)
    else:
        assert size_bytes is not None
        image_bytes = size_bytes
        label = f"planned image of {size_bytes:,} bytes"

    findings: list[Finding] = []
    if info is not None:
        findings += [Finding(STATUS_WARN, f"image: {p}") for p in info.problems]
    padding = signature = 0
    if secure_boot_v2 or (info is not None and info.secure_boot_v2_signed):
        padding, signature, note = sbv2_overhead(info, image_bytes)
        findings.append(Finding(STATUS_OK, f"Secure Boot v2: {note} (+{padding + signature:,} bytes)"))
    counted = image_bytes + padding + signature

    limit = min(slot_bytes, ceiling_bytes) if ceiling_bytes is not None else slot_bytes
    used_percent = counted * 100.0 / limit
    headroom = slot_bytes - counted
    headroom_met = headroom >= SEED_HEADROOM_MIN_BYTES

    if counted > slot_bytes:
        findings.append(
            Finding(
                STATUS_FAIL,
                f"does not fit: {counted - slot_bytes:,} bytes over the {slot_bytes:,}-byte {slot_name} slot",
            )
        )
    if ceiling_bytes is not None and counted > ceiling_bytes:
        findings.append(
            Finding(
                STATUS_FAIL,
                f"over the project ceiling of {ceiling_bytes:,} bytes by {counted - ceiling_bytes:,}",
            )
        )
    if used_percent > warn_percent and counted <= limit:
        findings.append(
            Finding(STATUS_WARN, f"{used_percent:.2f} % used, above the {warn_percent:g} % warning level")
        )
    kb = headroom / KIB
    if headroom_met:
        findings.append(
            Finding(STATUS_OK, f"headroom {kb:,.0f} KB: meets the 250-450 KB target for future features")
        )
    else:
        findings.append(
            Finding(
                STATUS_WARN,
                f"headroom {kb:,.0f} KB: below the 250-450 KB target for future features",
            )
        )

    levels = {f.level for f in findings}
    status = STATUS_FAIL if STATUS_FAIL in levels else STATUS_WARN if STATUS_WARN in levels else STATUS_OK
    return BudgetReport(
        image=label,
        image_bytes=image_bytes,
        secure_boot_v2=bool(signature or (info is not None and info.secure_boot_v2_signed)),
        sbv2_padding_bytes=padding,
        sbv2_signature_bytes=signature,
        counted_bytes=counted,
        slot_name=slot_name,
        slot_bytes=slot_bytes,
        ceiling_bytes=ceiling_bytes,
        limit_bytes=limit,
        free_bytes=limit - counted,
        used_percent=round(used_percent, 4),
        warn_percent=warn_percent,
        headroom_bytes=headroom,
        headroom_met=headroom_met,
        status=status,
        findings=tuple(findings),
        map_image_bytes=map_result[0] if map_result else None,
        components=map_result[1] if map_result else (),
    )


def enforce(report: BudgetReport) -> None:
    """Raise CsiOtaError (exit 1) with the summary when the report failed."""
    if report.status == STATUS_FAIL:
        raise CsiOtaError(f"over budget: {report.summary}", exit_code=EXIT_OPERATION_FAILED)
