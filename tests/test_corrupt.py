"""csi-ota corrupt: each kind has exactly its one defect (checked with esptool's classes) and fails release verify."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from esptool.util import FatalError

from csi_ota import corrupt, keys
from csi_ota.app_desc import unpack_app_desc
from csi_ota.cli import main
from csi_ota.imagegen import ImageSpec, load_image, write_app_image
from csi_ota.manifest import check_signature, parse_manifest, verify_manifest
from csi_ota.release import DEFAULT_SLOT_SIZE_BYTES, create_release


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    key = keys.generate_key(d / "release.pem")
    image = d / "v2.bin"
    write_app_image(ImageSpec("2.0.0"), image)
    files = create_release(image, key, d / "rel")
    return {
        "dir": d,
        "key": key,
        "pub": keys.public_key_path_for(key),
        "image": image,
        "manifest": files.manifest_path,
    }


def make(good: dict[str, Path], kind: str, tmp_path: Path, *extra: object) -> tuple[Path, dict]:
    source = good["manifest"] if corrupt.CORRUPT_KINDS[kind].target == "manifest" else good["image"]
    out = tmp_path / f"{kind}.out"
    code, stdout, err = run_cli("corrupt", kind, source, out, "--json", *extra)
    assert code == 0, err
    return out, json.loads(stdout)


def verify_err(good: dict[str, Path], image: Path, manifest: Path) -> str:
    code, _, err = run_cli("release", "verify", image, manifest, "--key", good["pub"])
    assert code == 1, err
    return err


def checks(image: bytes) -> tuple[bool, bool]:
    """(checksum valid, appended SHA-256 valid) as esptool sees them."""
    parsed = load_image(image)
    return parsed.checksum == parsed.calculate_checksum(), parsed.stored_digest == parsed.calc_digest


def test_list_prints_every_kind_with_one_line_each() -> None:
    code, out, _ = run_cli("corrupt", "--list")
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(corrupt.CORRUPT_KINDS)
    for name in (
        "truncate",
        "truncate-header",
        "random",
        "wrong-chip",
        "chip-rev",
        "bad-checksum",
        "bad-sha256",
        "too-large",
        "bad-signature",
        "unknown-key",
        "other-image",
    ):
        assert name in corrupt.CORRUPT_KINDS


def test_the_good_release_passes_verify(good: dict[str, Path]) -> None:
    code, _, err = run_cli("release", "verify", good["image"], good["manifest"], "--key", good["pub"])
    assert code == 0, err
    assert checks(good["image"].read_bytes()) == (True, True)


def test_truncate_kinds_keep_a_prefix_esptool_cannot_load(good: dict[str, Path], tmp_path: Path) -> None:
    original = good["image"].read_bytes()
    for kind, length in (("truncate", 64_000), ("truncate-header", 180)):
        out, report = make(good, kind, tmp_path)
        data = out.read_bytes()
        assert data == original[:length]
        with pytest.raises(FatalError, match="End of file"):
            load_image(data)
        assert report["expected_reason"] in ("image_invalid", "image_header")
        err = verify_err(good, out, good["manifest"])
        assert "size: image is" in err and "sha256" in err


def test_image_kinds_without_a_key_write_only_the_image(good: dict[str, Path], tmp_path: Path) -> None:
    out, report = make(good, "bad-sha256", tmp_path)
    assert report["manifest"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad-sha256.out"]


def test_random_has_the_same_length_and_no_image_magic(good: dict[str, Path], tmp_path: Path) -> None:
    out, _ = make(good, "random", tmp_path, "--seed", 7)
    data = out.read_bytes()
    assert len(data) == good["image"].stat().st_size and data[0] != 0xE9
    with pytest.raises(FatalError, match="Invalid firmware image magic"):
        load_image(data)
    (tmp_path / "again").mkdir()
    again, _ = make(good, "random", tmp_path / "again", "--seed", 7)
    assert again.read_bytes() == data  # --seed makes it reproducible
    assert "sha256" in verify_err(good, out, good["manifest"])


@pytest.mark.parametrize(
    ("kind", "field", "value", "check"),
    [
        ("wrong-chip", "chip_id", 5, "chip id: image has 5, manifest says 9"),
        ("chip-rev", "min_rev_full", 9900, "chip revision range: image has (9900, 99)"),
    ],
)
def test_header_kinds_change_one_field_and_keep_checksum_and_sha_valid(
    good: dict[str, Path], tmp_path: Path, kind: str, field: str, value: int, check: str
) -> None:
    original = good["image"].read_bytes()
    out, _ = make(good, kind, tmp_path, "--key", good["key"])
    data = out.read_bytes()
    assert len(data) == len(original)
    parsed = load_image(data)
    assert getattr(parsed, field) == value
    assert checks(data) == (True, True)
    differing = [i for i in range(len(data)) if data[i] != original[i]]
    assert max(differing) >= len(data) - 32  # the appended SHA-256 was recomputed
    assert all(i < 24 or i >= len(data) - 32 for i in differing)  # nothing else but the header changed
    err = verify_err(good, out, out.with_suffix(".manifest"))
    assert check in err


def test_bad_checksum_is_invalid_for_esptool_while_sha_is_valid(
    good: dict[str, Path], tmp_path: Path
) -> None:
    out, _ = make(good, "bad-checksum", tmp_path, "--key", good["key"])
    data = out.read_bytes()
    assert checks(data) == (False, True)
    assert unpack_app_desc(load_image(data).segments[0].data).version == "2.0.0"
    assert "image checksum: segment checksum invalid" in verify_err(good, out, out.with_suffix(".manifest"))


def test_bad_sha256_keeps_the_checksum_valid(good: dict[str, Path], tmp_path: Path) -> None:
    out, _ = make(good, "bad-sha256", tmp_path, "--key", good["key"])
    data = out.read_bytes()
    assert checks(data) == (True, False)
    original = good["image"].read_bytes()
    assert data[:-32] == original[:-32] and data[-32:] != original[-32:]
    assert "image sha256: appended SHA-256" in verify_err(good, out, out.with_suffix(".manifest"))


def test_too_large_is_a_valid_image_beyond_the_slot(good: dict[str, Path], tmp_path: Path) -> None:
    out, _ = make(good, "too-large", tmp_path, "--key", good["key"])
    data = out.read_bytes()
    assert len(data) > DEFAULT_SLOT_SIZE_BYTES == 1_310_720
    assert checks(data) == (True, True)
    assert unpack_app_desc(load_image(data).segments[0].data).version == "2.0.0"
    manifest = parse_manifest(out.with_suffix(".manifest").read_bytes()).manifest
    assert manifest.size == len(data)
    err = verify_err(good, out, out.with_suffix(".manifest"))
    assert "slot size" in err
    assert "sha256" not in err.replace("image sha256", "")  # only the slot check fails


def test_manifest_written_for_an_image_kind_is_properly_signed_for_out(
    good: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "custom.manifest"
    out, report = make(
        good, "bad-checksum", tmp_path, "--key", good["key"], "--manifest", target, "--sequence", 900
    )
    assert report["manifest"] == str(target)
    m = verify_manifest(target.read_bytes(), [keys.load_public_key(good["pub"])])
    assert m.sha256 == hashlib.sha256(out.read_bytes()).hexdigest() and m.size == out.stat().st_size
    assert m.sequence == 900 and m.version == "2.0.0" and m.project == "csi_sensor" and m.chip_id == 9


def test_bad_signature_flips_exactly_one_signature_byte(good: dict[str, Path], tmp_path: Path) -> None:
    out, _ = make(good, "bad-signature", tmp_path)
    before, after = parse_manifest(good["manifest"].read_bytes()), parse_manifest(out.read_bytes())
    assert before.signed_bytes == after.signed_bytes
    assert sum(a != b for a, b in zip(before.signature, after.signature, strict=True)) == 1
    err = verify_err(good, good["image"], out)
    assert re.search(r"signature: signature does not verify", err)


def test_unknown_key_is_signed_correctly_by_a_stranger(good: dict[str, Path], tmp_path: Path) -> None:
    out, _ = make(good, "unknown-key", tmp_path)
    before, after = parse_manifest(good["manifest"].read_bytes()), parse_manifest(out.read_bytes())
    assert after.manifest.key_id != before.manifest.key_id
    assert after.manifest.sha256 == before.manifest.sha256
    assert "is not among the trusted keys" in verify_err(good, good["image"], out)


def test_other_image_is_trusted_but_names_a_different_digest(good: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "v3.bin"
    write_app_image(ImageSpec("3.0.0"), other)
    out, _ = make(good, "other-image", tmp_path, "--key", good["key"], "--other-image", other)
    after = parse_manifest(out.read_bytes())
    assert after.manifest.sha256 == hashlib.sha256(other.read_bytes()).hexdigest()
    assert check_signature(after, keys.load_public_key(good["pub"]))
    err = verify_err(good, good["image"], out)
    assert "sha256: image SHA-256 is" in err and "signature" not in err


def test_usage_errors(good: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run_cli("corrupt", "melt", good["image"], tmp_path / "x")
    assert code == 2 and "unknown corruption kind 'melt'" in err
    code, _, err = run_cli("corrupt", "other-image", good["manifest"], tmp_path / "x")
    assert code == 2 and "pass the trusted release key with --key" in err
    code, _, err = run_cli("corrupt", "truncate", good["image"], good["image"])
    assert code == 2 and "OUT must differ from IN" in err
    code, _, err = run_cli("corrupt", "truncate", good["manifest"], tmp_path / "x")
    assert code == 2 and "not a valid ESP32-S3 app image" in err
    code, _, err = run_cli("corrupt", "truncate")
    assert code == 2 and "KIND, IN and OUT are required" in err
    code, _, err = run_cli("corrupt", "truncate", good["image"], tmp_path / "x", "--manifest", tmp_path / "m")
    assert code == 2 and "needs --key" in err
    assert not (tmp_path / "x").exists()
