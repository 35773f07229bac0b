"""csi-ota budget: pass / warn / fail around 1,310,720 bytes, ceilings, Secure Boot v2, map breakdown, CI script."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import espsecure
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from esptool.bin_image import ELFSection, ESP32S3FirmwareImage

from csi_ota.budget import SEED_SLOT_BYTES, check_budget
from csi_ota.cli import main
from csi_ota.image_info import inspect_image
from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.partitions import default_layout

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
MAP = DATA / "budget_csi_sensor.map"


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


def budget_json(*args: object) -> tuple[int, dict]:
    code, out, err = run_cli("budget", *args, "--json")
    assert out, err
    return code, json.loads(out)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    exact = build_app_image(ImageSpec(version="1.0.0", target_size_bytes=SEED_SLOT_BYTES))
    assert len(exact) == SEED_SLOT_BYTES
    paths = {
        "small": build_app_image(ImageSpec(version="1.0.0", target_size_bytes=900_000)),
        "exact": exact,
        "plus_one": exact + b"\xff",  # one byte more than the slot holds
        "next_real": build_app_image(ImageSpec(version="1.0.0", target_size_bytes=SEED_SLOT_BYTES + 16)),
    }
    out = {}
    for name, data in paths.items():
        out[name] = folder / f"{name}.bin"
        out[name].write_bytes(data)
    return out


# --- pass / warn / fail at the slot size ---------------------------------------------------------


def test_small_image_passes_with_headroom(images: dict[str, Path]):
    code, report = budget_json(images["small"])
    assert code == 0
    assert report["status"] == "ok"
    assert (report["slot_name"], report["slot_bytes"]) == ("ota_0", 1_310_720)
    assert report["free_bytes"] == 1_310_720 - 900_000
    assert report["used_percent"] == pytest.approx(900_000 * 100 / 1_310_720, abs=1e-3)
    assert report["headroom_met"] is True
    assert report["headroom_target_bytes"] == [250 * 1024, 450 * 1024]


def test_exactly_the_slot_size_fits_with_a_warning(images: dict[str, Path]):
    code, report = budget_json(images["exact"])
    assert code == 0
    assert report["status"] == "warn"
    assert report["free_bytes"] == 0 and report["used_percent"] == 100.0
    assert report["headroom_met"] is False


def test_one_byte_below_the_slot_warns():
    code, report = budget_json("--size-bytes", SEED_SLOT_BYTES - 1)
    assert code == 0
    assert report["status"] == "warn"
    assert report["free_bytes"] == 1
    assert any("above the 80 % warning level" in f["message"] for f in report["findings"])


@pytest.mark.parametrize("name", ["plus_one", "next_real"])
def test_over_the_slot_fails_with_exit_1(images: dict[str, Path], name: str):
    code, out, err = run_cli("budget", images[name])
    assert code == 1
    over = images[name].stat().st_size - SEED_SLOT_BYTES
    assert f"{over:,} bytes over the 1,310,720-byte ota_0 slot" in err
    assert "budget FAIL" in out


def test_one_byte_over_as_a_planned_size_fails():
    code, report = budget_json("--size-bytes", SEED_SLOT_BYTES + 1)
    assert code == 1
    assert report["status"] == "fail" and report["free_bytes"] == -1


def test_warn_threshold_is_configurable(images: dict[str, Path]):
    assert budget_json(images["small"], "--warn-percent", 60)[1]["status"] == "warn"
    assert budget_json(images["small"], "--warn-percent", 95)[1]["status"] == "ok"
    for bad in ("0", "100.5", "-3"):
        code, _, err = run_cli("budget", images["small"], "--warn-percent", bad)
        assert code == 2 and "--warn-percent must be in (0, 100]" in err


def test_project_ceiling(images: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    code, out, err = run_cli("budget", images["small"], "--ceiling-bytes", 899_999)
    assert code == 1
    assert "1 bytes over the 899,999-byte project ceiling" in err
    code, report = budget_json(images["small"], "--ceiling-bytes", 1_000_000)
    assert code == 0 and report["limit_bytes"] == 1_000_000 and report["free_bytes"] == 100_000
    monkeypatch.setenv("CSI_OTA_BUDGET_CEILING_BYTES", "800000")
    assert run_cli("budget", images["small"])[0] == 1


def test_slot_comes_from_the_partition_table(tmp_path: Path, images: dict[str, Path]):
    table = tmp_path / "small_slots.csv"
    table.write_text(
        "nvs,data,nvs,0x9000,0x6000\notadata,data,ota,0xf000,0x2000\n"
        "ota_0,app,ota_0,0x20000,0x100000\nota_1,app,ota_1,0x120000,0xd0000\n"
    )
    code, report = budget_json(images["small"], "--partitions", table)
    assert code == 1
    assert (report["slot_name"], report["slot_bytes"]) == ("ota_1", 0xD0000)
    binary = tmp_path / "default.bin"
    binary.write_bytes(default_layout().to_binary())
    assert budget_json(images["small"], "--partitions", binary)[1]["slot_bytes"] == SEED_SLOT_BYTES
    no_ota = tmp_path / "single.csv"
    no_ota.write_text("nvs,data,nvs,0x9000,0x6000\nfactory,app,factory,0x10000,1M\n")
    code, _, err = run_cli("budget", images["small"], "--partitions", no_ota)
    assert code == 2 and "no OTA app slots" in err


def test_bad_input(tmp_path: Path, images: dict[str, Path]):
    assert run_cli("budget")[0] == 2
    code, _, err = run_cli("budget", images["small"], "--size-bytes", 5)
    assert code == 2 and "not both" in err
    code, _, err = run_cli("budget", "--size-bytes", 0)
    assert code == 2 and "must be positive" in err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    code, _, err = run_cli("budget", junk)
    assert code == 2 and "not an ESP app image" in err


def test_table_output(images: dict[str, Path]):
    code, out, _ = run_cli("budget", images["small"])
    assert code == 0
    flat = " ".join(out.split())
    assert "Smallest OTA slot (ota_0) 1,310,720" in flat
    assert "meets the 250-450 KB target" in flat
    assert "budget OK" in flat


# --- linker map breakdown (esp-idf-size) ----------------------------------------------------------


def test_map_breakdown_matches_esp_idf_size(images: dict[str, Path]):
    code, report = budget_json(images["small"], "--map", MAP)
    assert code == 0
    done = subprocess.run(
        [sys.executable, "-m", "esp_idf_size", "--format", "json2", "--archives", str(MAP)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reference = json.loads(done.stdout)
    components = {c["archive"]: c for c in report["components"]}
    assert set(components) == set(reference)
    for archive, ref in reference.items():
        flash_code = ref["memory_types"].get("Flash Code", {}).get("size", 0)
        assert components[archive]["flash_code_bytes"] == flash_code
    net = next(c for c in report["components"] if c["name"] == "net80211")
    # 0x1e000 .flash.text + 0x5600 .flash.rodata + 0x2c40 IRAM + 0xa40 .data (its 0x2a00 .bss is not in the image)
    assert net["image_bytes"] == 0x1E000 + 0x5600 + 0x2C40 + 0xA40
    assert report["components"][0]["name"] == "net80211"  # largest first
    assert report["map_image_bytes"] == 864_723


def test_map_table_and_bad_map(tmp_path: Path, images: dict[str, Path]):
    code, out, _ = run_cli("budget", images["small"], "--map", MAP)
    assert (
        code == 0
        and "libmbedcrypto.a" in out
        and "linker map total image size: 864,723" in " ".join(out.split())
    )
    bad = tmp_path / "bad.map"
    bad.write_text("this is not a linker map\n")
    code, _, err = run_cli("budget", images["small"], "--map", bad)
    assert code == 2 and "esp-idf-size cannot read" in err
    code, _, err = run_cli("budget", images["small"], "--map", tmp_path / "none.map")
    assert code == 2 and "does not exist" in err


# --- Secure Boot v2: padding and signature sector, checked against esptool + espsecure ------------


def _secure_pad(data: bytes) -> bytes:
    """What `esptool elf2image --secure-pad-v2` makes of this image's segments."""
    image = ESP32S3FirmwareImage(io.BytesIO(data))
    image.segments = [
        ELFSection(f".s{i}".encode(), s.addr, s.data, flags=0) for i, s in enumerate(image.segments) if s.addr
    ]
    image.secure_pad = "2"
    padded = image.save(None)
    assert padded is not None
    return padded


