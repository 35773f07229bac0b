"""Differential test: the C bootloader model against the Python reference, on random otadata states.

firmware/sim/flash/src/sim_bootloader.c and host_tools/csi_ota/sim/bootmodel.py
are two independent readings of ESP-IDF's bootloader_utility.c. The C side runs
through firmware/sim/flash/tools/sim_boot_probe (built here with CMake) on real
flash files holding real app images; both must pick the same slot, fall back the
same way and leave the same otadata bytes behind.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.sim import bootmodel, flashfile

REPO = Path(__file__).resolve().parents[1]
FLASH_SOURCES = REPO / "firmware" / "sim" / "flash"
SEED = 20261128
STATES_PER_LAYOUT = 400
NOT_BOOTED = -100
SEQS = (0, 1, 2, 3, 4, 5, 6, 7, 100, 0x7FFFFFFF, 0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF)
STATES = (0, 1, 2, 3, 4, 0xFFFFFFFF, 0x77)
# Which slots hold a good image in each flash file (False: corrupted or erased).
SLOT_IMAGES = {
    "good-good": (True, True),
    "good-bad": (True, False),
    "bad-good": (False, True),
    "bad-erased": (False, False),
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("sim-boot-probe")
    for command in (
        [
            "cmake",
            "-S",
            str(FLASH_SOURCES),
            "-B",
            str(build),
            "-DSIM_FLASH_SKIP_TESTS=ON",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        ["cmake", "--build", str(build), "--target", "sim_boot_probe", "-j2"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return build / "sim_boot_probe"


def _flash_for(tmp_path: Path, name: str) -> Path:
    good = SLOT_IMAGES[name]
    images = {0: build_app_image(ImageSpec("1.0.0", target_size_bytes=70_000))}
    if name != "bad-erased":
        images[1] = build_app_image(ImageSpec("2.0.0", target_size_bytes=70_000))
    path = flashfile.create_flash_file(tmp_path / f"{name}.bin", images=images)
    for slot in (0, 1):
        if not good[slot] and slot in images:
            flashfile.corrupt_partition(path, f"ota_{slot}", 40_000, 1)
    return path


def _random_entry(rng: random.Random, index: int) -> flashfile.OtadataEntry:
    if rng.randrange(7) == 0:
        return flashfile.unpack_otadata_entry(index, b"\xff" * 32)
    seq = rng.getrandbits(32) if rng.randrange(9) == 0 else rng.choice(SEQS)
    entry = flashfile.make_otadata_entry(index, seq, rng.choice(STATES))
    if rng.randrange(6) == 0:
        entry = flashfile.make_otadata_entry(
            index, seq, entry.state, crc=entry.crc ^ (1 << rng.randrange(32))
        )
    return entry


def _expected(entries: list[flashfile.OtadataEntry], rollback: bool, good: tuple[bool, bool]) -> list[int]:
    selection = bootmodel.select(entries, 2, factory_present=False, rollback_enabled=rollback)
    order = bootmodel.boot_order(selection.start_index, 2, factory_present=False)
    booted = next((index for index in order if index >= 0 and good[index]), None)
    after = list(selection.entries)
    if booted is not None and selection.initial_write:
        after[0] = flashfile.make_otadata_entry(0, booted + 1, "valid")
    head = [selection.start_index, booted] if booted is not None else [NOT_BOOTED, NOT_BOOTED]
    return head + [value for e in after for value in (e.seq, e.state, e.crc)]


@pytest.mark.parametrize("layout", list(SLOT_IMAGES))
def test_c_model_matches_python_reference(probe: Path, tmp_path: Path, layout: str) -> None:
    flash = _flash_for(tmp_path, layout)
    rng = random.Random(f"{SEED}-{layout}")
    cases = []
    for _ in range(STATES_PER_LAYOUT):
        entries = [_random_entry(rng, 0), _random_entry(rng, 1)]
        cases.append((entries, rng.randrange(4) != 0))
    stdin = "".join(
        f"{e[0].seq} {e[0].state} {e[0].crc} {e[1].seq} {e[1].state} {e[1].crc} {int(rollback)}\n"
        for e, rollback in cases
    )
    done = subprocess.run(
        [str(probe), str(flash)], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(cases)
    fallbacks = 0
    for number, ((entries, rollback), line) in enumerate(zip(cases, lines, strict=True)):
        actual = [int(v) for v in line.split()]
        expected = _expected(entries, rollback, SLOT_IMAGES[layout])
        assert actual == expected, f"{layout} state {number}: {entries} rollback={rollback}"
        fallbacks += actual[0] != actual[1]
    if layout in ("good-bad", "bad-good"):
        assert fallbacks > 0  # the generator reaches the fallback path
