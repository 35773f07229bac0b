"""The virtual board's NVS engine (firmware/sim/idf/src/nvs_*.c) against ESP-IDF's own tools.

nvs-image-tool runs the engine on a partition image. What it writes for a set of keys must be
byte-for-byte the image esp-idf-nvs-partition-gen makes for the same keys (the generator is
ESP-IDF's reference for the page/entry format), the provisioning image of ``csi-ota provision``
must read back identically through the engine and through csi_ota.provision.read_nvs_image, and
pages the engine has rewritten many times (garbage collection, erases) must still parse with
that reader and give the same values.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from esp_idf_nvs_partition_gen import nvs_partition_gen

from csi_ota import provision
from csi_ota.sim.runner import SIM_BINARY, build_sim

PAGE_BYTES = 4096
Values = dict[str, dict[str, int | str | bytes]]


@pytest.fixture(scope="module")
def tool() -> Path:
    build_sim()
    path = SIM_BINARY.parent / "nvs-image-tool"
    assert path.exists(), f"{path} was not built"
    return path


def run_tool(tool: Path, image: Path, commands: list[str], *, create: int | None = None) -> str:
    args = [str(tool), str(image)] + (["--create", hex(create)] if create is not None else [])
    result = subprocess.run(
        args, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_dump(text: str) -> Values:
    values: Values = {}
    for line in text.splitlines():
        ns, key, kind, *rest = line.split(" ")
        raw = rest[0] if rest else ""
        value: int | str | bytes
        if kind == "str":
            value = bytes.fromhex(raw).decode("utf-8")
        elif kind == "blob":
            value = bytes.fromhex(raw)
        else:
            value = int(raw)
        values.setdefault(ns, {})[key] = value
    return values


def generate(tmp_path: Path, rows: list[tuple[str, str, str, str]], size: int) -> bytes:
    csv = tmp_path / "gen.csv"
    csv.write_text("key,type,encoding,value\n" + "".join(",".join(r) + "\n" for r in rows))
    out = tmp_path / "gen.bin"
    nvs_partition_gen.generate(
        SimpleNamespace(input=[str(csv)], output=str(out), size=hex(size), version=2, outdir=str(tmp_path))
    )
    return out.read_bytes()


def command_for(kind: str, key: str, value: str) -> str:
    if kind == "string":
        return f"str {key} {value.encode().hex()}"
    if kind == "hex2bin":
        return f"blob {key} {value}"
    return f"{kind} {key} {value}"


CASES = {
    "typed values, a string, a small blob": [
        ("csi_ota", "namespace", "", ""),
        ("device_id", "data", "string", "csi_sensor_042"),
        ("auto_update", "data", "u8", "1"),
        ("check_int_sec", "data", "u32", "7200"),
        ("offset", "data", "i32", "-42"),
        ("wide", "data", "u64", "18446744073709551615"),
        ("rec", "data", "hex2bin", bytes(range(35)).hex()),
    ],
    "strings filling pages, a blob over two pages, two namespaces": [
        ("csi_ota", "namespace", "", ""),
        *[(f"s{i}", "data", "string", "x" * 1500) for i in range(6)],
        ("big", "data", "hex2bin", bytes((i * 7 + 3) & 0xFF for i in range(5000)).hex()),
        ("n", "data", "u16", "513"),
        ("other", "namespace", "", ""),
        ("k", "data", "i8", "-3"),
        ("k2", "data", "i16", "-300"),
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_pages_equal_the_generators_byte_for_byte(tmp_path: Path, tool: Path, case: str) -> None:
    rows = CASES[case]
    size = 0x8000
    expected = generate(tmp_path, rows, size)
    commands = [f"open {k}" if t == "namespace" else command_for(e, k, v) for k, t, e, v in rows]
    image = tmp_path / "engine.bin"
    run_tool(tool, image, commands, create=size)
    written = image.read_bytes()
    differ = [i for i in range(size) if written[i] != expected[i]]
    assert not differ, (
        f"first differing bytes at {[hex(i) for i in differ[:8]]} (page {differ[0] // PAGE_BYTES})"
    )


def provisioning_image() -> bytes:
    config = provision.ProvisionConfig(
        update_url="https://ota.example:8080/api/ota/firmware",
        version_check_url="https://ota.example:8080/api/ota/version",
        device_id="csi_sensor_042",
        auth_token="t0ken",
        check_interval_sec=7200,
        auto_update_enabled=False,
        wifi_ssid="lab",
        wifi_password="",
    )
    return provision.build_nvs_image(config, size_bytes=0x14000)


def test_the_provisioning_image_reads_identically(tmp_path: Path, tool: Path) -> None:
    image = tmp_path / "nvs.bin"
    data = provisioning_image()
    image.write_bytes(data)
    through_engine = parse_dump(run_tool(tool, image, ["dump"]))
    assert through_engine == provision.read_nvs_image(data)
    assert through_engine["csi_ota"]["device_id"] == "csi_sensor_042"
    assert image.read_bytes() == data  # loading a clean image writes nothing


def test_rewritten_pages_parse_with_the_reader_after_garbage_collection(tmp_path: Path, tool: Path) -> None:
    image = tmp_path / "nvs.bin"
    image.write_bytes(provisioning_image())
    commands = ["open csi_ota"]
    expected: dict[str, int | str | bytes] = dict(provision.read_nvs_image(image.read_bytes())["csi_ota"])
    for i in range(400):  # ~20 pages of writes through a 20-page partition: pages are freed again
        record = bytes((i + j) & 0xFF for j in range(40 + i % 90))
        commands.append(f"blob ota_rec{i % 3} {record.hex()}")
        expected[f"ota_rec{i % 3}"] = record
        commands.append(f"u32 boots {i}")
        expected["boots"] = i
        if i % 50 == 49:
            commands.append("reboot")
    commands += ["erase ota_rec2", f"str device_id {b'csi_sensor_043'.hex()}", "reboot", "dump"]
    del expected["ota_rec2"]
    expected["device_id"] = "csi_sensor_043"
    dumped = parse_dump(run_tool(tool, image, commands))
    data = image.read_bytes()
    states = {int.from_bytes(data[p : p + 4], "little") for p in range(0, len(data), PAGE_BYTES)}
    assert 0xFFFFFFFC in states, "no page ever filled"
    assert 0xFFFFFFFF in states, "no free page kept"
    assert provision.read_nvs_image(data)["csi_ota"] == expected
    assert dumped["csi_ota"] == expected
    assert provision.config_from_nvs(data).device_id == "csi_sensor_043"


def test_an_erased_partition_starts_empty_and_takes_writes(tmp_path: Path, tool: Path) -> None:
    image = tmp_path / "nvs.bin"
    image.write_bytes(b"\xff" * 0x6000)
    assert run_tool(tool, image, ["dump"]) == ""
    assert image.read_bytes() == b"\xff" * 0x6000  # nvs_flash_init writes nothing until a set
    run_tool(tool, image, ["open csi_ota", "u8 auto_update 0"])
    assert provision.read_nvs_image(image.read_bytes()) == {"csi_ota": {"auto_update": 0}}
