"""csi-ota image info / image build: esptool's classes read the images, esptool image-info accepts them."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import esptool
import pytest
from click.testing import CliRunner

from csi_ota.cli import main
from csi_ota.image_info import inspect_image
from csi_ota.imagegen import ImageSpec, build_app_image, load_image


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


def esptool_image_info(data: bytes) -> str:
    """esptool's own `image-info` (Python API), its printed report."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        esptool.image_info(data, chip="esp32s3")
    return sink.getvalue()


@pytest.fixture(scope="module")
def image_v1() -> bytes:
    return build_app_image(
        ImageSpec(version="1.4.2", secure_version=3, target_size_bytes=150_000, max_rev_full=199)
    )


def test_info_json_reports_header_segments_digest_and_app_desc(tmp_path: Path, image_v1: bytes):
    path = tmp_path / "app.bin"
    path.write_bytes(image_v1)
    code, out, err = run_cli("image", "info", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    esp = load_image(image_v1)  # esptool's reading, independent of csi-ota's
    assert info["size_bytes"] == len(image_v1) == 150_000
    assert info["file_sha256"] == hashlib.sha256(image_v1).hexdigest()
    assert (info["chip_id"], info["chip_name"]) == (9, "ESP32-S3")
    assert (info["min_chip_rev_full"], info["max_chip_rev_full"]) == (0, 199)
    assert [s["load_address"] for s in info["segments"]] == [s.addr for s in esp.segments]
    assert [s["length_bytes"] for s in info["segments"]] == [len(s.data) for s in esp.segments]
    assert info["checksum_valid"] and info["sha256_valid"]
    assert info["sha256_stored"] == image_v1[-32:].hex()
    assert info["sha256_stored"] == hashlib.sha256(image_v1[:-32]).hexdigest()
    desc = info["app_desc"]
    assert (desc["version"], desc["project_name"], desc["secure_version"]) == ("1.4.2", "csi_sensor", 3)
    assert desc["app_elf_sha256"] == hashlib.sha256(b"csi_sensor/1.4.2").hexdigest()
    assert info["problems"] == []


def test_info_table_output(tmp_path: Path, image_v1: bytes):
    path = tmp_path / "app.bin"
    path.write_bytes(image_v1)
    code, out, _ = run_cli("image", "info", path)
    assert code == 0
    for text in ("ESP32-S3 (chip id 9)", "1.4.2", "csi_sensor", "valid", "Segments", "IROM", "DROM"):
        assert text in out


def test_esptool_image_info_accepts_generated_images(image_v1: bytes):
    for data in (
        image_v1,
        build_app_image(ImageSpec(version="2.0.0", behaviour="crash_at_boot", target_size_bytes=1_310_720)),
        build_app_image(ImageSpec(version="2.0.1", behaviour="fail_selftest")),
    ):
        report = esptool_image_info(data)
        assert "Checksum:" in report and "(valid)" in report
        assert "Validation hash:" in report and report.count("(valid)") == 2
        assert "App version: " + inspect_image(data).app_desc.version in report


def test_esptool_command_line_accepts_built_image(tmp_path: Path):
    path = tmp_path / "v3.bin"
    assert run_cli("image", "build", "--version", "3.0.0", "--out", path)[0] == 0
    done = subprocess.run(
        [sys.executable, "-m", "esptool", "--chip", "esp32s3", "image-info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "App version: 3.0.0" in done.stdout
    assert "Checksum: " in done.stdout and "invalid" not in done.stdout


def test_build_options(tmp_path: Path):
    path = tmp_path / "qa.bin"
    code, out, err = run_cli(
        "image",
        "build",
        "--version",
        "1.2.3",
        "--behaviour",
        "fail_selftest",
        "--size",
        "400000",
        "--secure-version",
        "2",
        "--chip-id",
        "9",
        "--project",
        "csi_lab",
        "--out",
        path,
    )
    assert code == 0, err
    data = path.read_bytes()
    assert len(data) == 400_000
    assert b"CSI_SIM_BEHAVIOUR:fail_selftest\x00" in data
    info = inspect_image(data)
    assert info.app_desc.project_name == "csi_lab" and info.app_desc.secure_version == 2


def test_build_reports_rounded_size_and_json(tmp_path: Path):
    path = tmp_path / "odd.bin"
    code, out, _ = run_cli("image", "build", "--version", "1.0.0", "--size", "100001", "--out", path)
    assert code == 0
    assert "asked for 100,001" in " ".join(out.split()) and path.stat().st_size == 100_000
    code, out, _ = run_cli("image", "build", "--version", "1.0.0", "--out", path, "--json")
    assert code == 0 and json.loads(out)["app_desc"]["version"] == "1.0.0"


def test_build_bad_input_writes_nothing(tmp_path: Path):
    path = tmp_path / "bad.bin"
    code, _, err = run_cli("image", "build", "--version", "v" * 40, "--out", path)
    assert code == 2 and "shorter than 32 bytes" in err
    assert not path.exists()
    code, _, err = run_cli("image", "build", "--version", "1.0.0", "--out", tmp_path / "no" / "x.bin")
    assert code == 2 and "does not exist" in err
    code, _, _ = run_cli("image", "build", "--version", "1.0.0", "--behaviour", "explode", "--out", path)
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_flipped_byte_is_reported_and_strict_fails(tmp_path: Path, image_v1: bytes):
    damaged = bytearray(image_v1)
    damaged[len(damaged) // 2] ^= 0x40  # inside the IROM segment
    path = tmp_path / "flipped.bin"
    path.write_bytes(damaged)
    info = inspect_image(bytes(damaged))
    assert not info.checksum_valid and not info.sha256_valid
    code, out, _ = run_cli("image", "info", path)
    assert code == 0 and "INVALID" in out
    code, _, err = run_cli("image", "info", path, "--strict")
    assert code == 1
    assert "checksum" in err and "SHA-256 does not match" in err


def test_wrong_chip_is_a_problem(tmp_path: Path):
    path = tmp_path / "c3.bin"
    assert run_cli("image", "build", "--version", "1.0.0", "--chip-id", "5", "--out", path)[0] == 0
    assert "Chip ID: 5 (ESP32-C3)" in esptool_image_info(path.read_bytes())
    code, out, _ = run_cli("image", "info", path, "--json")
    info = json.loads(out)
    assert info["chip_name"] == "ESP32-C3"
    assert info["sha256_valid"] and info["checksum_valid"]
    assert any("not ESP32-S3" in p for p in info["problems"])
    assert run_cli("image", "info", path, "--strict")[0] == 1


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (0, "is empty"),
        (12, "truncated image"),
        (300, "End of file reading segment"),
        (-40, "truncated image"),
    ],
)
def test_truncated_images_exit_2_with_esptools_reason(
    tmp_path: Path, image_v1: bytes, cut: int, message: str
):
    path = tmp_path / "cut.bin"
    path.write_bytes(image_v1[:cut])
    code, out, err = run_cli("image", "info", path)
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


def test_not_an_image(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    code, _, err = run_cli("image", "info", path)
    assert code == 2 and "not an ESP app image: first byte is 0x68" in err
    code, _, err = run_cli("image", "info", tmp_path / "missing.bin")
    assert code == 2 and "cannot read image" in err


def test_trailing_bytes_counted(image_v1: bytes):
    info = inspect_image(image_v1 + b"\xff" * 100)
    assert info.trailing_bytes == 100 and info.image_end_bytes == len(image_v1)
    assert info.sha256_valid