@pytest.fixture(scope="module")
def sbv2_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sbv2") / "key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _espsecure_sign(padded: Path, key: Path, out: Path) -> bytes:
    with contextlib.redirect_stdout(io.StringIO()), open(key, "rb") as k, open(padded, "rb") as f:
        espsecure.sign_data("2", [k], str(out), False, False, None, None, None, f)
    return out.read_bytes()


@pytest.mark.parametrize("size", [100_000, 131_056, 131_072, 1_245_168, SEED_SLOT_BYTES - 64])
def test_secure_boot_v2_overhead_is_exact(tmp_path: Path, sbv2_key: Path, size: int):
    data = build_app_image(ImageSpec(version="1.0.0", target_size_bytes=size))
    unsigned = tmp_path / "app.bin"
    unsigned.write_bytes(data)
    padded = tmp_path / "padded.bin"
    padded.write_bytes(_secure_pad(data))
    signed = _espsecure_sign(padded, sbv2_key, tmp_path / "signed.bin")
    assert len(signed) % 0x10000 == 4096

    report = check_budget(unsigned, secure_boot_v2=True)
    assert report.counted_bytes == len(signed)
    assert report.sbv2_signature_bytes == 4096
    assert report.sbv2_padding_bytes == len(padded.read_bytes()) - size

    # already padded by elf2image: only the sector is added; already signed: nothing is added
    assert check_budget(padded, secure_boot_v2=True).counted_bytes == len(signed)
    assert inspect_image(signed).secure_boot_v2_signed
    signed_path = tmp_path / "signed.bin"
    assert check_budget(signed_path).counted_bytes == len(signed)
    # a planned size is an upper bound
    assert check_budget(size_bytes=size, secure_boot_v2=True).counted_bytes >= len(signed)


