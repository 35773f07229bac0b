"""Flash files of the virtual ESP32-S3 (csi_ota.sim.flashfile) and `csi-ota sim …`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from csi_ota.cli import cli, main
from csi_ota.errors import CsiOtaError
from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.partitions import Layout, PartitionEntry, load_layout
from csi_ota.sim import bootmodel, flashfile

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {
        "v1": build_app_image(ImageSpec("1.0.0", target_size_bytes=70_000)),
        "v2": build_app_image(ImageSpec("2.0.0", target_size_bytes=70_000)),
    }


@pytest.fixture
def flash(tmp_path: Path, images: dict[str, bytes]) -> Path:
    return flashfile.create_flash_file(
        tmp_path / "flash.bin", images={0: images["v1"], "ota_1": images["v2"]}
    )


def test_otadata_crc_vectors() -> None:
    # Rule 18 of esp-idf-otadata-behaviour.md, and rule 3: seq 0 has crc 0xFFFFFFFF.
    assert flashfile.otadata_crc(1) == 0x4743989A
    assert flashfile.otadata_crc(2) == 0x55F63774
    assert flashfile.otadata_crc(0) == 0xFFFFFFFF


def test_create_flash_file_layout_images_and_erased_otadata(flash: Path, images: dict[str, bytes]) -> None:
    data = flash.read_bytes()
    assert len(data) == 4 * MIB
    layout = load_layout("4MB")
    assert data[0x8000 : 0x8000 + 0xC00] == layout.to_binary()
    ota0, ota1 = layout.find("ota_0"), layout.find("ota_1")
    assert data[ota0.offset : ota0.offset + len(images["v1"])] == images["v1"]
    assert data[ota1.offset : ota1.offset + len(images["v2"])] == images["v2"]
    assert set(data[ota0.offset + len(images["v1"]) : ota0.end]) == {0xFF}
    assert data[:0x8000] == b"\xff" * 0x8000
    entries = flashfile.read_otadata(flash)
    assert [e.erased for e in entries] == [True, True]
    assert not any(e.usable for e in entries)
    assert flashfile.read_partition(flash, "ota_1")[: len(images["v2"])] == images["v2"]


def test_create_with_otadata_and_nvs(tmp_path: Path, images: dict[str, bytes]) -> None:
    nvs = bytes(range(256)) * 16
    path = flashfile.create_flash_file(
        tmp_path / "f.bin",
        flash_size_bytes=8 * MIB,
        images={0: images["v1"]},
        nvs=nvs,
        otadata=((1, "valid"), (2, "new")),
    )
    assert path.stat().st_size == 8 * MIB
    e0, e1 = flashfile.read_otadata(path)
    assert (e0.seq, e0.state_name, e0.crc_ok, e0.slot(2)) == (1, "valid", True, 0)
    assert (e1.seq, e1.state_name, e1.crc_ok, e1.slot(2)) == (2, "new", True, 1)
    assert flashfile.read_partition(path, "nvs")[: len(nvs)] == nvs
    assert bootmodel.active_entry([e0, e1]) == 1


def test_create_refuses_bad_input_and_writes_nothing(tmp_path: Path, images: dict[str, bytes]) -> None:
    out = tmp_path / "f.bin"
    with pytest.raises(CsiOtaError, match="4, 8 or 16 MiB"):
        flashfile.create_flash_file(out, flash_size_bytes=3 * MIB)
    with pytest.raises(CsiOtaError, match="no ota_7 slot"):
        flashfile.create_flash_file(out, images={7: images["v1"]})
    with pytest.raises(CsiOtaError, match="the partition holds"):
        flashfile.create_flash_file(out, images={"phy_init": images["v1"]})
    with pytest.raises(CsiOtaError, match="no partition 'nope'"):
        flashfile.create_flash_file(out, images={"nope": b"x"})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp files left behind


def test_otadata_entry_predicates() -> None:
    seq0 = flashfile.unpack_otadata_entry(0, b"\x00\x00\x00\x00" + b"\xff" * 28)
    assert seq0.crc_ok and seq0.usable
    assert seq0.slot(2) == 1 and seq0.slot(3) == 0  # (0 - 1) mod n in uint32
    aborted = flashfile.make_otadata_entry(1, 5, "aborted")
    assert aborted.crc_ok and not aborted.usable
    bad = flashfile.make_otadata_entry(1, 5, "valid", crc=0x1234)
    assert not bad.crc_ok and not bad.usable
    odd = flashfile.make_otadata_entry(0, 5, 0x77)
    assert odd.usable and odd.state_name == "unknown(0x77)"
    with pytest.raises(CsiOtaError, match="unknown otadata state"):
        flashfile.parse_state("sleepy")
    with pytest.raises(CsiOtaError, match="index must be 0 or 1"):
        flashfile.make_otadata_entry(2, 1, "valid")


def test_write_otadata_entry_erases_its_sector(flash: Path) -> None:
    flashfile.write_otadata_entry(flash, flashfile.make_otadata_entry(1, 2, "pending_verify"))
    e0, e1 = flashfile.read_otadata(flash)
    assert e0.erased
    assert (e1.seq, e1.state_name, e1.crc_ok) == (2, "pending_verify", True)
    otadata = flashfile.read_layout(flash).find("otadata")
    sector1 = flash.read_bytes()[otadata.offset + 4096 : otadata.offset + 8192]
    assert set(sector1[32:]) == {0xFF}


def test_partition_edits(flash: Path, images: dict[str, bytes]) -> None:
    before = flashfile.read_partition(flash, "ota_0")
    flashfile.corrupt_partition(flash, "ota_0", 0x100, 4)
    after = flashfile.read_partition(flash, "ota_0")
    assert [a ^ b for a, b in zip(before[0x100:0x104], after[0x100:0x104], strict=True)] == [0xFF] * 4
    assert before[:0x100] == after[:0x100] and before[0x104:] == after[0x104:]
    flashfile.write_partition(flash, "spiffs", b"hello", offset=8)
    assert flashfile.read_partition(flash, "spiffs")[:16] == b"\xff" * 8 + b"hello" + b"\xff" * 3
    flashfile.erase_partition(flash, "ota_1")
    assert set(flashfile.read_partition(flash, "ota_1")) == {0xFF}
    assert flashfile.read_partition(flash, "ota_0")[0] == 0xE9


def test_partition_edit_errors_leave_file_unchanged(flash: Path) -> None:
    original = flash.read_bytes()
    size = flashfile.read_layout(flash).find("ota_0").size
    with pytest.raises(CsiOtaError, match="outside partition 'ota_0'"):
        flashfile.corrupt_partition(flash, "ota_0", size - 2, 4)
    with pytest.raises(CsiOtaError, match="no partition 'ota_9'"):
        flashfile.erase_partition(flash, "ota_9")
    with pytest.raises(CsiOtaError, match="length must be positive"):
        flashfile.corrupt_partition(flash, "ota_0", 0, 0)
    assert flash.read_bytes() == original


def test_not_a_flash_file(tmp_path: Path) -> None:
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\xff" * 1000)
    with pytest.raises(CsiOtaError, match="4, 8 or 16 MiB"):
        flashfile.read_otadata(odd)
    with pytest.raises(CsiOtaError, match="no such flash file"):
        flashfile.read_otadata(tmp_path / "missing.bin")
    blank = tmp_path / "blank.bin"
    blank.write_bytes(b"\xff" * (4 * MIB))  # no partition table
    with pytest.raises(CsiOtaError):
        flashfile.read_otadata(blank)


def test_custom_layout_with_factory(tmp_path: Path, images: dict[str, bytes]) -> None:
    layout = Layout(
        (
            PartitionEntry("otadata", 1, 0, 0xD000, 0x2000),
            PartitionEntry("factory", 0, 0x00, 0x10000, 0x100000),
            PartitionEntry("ota_0", 0, 0x10, 0x110000, 0x100000),
            PartitionEntry("ota_1", 0, 0x11, 0x210000, 0x100000),
        ),
        flash_size_bytes=4 * MIB,
    )
    path = flashfile.create_flash_file(tmp_path / "f.bin", layout=layout, images={"factory": images["v1"]})
    assert flashfile.read_partition(path, "factory")[: len(images["v1"])] == images["v1"]
    selection = bootmodel.select(flashfile.read_otadata(path), 2, factory_present=True)
    assert selection.start_index == bootmodel.FACTORY_INDEX


# ---------------------------------------------------------------------------- CLI


def test_cli_create_and_show_otadata(tmp_path: Path, images: dict[str, bytes]) -> None:
    v1, v2 = tmp_path / "v1.bin", tmp_path / "v2.bin"
    v1.write_bytes(images["v1"])
    v2.write_bytes(images["v2"])
    out = tmp_path / "flash.bin"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "sim",
            "create-flash",
            str(out),
            "--image",
            f"ota_0={v1}",
            "--image",
            f"1={v2}",
            "--otadata",
            "0:1:valid",
            "--otadata",
            "1:2:new",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["images"] == {"ota_0": len(images["v1"]), "1": len(images["v2"])}
    result = runner.invoke(cli, ["sim", "otadata", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [e["state"] for e in report["entries"]] == ["valid", "new"]
    assert [e["slot"] for e in report["entries"]] == [0, 1]
    assert report["active_entry"] == 1
    assert report["next_boot_starts_at"] == "ota_1"
    assert report["next_boot_rewrites"] == [1]  # NEW → PENDING_VERIFY
    result = runner.invoke(cli, ["sim", "otadata", str(out)])
    assert result.exit_code == 0
    assert "next boot starts at ota_1" in result.output


def test_cli_set_otadata_corrupt_and_erase(flash: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["sim", "set-otadata", str(flash), "--index", "0", "--seq", "0x3", "--state", "valid", "--bad-crc"],
    )
    assert result.exit_code == 0, result.output
    e0 = flashfile.read_otadata(flash)[0]
    assert e0.seq == 3 and not e0.crc_ok
    result = runner.invoke(cli, ["sim", "otadata", str(flash)])
    assert "BAD" in result.output
    before = flashfile.read_partition(flash, "ota_1")
    result = runner.invoke(
        cli, ["sim", "corrupt-partition", str(flash), "ota_1", "--offset", "0x20", "--length", "2"]
    )
    assert result.exit_code == 0, result.output
    after = flashfile.read_partition(flash, "ota_1")
    assert after[0x20] == before[0x20] ^ 0xFF and after[0x21] == before[0x21] ^ 0xFF
    result = runner.invoke(cli, ["sim", "erase-partition", str(flash), "ota_1"])
    assert result.exit_code == 0
    assert set(flashfile.read_partition(flash, "ota_1")) == {0xFF}


def test_cli_errors_exit_2_and_change_nothing(
    flash: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = flash.read_bytes()
    assert main(["sim", "corrupt-partition", str(flash), "ota_9"]) == 2
    assert "no partition 'ota_9'" in capsys.readouterr().err
    assert main(["sim", "corrupt-partition", str(flash), "ota_0", "--offset", "0x140000"]) == 2
    assert "outside partition" in capsys.readouterr().err
    assert main(["sim", "corrupt-partition", str(flash), "ota_0", "--offset", "zz"]) == 2
    assert (
        main(["sim", "set-otadata", str(flash), "--index", "0", "--seq", "0x100000000", "--state", "valid"])
        == 2
    )
    assert main(["sim", "set-otadata", str(flash), "--index", "0", "--seq", "1", "--state", "sleepy"]) == 2
    assert flash.read_bytes() == original
    out = tmp_path / "new.bin"
    assert main(["sim", "create-flash", str(out), "--image", "ota_0=/nonexistent.bin"]) == 2
    assert main(["sim", "create-flash", str(out), "--image", "ota_0"]) == 2
    assert main(["sim", "create-flash", str(out), "--flash-size", "2MB"]) == 2
    assert main(["sim", "create-flash", str(out), "--otadata", "3:1:valid"]) == 2
    assert not out.exists()
