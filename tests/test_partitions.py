"""csi-ota partitions: shipped layouts, ESP-IDF's rules (each violated once), CSV and binary round trips."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from csi_ota.cli import main
from csi_ota.errors import CsiOtaError
from csi_ota.partitions import (
    SHIPPED_LAYOUTS,
    default_layout,
    load_layout,
    load_table,
    parse_binary,
    parse_csv,
)
from csi_ota.partitions.files import check_csv, choose_spec

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


# --- shipped layouts --------------------------------------------------------------------------------


def test_default_4mb_layout_is_the_seeds():
    layout = default_layout()
    rows = [(e.name, e.type_name, e.subtype_name, e.offset, e.size) for e in layout.entries]
    assert rows == [
        ("nvs", "data", "nvs", 0x9000, 0x14000),
        ("otadata", "data", "ota", 0x1D000, 0x2000),
        ("phy_init", "data", "phy", 0x1F000, 0x1000),
        ("ota_0", "app", "ota_0", 0x20000, 1_310_720),
        ("ota_1", "app", "ota_1", 0x160000, 1_310_720),
        ("spiffs", "data", "spiffs", 0x2A0000, 1_441_792),
    ]
    assert layout.used_end() == 4 * 1024 * 1024  # no gap, nothing wasted
    assert not any(e.subtype_name == "factory" for e in layout.entries)


@pytest.mark.parametrize("size", ["8MB", "16MB"])
def test_larger_layouts_keep_slots_and_grow_spiffs(size: str):
    layout = load_layout(size)
    flash = int(size[:-2]) * 1024 * 1024
    assert [s.size for s in layout.ota_slots()] == [1_310_720, 1_310_720]
    assert layout.find("coredump").size == 64 * 1024
    spiffs = layout.find("spiffs")
    assert spiffs.end == flash
    assert spiffs.size > default_layout().find("spiffs").size


@pytest.mark.parametrize("size", SHIPPED_LAYOUTS)
def test_binary_is_byte_identical_to_esp_idf_gen_esp32part(size: str):
    reference = (DATA / f"partitions_espidf_{size}.bin").read_bytes()
    layout = load_layout(size)
    assert layout.to_binary() == reference
    parsed = parse_binary(reference)
    assert parsed.entries == layout.entries
    assert parsed.to_binary() == reference


def test_hand_written_csv_with_flags_matches_esp_idf_and_round_trips():
    reference = (DATA / "partitions_flags_espidf.bin").read_bytes()
    layout = load_table(DATA / "partitions_flags.csv")
    assert layout.find("ota_0").encrypted and not layout.find("ota_0").readonly
    assert layout.find("storage").flag_names == ["encrypted", "readonly"]
    assert layout.find("nvs_ro").offset == 0xF000  # empty offset placed after the previous partition
    assert layout.to_binary() == reference
    again = parse_csv(parse_binary(reference).to_csv())
    assert again.entries == layout.entries
    assert again.to_binary() == reference


def test_binary_layout(tmp_path: Path):
    table = default_layout().to_binary()
    assert len(table) == 0xC00
    magic, ptype, subtype, offset, size, name, flags = struct.unpack("<2sBBII16sI", table[96:128])
    assert (magic, ptype, subtype, offset, size, name.rstrip(b"\0"), flags) == (
        b"\xaa\x50",
        0,
        0x10,
        0x20000,
        0x140000,
        b"ota_0",
        0,
    )
    md5_entry = table[6 * 32 : 7 * 32]
    assert md5_entry[:16] == b"\xeb\xeb" + b"\xff" * 14
    assert md5_entry[16:] == hashlib.md5(table[: 6 * 32]).digest()
    assert table[7 * 32 :] == b"\xff" * (0xC00 - 7 * 32)


# --- every rule, violated once ------------------------------------------------------------------

BASE = ["nvs,data,nvs,0x9000,0x6000", "otadata,data,ota,0xf000,0x2000"]
APPS = ["ota_0,app,ota_0,0x20000,0x100000", "ota_1,app,ota_1,0x120000,0x100000"]

RULE_CASES = {
    "name-required": (BASE + [",data,spiffs,0x220000,0x10000"] + APPS, ""),
    "name-length": (BASE + APPS + ["seventeen_chars_x,data,spiffs,0x220000,0x10000"], "seventeen_chars_x"),
    "name-characters": (BASE + APPS + ["my store,data,spiffs,0x220000,0x10000"], "my store"),
    "unique-names": (BASE + APPS + ["nvs,data,spiffs,0x220000,0x10000"], "nvs"),
    "type-range": (BASE + APPS + ["weird,0xff,0x00,0x220000,0x10000"], "weird"),
    "subtype-range": (BASE + APPS + ["weird,data,0xff,0x220000,0x10000"], "weird"),
    "size-positive": (BASE + APPS + ["empty,data,spiffs,0x220000,0"], "empty"),
    "app-offset-alignment": (BASE + ["ota_0,app,ota_0,0x21000,0x100000", APPS[1]], "ota_0"),
    "data-offset-alignment": (BASE + APPS + ["store,data,spiffs,0x220800,0x10000"], "store"),
    "app-size-alignment": (BASE + ["ota_0,app,ota_0,0x20000,0xff800", APPS[1]], "ota_0"),
    "after-table": (["nvs,data,nvs,0x7000,0x6000", BASE[1]] + APPS, "nvs"),
    "no-overlap": (BASE + APPS + ["store,data,spiffs,0x200000,0x30000"], "store"),
    "single-otadata": (BASE + APPS + ["otadata2,data,ota,0x220000,0x2000"], "otadata2"),
    "otadata-size": (["nvs,data,nvs,0x9000,0x6000", "otadata,data,ota,0xf000,0x3000"] + APPS, "otadata"),
    "ota-needs-otadata": ([BASE[0]] + APPS, "ota_0"),
    "unique-ota-slot": (BASE + [APPS[0], "second,app,ota_0,0x120000,0x100000"], "second"),
    "ota-contiguous": (BASE + [APPS[0], "ota_2,app,ota_2,0x120000,0x100000"], "ota_2"),
    "read-write-only": (
        ["nvs,data,nvs,0x9000,0x6000", "otadata,data,ota,0xf000,0x2000,readonly"] + APPS,
        "otadata",
    ),
    "nvs-min-size": (["nvs,data,nvs,0x9000,0x2000", BASE[1]] + APPS, "nvs"),
    "fits-flash": (BASE + ["ota_0,app,ota_0,0x20000,0x200000", "ota_1,app,ota_1,0x220000,0x200000"], "ota_1"),
    "max-entries": (
        ["otadata,data,ota,0x9000,0x2000"] + [f"d{i},data,0x40,,0x1000" for i in range(94)],
        "d93",
    ),
}


def test_every_rule_has_a_case():
    from csi_ota.partitions.rules import RULES

    rule_ids = {rule for ids, _why, _check in RULES for rule in ids.split("/")}
    assert rule_ids - set(RULE_CASES) == {"known-flags"}  # only reachable from a binary: see below


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_violation_names_partition_and_rule(tmp_path: Path, rule: str):
    rows, partition = RULE_CASES[rule]
    table = tmp_path / "table.csv"
    table.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli("partitions", "show", table, "--flash-size", "4MB")
    assert code == 2, (out, err)
    assert f"breaks rule {rule}:" in err
    who = f"partition '{partition}'" if partition else "a partition"
    assert f"{who} breaks rule {rule}:" in err
    assert "Traceback" not in out + err


def test_unknown_flag_bits_in_a_binary_are_refused(tmp_path: Path):
    good = parse_binary(default_layout().to_binary())
    entries = b"".join(
        struct.pack(
            "<2sBBII16sI",
            b"\xaa\x50",
            e.type,
            e.subtype,
            e.offset,
            e.size,
            e.name.encode(),
            0x20 if e.name == "spiffs" else 0,
        )
        for e in good.entries
    )
    table = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    path = tmp_path / "flags.bin"
    path.write_bytes(table + b"\xff" * (0xC00 - len(table)))
    code, _, err = run_cli("partitions", "show", path)
    assert code == 2
    assert "partition 'spiffs' breaks rule known-flags" in err


def test_ninety_four_entries_is_the_most_that_builds():
    rows = ["otadata,data,ota,0x9000,0x2000"] + [f"d{i},data,0x40,,0x1000" for i in range(93)]
    layout = parse_csv("\n".join(rows))
    assert len(layout.entries) == 94
    table = layout.to_binary()
    assert parse_binary(table).entries == layout.entries


def test_all_violations_are_listed_together(tmp_path: Path):
    table = tmp_path / "t.csv"
    table.write_text("nvs,data,nvs,0x9000,0x2000\nota_0,app,ota_0,0x21000,0x100000\n")
    code, _, err = run_cli("partitions", "show", table)
    assert code == 2
    for rule in ("nvs-min-size", "app-offset-alignment", "ota-needs-otadata"):
        assert rule in err


# --- damaged binaries ------------------------------------------------------------------------------


def test_damaged_binary_tables_are_refused_with_the_reason(tmp_path: Path):
    good = default_layout().to_binary()
    cases = {
        "md5": good[:40] + bytes([good[40] ^ 1]) + good[41:],
        "magic aa50": good[:32] + b"\x00\x00" + good[34:],
        "end-of-table marker": good[: 6 * 32] + good[:32] * 90,
        "too short": good[:10],
    }
    for reason, data in cases.items():
        path = tmp_path / "t.bin"
        path.write_bytes(data)
        code, _, err = run_cli("partitions", "to-csv", path)
        assert code == 2, reason
        assert reason.split()[0].lower() in err.lower(), (reason, err)


# --- CLI: generate, check, show, to-csv ------------------------------------------------------------


def test_generate_then_check(tmp_path: Path):
    csv_path, bin_path = tmp_path / "partitions.csv", tmp_path / "partitions.bin"
    code, out, err = run_cli("partitions", "generate", "--csv", csv_path, "--bin", bin_path)
    assert code == 0, err
    assert "ota_0" in out
    assert bin_path.read_bytes() == (DATA / "partitions_espidf_4MB.bin").read_bytes()
    assert load_table(csv_path).entries == default_layout().entries
    assert run_cli("partitions", "check", "--csv", csv_path)[0] == 0

    csv_path.write_text(csv_path.read_text().replace("0x140000", "0x130000", 1))
    code, out, err = run_cli("partitions", "check", "--csv", csv_path)
    assert code == 1
    assert "out of date" in err
    assert "\n-ota_0,    app,  ota_0,   0x20000,  0x130000,\n" in out  # a unified diff of the stale line
    assert "\n+ota_0,    app,  ota_0,   0x20000,  0x140000,\n" in out
    with pytest.raises(CsiOtaError, match="out of date") as caught:
        check_csv(choose_spec(None, None), csv_path)
    assert caught.value.exit_code == 1 and "+ota_0" in caught.value.message

    csv_path.unlink()
    code, _, err = run_cli("partitions", "check", "--csv", csv_path)
    assert code == 1 and "does not exist" in err


def test_committed_partitions_csv_is_up_to_date(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    code, _, err = run_cli("partitions", "check")
    assert code == 0, err


def test_flash_size_picks_shipped_layout(tmp_path: Path):
    csv_path = tmp_path / "p.csv"
    assert run_cli("partitions", "generate", "--flash-size", "16MB", "--csv", csv_path)[0] == 0
    assert load_table(csv_path).find("spiffs").end == 16 * 1024 * 1024
    code, _, err = run_cli("partitions", "check", "--csv", csv_path)  # default 4MB spec: differs
    assert code == 1
    assert run_cli("partitions", "check", "--flash-size", "16MB", "--csv", csv_path)[0] == 0


def test_user_spec_overrides_shipped(tmp_path: Path):
    spec = tmp_path / "big_slots.toml"
    spec.write_text(
        'flash_size = "8MB"\n'
        '[[partitions]]\nname = "nvs"\ntype = "data"\nsubtype = "nvs"\nsize = "80K"\n'
        '[[partitions]]\nname = "otadata"\ntype = "data"\nsubtype = "ota"\nsize = 0x2000\n'
        '[[partitions]]\nname = "ota_0"\ntype = "app"\nsubtype = "ota_0"\noffset = 0x20000\nsize = "2M"\n'
        '[[partitions]]\nname = "ota_1"\ntype = "app"\nsubtype = "ota_1"\nsize = "2M"\n'
        '[[partitions]]\nname = "spiffs"\ntype = "data"\nsubtype = "spiffs"\nsize = "rest"\nflags = ["encrypted"]\n'
    )
    csv_path = tmp_path / "p.csv"
    code, out, err = run_cli("partitions", "generate", "--spec", spec, "--csv", csv_path, "--json")
    assert code == 0, err
    written = json.loads(out)
    assert written["flash_size_bytes"] == 8 * 1024 * 1024
    layout = load_table(csv_path)
    assert [s.size for s in layout.ota_slots()] == [2 * 1024 * 1024] * 2
    assert layout.find("spiffs").encrypted and layout.find("spiffs").end == 8 * 1024 * 1024
    assert "big_slots.toml" in csv_path.read_text()
    assert run_cli("partitions", "check", "--spec", spec, "--csv", csv_path)[0] == 0


@pytest.mark.parametrize(
    ("spec_text", "message"),
    [
        ("flash_size = \n", "not valid TOML"),
        ('flash_size = "4MB"\ncolour = "red"\n', "unknown key(s) colour"),
        (
            'flash_size = "3MB"\n[[partitions]]\nname="a"\ntype="data"\nsubtype="nvs"\nsize=0x6000\n',
            "unknown flash size",
        ),
        (
            '[[partitions]]\nname="a"\ntype="data"\nsubtype="nvs"\nsize="rest"\n'
            '[[partitions]]\nname="b"\ntype="data"\nsubtype="spiffs"\nsize=0x1000\n',
            "only allowed for the last",
        ),
        ('[[partitions]]\nname="a"\ntype="data"\nsubtype="nvs"\n', "partition 'a': missing 'size'"),
        (
            '[[partitions]]\nname="a"\ntype="disk"\nsubtype="nvs"\nsize=1\n',
            "'disk' is neither a number nor one of",
        ),
        ('[[partitions]]\nname="nvs"\ntype="data"\nsubtype="nvs"\nsize=0x100\n', "breaks rule nvs-min-size"),
    ],
)
def test_bad_specs_exit_2_and_write_nothing(tmp_path: Path, spec_text: str, message: str):
    spec = tmp_path / "bad.toml"
    spec.write_text(spec_text)
    csv_path = tmp_path / "out.csv"
    code, out, err = run_cli("partitions", "generate", "--spec", spec, "--csv", csv_path)
    assert code == 2
    assert message in err
    assert not csv_path.exists()
    assert "Traceback" not in out + err


def test_generate_writes_nothing_when_one_output_cannot_be_written(tmp_path: Path):
    csv_path = tmp_path / "p.csv"
    code, _, err = run_cli(
        "partitions", "generate", "--csv", csv_path, "--bin", tmp_path / "missing" / "p.bin"
    )
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_spec_and_flash_size_together_is_a_usage_error(tmp_path: Path):
    code, _, err = run_cli(
        "partitions", "generate", "--spec", "x.toml", "--flash-size", "8MB", "--csv", tmp_path / "p"
    )
    assert code == 2 and "either --spec or --flash-size" in err


def test_show_json_and_to_csv_round_trip(tmp_path: Path):
    reference = DATA / "partitions_flags_espidf.bin"
    code, out, _ = run_cli("partitions", "show", reference, "--json")
    assert code == 0
    shown = json.loads(out)
    assert [p["name"] for p in shown["partitions"]][:3] == ["nvs", "nvs_ro", "nvs_key"]
    assert shown["partitions"][-1] == {
        "name": "storage",
        "type": "data",
        "subtype": "0x99",
        "offset": 0x320000,
        "size": 0x30000,
        "flags": ["encrypted", "readonly"],
    }
    csv_path = tmp_path / "back.csv"
    assert run_cli("partitions", "to-csv", reference, "--out", csv_path)[0] == 0
    assert load_table(csv_path).to_binary() == reference.read_bytes()
    code, out, _ = run_cli("partitions", "to-csv", reference)
    assert code == 0 and out.startswith("# Converted by")


def test_show_table_and_missing_file(tmp_path: Path):
    code, out, _ = run_cli("partitions", "show", REPO / "firmware" / "partitions.csv")
    assert code == 0
    assert "0x140000" in out and "1,310,720" in out
    code, _, err = run_cli("partitions", "show", tmp_path / "nope.csv")
    assert code == 2 and "cannot read partition table" in err


def test_csv_parse_errors_name_the_line():
    with pytest.raises(CsiOtaError, match=r"line 2 \(ota_0\): an app partition needs a SubType"):
        parse_csv("nvs,data,nvs,0x9000,0x6000\nota_0,app,,0x20000,1M\n")
    with pytest.raises(CsiOtaError, match="unknown flag 'secret'"):
        parse_csv("nvs,data,nvs,0x9000,0x6000,secret\n")