def test_secure_boot_v2_can_push_a_fitting_image_over(images: dict[str, Path]):
    assert run_cli("budget", images["exact"])[0] == 0
    code, out, err = run_cli("budget", images["exact"], "--secure-boot-v2")
    assert code == 1
    assert "Secure Boot v2" in " ".join(out.split())


# --- scripts/check_firmware_size.sh, as a CI runner calls it --------------------------------------


def _fake_build(tmp_path: Path, image: Path) -> Path:
    build = tmp_path / "build"
    (build / "partition_table").mkdir(parents=True)
    (build / "csi_sensor.bin").write_bytes(image.read_bytes())
    (build / "csi_sensor.map").write_text(MAP.read_text())
    (build / "partition_table" / "partition-table.bin").write_bytes(default_layout().to_binary())
    (build / "project_description.json").write_text(json.dumps({"app_bin": "csi_sensor.bin"}))
    return build


def _script(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "check_firmware_size.sh"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_check_firmware_size_script(tmp_path: Path, images: dict[str, Path]):
    ok = _script(_fake_build(tmp_path / "a", images["small"]), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["status"] == "ok" and report["components"], report
    over = _script(_fake_build(tmp_path / "b", images["next_real"]))
    assert over.returncode == 1
    assert "over budget" in over.stderr
    missing = _script(tmp_path / "nowhere")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# --- firmware/CMakeLists.txt: the budget runs after every build and fails it when over --------------

# ESP-IDF is not installed on the host test machines; this stand-in for
# $IDF_PATH/tools/cmake/project.cmake provides only what firmware/CMakeLists.txt uses
# (the project() override, idf_build_get_property, and the gen_project_binary /
# partition_table_bin / app targets) and produces the build outputs from test files.
STUB_PROJECT_CMAKE = """
function(idf_build_set_property property value)
    set_property(GLOBAL PROPERTY "STUB_IDF_${property}" "${value}")
endfunction()
function(idf_build_get_property var property)
    get_property(value GLOBAL PROPERTY "STUB_IDF_${property}")
    set(${var} "${value}" PARENT_SCOPE)
endfunction()
macro(project project_name)
    _project(${project_name} NONE)
    file(WRITE "${CMAKE_BINARY_DIR}/sdkconfig_defaults_seen.txt" "${SDKCONFIG_DEFAULTS}")
    get_property(minimal_build GLOBAL PROPERTY STUB_IDF_MINIMAL_BUILD)
    file(WRITE "${CMAKE_BINARY_DIR}/minimal_build_seen.txt" "${minimal_build}")
    set_property(GLOBAL PROPERTY STUB_IDF_BUILD_DIR "${CMAKE_BINARY_DIR}")
    set_property(GLOBAL PROPERTY STUB_IDF_PROJECT_BIN "${project_name}.bin")
    add_custom_target(gen_project_binary
        COMMAND ${CMAKE_COMMAND} -E copy "${STUB_APP_BIN}" "${CMAKE_BINARY_DIR}/${project_name}.bin"
        COMMAND ${CMAKE_COMMAND} -E copy "${STUB_APP_MAP}" "${CMAKE_BINARY_DIR}/${project_name}.map")
    add_custom_target(partition_table_bin
        COMMAND ${CMAKE_COMMAND} -E copy "${STUB_TABLE_BIN}" "${CMAKE_BINARY_DIR}/partition_table/partition-table.bin")
    add_custom_target(app ALL DEPENDS gen_project_binary)
endmacro()
"""


def _csi_ota_executable() -> str | None:
    import shutil

    found = shutil.which("csi-ota")
    beside_python = Path(sys.executable).with_name("csi-ota")
    return found or (str(beside_python) if beside_python.exists() else None)


@pytest.fixture()
def stub_idf(tmp_path: Path) -> Path:
    import shutil

    if shutil.which("cmake") is None or _csi_ota_executable() is None:
        pytest.skip("needs cmake and the csi-ota console script")
    idf = tmp_path / "idf"
    (idf / "tools" / "cmake").mkdir(parents=True)
    (idf / "tools" / "cmake" / "project.cmake").write_text(STUB_PROJECT_CMAKE)
    return idf


def _cmake_build(
    stub_idf: Path,
    build: Path,
    image: Path,
    *defines: str,
    source: Path = REPO / "firmware",
    executable: str | None = "default",
) -> subprocess.CompletedProcess[str]:
    """Configure (asserting it succeeds) and build; returns the build step's result.

    executable: passed as -DCSI_OTA_EXECUTABLE ("default": the csi-ota these tests run; None: not
    passed, so firmware/CMakeLists.txt looks for the repository's .venv)."""
    build.parent.mkdir(parents=True, exist_ok=True)
    table = build.parent / "table.bin"
    table.write_bytes(default_layout().to_binary())
    env = {**os.environ, "IDF_PATH": str(stub_idf), "COLUMNS": "200"}
    env.pop("SDKCONFIG_DEFAULTS", None)
    configure = subprocess.run(
        [
            "cmake",
            "-S",
            str(source),
            "-B",
            str(build),
            *([] if executable is None else [f"-DCSI_OTA_EXECUTABLE={_csi_ota_executable()}"]),
            f"-DSTUB_APP_BIN={image}",
            f"-DSTUB_APP_MAP={MAP}",
            f"-DSTUB_TABLE_BIN={table}",
            *defines,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert configure.returncode == 0, configure.stdout + configure.stderr
    done = subprocess.run(
        ["cmake", "--build", str(build)], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    done.stderr = configure.stderr + done.stderr
    return done


def _checkout_copy(root: Path) -> Path:
    """firmware/CMakeLists.txt in a checkout-like tree under ROOT (nothing else is read by the stub)."""
    firmware = root / "firmware"
    firmware.mkdir(parents=True)
    shutil.copy(REPO / "firmware" / "CMakeLists.txt", firmware / "CMakeLists.txt")
    return firmware


def test_firmware_build_uses_the_checkouts_venv(tmp_path: Path, stub_idf: Path, images: dict[str, Path]):
    firmware = _checkout_copy(tmp_path / "checkout")
    venv_bin = tmp_path / "checkout" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    marker = tmp_path / "venv-csi-ota-ran"
    (venv_bin / "csi-ota").write_text(
        f'#!/bin/sh\necho "$@" > "{marker}"\nexec "{sys.executable}" -m csi_ota "$@"\n'
    )
    (venv_bin / "csi-ota").chmod(0o755)
    over = _cmake_build(
        stub_idf, tmp_path / "b" / "build", images["next_real"], source=firmware, executable=None
    )
    assert over.returncode != 0, over.stdout + over.stderr
    assert marker.read_text().startswith("budget ")
    assert "16 bytes over the 1,310,720-byte ota_0 slot" in " ".join((over.stdout + over.stderr).split())


def test_firmware_build_without_the_venv_warns_and_skips_the_budget(
    tmp_path: Path, stub_idf: Path, images: dict[str, Path]
):
    firmware = _checkout_copy(tmp_path / "checkout")
    done = _cmake_build(
        stub_idf, tmp_path / "b" / "build", images["next_real"], source=firmware, executable=None
    )
    # Over budget, but there is no csi-ota to say so: configure warns, the build goes on.
    assert done.returncode == 0, done.stdout + done.stderr
    flat = " ".join(done.stderr.split())
    assert "CMake Warning" in flat and "csi-ota budget skipped" in flat and "scripts/setup.sh" in flat
    assert "over the" not in done.stdout


def test_firmware_build_runs_the_budget(tmp_path: Path, stub_idf: Path, images: dict[str, Path]):
    ok = _cmake_build(stub_idf, tmp_path / "ok" / "build", images["small"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "budget OK" in ok.stdout and "libnet80211.a" in ok.stdout
    seen = (tmp_path / "ok" / "build" / "sdkconfig_defaults_seen.txt").read_text()
    assert Path(seen) == REPO / "firmware" / "sdkconfig.defaults"  # ESP-IDF's place: the symlink
    assert Path(seen).resolve() == (REPO / "sdkconfig.defaults").resolve()
    assert (tmp_path / "ok" / "build" / "minimal_build_seen.txt").read_text() == "ON"

    over = _cmake_build(stub_idf, tmp_path / "over" / "build", images["next_real"])
    assert over.returncode != 0
    assert "16 bytes over the 1,310,720-byte ota_0 slot" in " ".join((over.stdout + over.stderr).split())


def test_firmware_build_maps_relative_sdkconfig_defaults_to_the_repo_root(
    tmp_path: Path, stub_idf: Path, images: dict[str, Path]
):
    build = tmp_path / "v1" / "build"
    done = _cmake_build(
        stub_idf,
        build,
        images["small"],
        "-DSDKCONFIG_DEFAULTS=sdkconfig.defaults;partitions.csv;pyproject.toml",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, second, third = (build / "sdkconfig_defaults_seen.txt").read_text().split(";")
    # Names that exist in firmware/ (the sdkconfig.defaults symlink too) are left for ESP-IDF
    # to resolve there; the others are found in the repository root.
    assert first == "sdkconfig.defaults"
    assert (REPO / "firmware" / first).resolve() == (REPO / "sdkconfig.defaults").resolve()
    assert second == "partitions.csv"
    assert Path(third) == REPO / "firmware" / ".." / "pyproject.toml"


def test_largest_image_that_fits_once_signed(tmp_path: Path):
    fits, over = tmp_path / "fits.bin", tmp_path / "over.bin"
    fits.write_bytes(build_app_image(ImageSpec(version="1.0.0", target_size_bytes=1_245_168)))
    over.write_bytes(build_app_image(ImageSpec(version="1.0.0", target_size_bytes=1_245_184)))
    assert check_budget(fits, secure_boot_v2=True).counted_bytes == 1_249_280
    assert check_budget(fits, secure_boot_v2=True).status != "fail"
    assert check_budget(over, secure_boot_v2=True).counted_bytes == 1_314_816
    assert check_budget(over, secure_boot_v2=True).status == "fail"
