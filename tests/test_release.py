"""csi-ota release create / verify / show, sequence numbers, and Secure Boot v2 signing via espsecure."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import espsecure
import pytest
from click.testing import CliRunner

from csi_ota import keys, release, secure_boot
from csi_ota.cli import main
from csi_ota.errors import CsiOtaError
from csi_ota.imagegen import ImageSpec, build_app_image, load_image, write_app_image
from csi_ota.manifest import parse_manifest


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    key = keys.generate_key(tmp_path / "release.pem")
    image = tmp_path / "build" / "csi_sensor.bin"
    image.parent.mkdir()
    write_app_image(ImageSpec("1.2.0", secure_version=2, min_rev_full=0, max_rev_full=99), image)
    return {
        "key": key,
        "pub": keys.public_key_path_for(key),
        "image": image,
        "out": tmp_path / "releases",
        "tmp": tmp_path,
    }


def create(s: dict[str, Path], *extra: object) -> dict:
    code, out, err = run_cli(
        "release", "create", s["image"], "--key", s["key"], "--out", s["out"], "--json", *extra
    )
    assert code == 0, err
    return json.loads(out)


def test_create_writes_named_files_with_fields_from_the_image(setup: dict[str, Path]) -> None:
    result = create(setup, "--notes", "first release")
    image_out = setup["out"] / "csi_sensor-1.2.0.bin"
    manifest_out = setup["out"] / "csi_sensor-1.2.0.manifest"
    assert result["image"] == str(image_out) and result["manifest_path"] == str(manifest_out)
    data = setup["image"].read_bytes()
    assert image_out.read_bytes() == data
    m = parse_manifest(manifest_out.read_bytes()).manifest
    assert m.as_dict() == result["manifest"]
    assert (m.project, m.version, m.secure_version, m.chip_id) == ("csi_sensor", "1.2.0", 2, 9)
    assert (m.min_chip_rev_full, m.max_chip_rev_full) == (0, 99)
    assert (m.size, m.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert m.sequence == 1 and m.notes == "first release" and m.rollback is False
    assert m.key_id == keys.key_id_for(keys.load_public_key(setup["key"]))
    assert not [p for p in setup["out"].iterdir() if p.name.startswith(".")], "temp files left"


def test_sequence_increments_and_never_goes_below_an_explicit_one(setup: dict[str, Path]) -> None:
    assert create(setup)["manifest"]["sequence"] == 1
    assert create(setup, "--force")["manifest"]["sequence"] == 2
    assert create(setup, "--sequence", 10, "--force")["manifest"]["sequence"] == 10
    assert create(setup, "--force")["manifest"]["sequence"] == 11
    state = release.sequence_state_path(setup["key"])
    assert state.read_text() == "11\n"
    manifest_before = (setup["out"] / "csi_sensor-1.2.0.manifest").read_bytes()
    code, _, err = run_cli(
        "release",
        "create",
        setup["image"],
        "--key",
        setup["key"],
        "--out",
        setup["out"],
        "--sequence",
        11,
        "--force",
    )
    assert code == 2
    assert "not above 11" in err
    assert state.read_text() == "11\n"
    assert (setup["out"] / "csi_sensor-1.2.0.manifest").read_bytes() == manifest_before


def test_existing_release_is_not_overwritten_without_force(setup: dict[str, Path]) -> None:
    first = create(setup)
    manifest_path = setup["out"] / "csi_sensor-1.2.0.manifest"
    before = manifest_path.read_bytes()
    code, _, err = run_cli("release", "create", setup["image"], "--key", setup["key"], "--out", setup["out"])
    assert code == 2
    assert f"{manifest_path.with_suffix('.bin')} already exists" in err and "--force" in err
    assert manifest_path.read_bytes() == before  # the published manifest stands
    assert release.sequence_state_path(setup["key"]).read_text() == "1\n"  # no sequence spent
    assert create(setup, "--force")["manifest"]["sequence"] == first["manifest"]["sequence"] + 1
    assert manifest_path.read_bytes() != before


def test_rollback_flag_is_signed_into_the_manifest(setup: dict[str, Path]) -> None:
    assert create(setup, "--rollback")["manifest"]["rollback"] is True
    assert b"\nrollback=1\n" in (setup["out"] / "csi_sensor-1.2.0.manifest").read_bytes()


def test_bad_input_writes_nothing_and_spends_no_sequence(setup: dict[str, Path]) -> None:
    code, _, err = run_cli(
        "release",
        "create",
        setup["image"],
        "--key",
        setup["key"],
        "--out",
        setup["out"],
        "--notes",
        "x" * 201,
    )
    assert code == 2
    assert "notes is 201 bytes" in err
    assert not setup["out"].exists()
    assert not release.sequence_state_path(setup["key"]).exists()

    broken = bytearray(setup["image"].read_bytes())
    broken[100] ^= 0xFF  # inside a segment: checksum and SHA-256 both wrong
    bad_image = setup["tmp"] / "broken.bin"
    bad_image.write_bytes(bytes(broken))
    code, _, err = run_cli("release", "create", bad_image, "--key", setup["key"], "--out", setup["out"])
    assert code == 2
    assert "refusing to sign a broken image" in err
    assert not setup["out"].exists()

    code, _, err = run_cli("release", "create", setup["image"], "--key", setup["pub"], "--out", setup["out"])
    assert code == 2
    assert "not a PEM private key" in err


def test_create_explains_a_version_that_is_not_semver(setup: dict[str, Path]) -> None:
    odd = setup["tmp"] / "odd.bin"
    write_app_image(ImageSpec("v1.2-dirty"), odd)
    code, _, err = run_cli("release", "create", odd, "--key", setup["key"], "--out", setup["out"])
    assert code == 2
    assert "'v1.2-dirty' is not semver" in err and "version.txt" in err
    assert not setup["out"].exists()


def test_create_refuses_an_image_larger_than_the_slot(setup: dict[str, Path]) -> None:
    big = setup["tmp"] / "big.bin"
    write_app_image(ImageSpec("1.3.0", target_size_bytes=200_000), big)
    code, _, err = run_cli(
        "release", "create", big, "--key", setup["key"], "--out", setup["out"], "--slot-size", 199_999
    )
    assert code == 2
    assert "does not fit the 199999-byte OTA slot (1 bytes over)" in err


def test_verify_passes_a_good_release_with_any_trusted_key(setup: dict[str, Path]) -> None:
    create(setup)
    other = keys.generate_key(setup["tmp"] / "other.pem")
    code, out, err = run_cli(
        "release",
        "verify",
        setup["out"] / "csi_sensor-1.2.0.bin",
        setup["out"] / "csi_sensor-1.2.0.manifest",
        "--key",
        keys.public_key_path_for(other),
        "--key",
        setup["pub"],
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {
        "signature",
        "sha256",
        "size",
        "chip id",
        "project",
        "version",
    }
    assert all(c["ok"] for c in report["checks"])
    assert release.verify_release(
        setup["out"] / "csi_sensor-1.2.0.bin", setup["out"] / "csi_sensor-1.2.0.manifest", [setup["pub"]]
    ).version == ("1.2.0")


def _verify(setup: dict[str, Path], image: Path, manifest: Path) -> tuple[int, str]:
    code, _, err = run_cli("release", "verify", image, manifest, "--key", setup["pub"], "--json")
    return code, err


def test_any_flipped_byte_in_image_or_manifest_fails_verify_naming_the_check(setup: dict[str, Path]) -> None:
    create(setup)
    image = (setup["out"] / "csi_sensor-1.2.0.bin").read_bytes()
    manifest = (setup["out"] / "csi_sensor-1.2.0.manifest").read_bytes()
    bad_image = setup["tmp"] / "tampered.bin"
    bad_manifest = setup["tmp"] / "tampered.manifest"
    rng = random.Random(1234)
    good_manifest = setup["out"] / "csi_sensor-1.2.0.manifest"
    for position in [0, 12, 0x20 + 48, len(image) - 1] + rng.sample(range(len(image)), 12):
        tampered = bytearray(image)
        tampered[position] ^= 1 << rng.randrange(8)
        bad_image.write_bytes(bytes(tampered))
        code, err = _verify(setup, bad_image, good_manifest)
        assert code == 1, position
        assert "sha256: image SHA-256 is" in err
    good_image = setup["out"] / "csi_sensor-1.2.0.bin"
    for position in range(len(manifest)):
        tampered = bytearray(manifest)
        tampered[position] ^= 0x01
        bad_manifest.write_bytes(bytes(tampered))
        code, err = _verify(setup, good_image, bad_manifest)
        assert code == 1, position
        assert ("signature" in err) or ("manifest format" in err) or ("signing key" in err), err


def test_verify_names_an_untrusted_key_and_a_different_image(setup: dict[str, Path]) -> None:
    create(setup)
    stranger = keys.generate_key(setup["tmp"] / "stranger.pem")
    code, _, err = run_cli(
        "release",
        "verify",
        setup["out"] / "csi_sensor-1.2.0.bin",
        setup["out"] / "csi_sensor-1.2.0.manifest",
        "--key",
        stranger,
    )
    assert code == 1
    assert "signing key: key" in err and "is not among the trusted keys" in err

    other = setup["tmp"] / "other.bin"
    write_app_image(ImageSpec("1.2.0", seed=b"other build"), other)
    code, err = _verify(setup, other, setup["out"] / "csi_sensor-1.2.0.manifest")
    assert code == 1
    assert "sha256" in err


def test_show_prints_fields_and_checks_the_signature_on_request(setup: dict[str, Path]) -> None:
    create(setup, "--notes", "hello")
    manifest = setup["out"] / "csi_sensor-1.2.0.manifest"
    code, out, _ = run_cli("release", "show", manifest, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["manifest"]["notes"] == "hello" and shown["signature_state"].startswith("not checked")
    code, out, _ = run_cli("release", "show", manifest, "--key", setup["pub"])
    assert code == 0
    assert "signature: valid" in out and "csi_sensor" in out
    tampered = setup["tmp"] / "t.manifest"
    tampered.write_bytes(manifest.read_bytes().replace(b"notes=hello", b"notes=jello"))
    code, out, err = run_cli("release", "show", tampered, "--key", setup["pub"])
    assert code == 1
    assert "INVALID" in out + err
    garbage = setup["tmp"] / "g.manifest"
    garbage.write_bytes(b"hello\n")
    code, _, err = run_cli("release", "show", garbage)
    assert code == 2
    assert "expected key=value" in err


# ---------------------------------------------------------------------------
# Secure Boot v2
# ---------------------------------------------------------------------------


@pytest.fixture()
def sb_key(tmp_path: Path) -> Path:
    path = tmp_path / "secure_boot_signing_key.pem"
    code, _, err = run_cli("keys", "generate-secure-boot", path)
    assert code == 0, err
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def test_secure_boot_v2_signed_image_verifies_with_espsecure_and_is_covered_by_the_manifest(
    setup: dict[str, Path], sb_key: Path
) -> None:
    result = create(setup, "--secure-boot-key", sb_key)
    signed_path = Path(result["image"])
    signed = signed_path.read_bytes()
    original = setup["image"].read_bytes()
    assert len(signed) % secure_boot.SIGNATURE_SECTOR_BYTES == 0
    assert (len(signed) - secure_boot.SIGNATURE_SECTOR_BYTES) % secure_boot.MMU_PAGE_BYTES == 0
    assert len(signed) <= secure_boot.sbv2_signed_size_bytes(len(original))
    assert result["manifest"]["sha256"] == hashlib.sha256(signed).hexdigest()
    assert result["manifest"]["size"] == len(signed)
    # espsecure's own verification, called directly.
    with open(sb_key, "rb") as key, open(signed_path, "rb") as data:
        espsecure.verify_signature("2", False, None, key, data)
    # Still a valid app image for esptool, same app_desc.
    parsed = load_image(signed)
    assert parsed.checksum == parsed.calculate_checksum() and parsed.stored_digest == parsed.calc_digest
    code, _, err = run_cli(
        "release",
        "verify",
        signed_path,
        result["manifest_path"],
        "--key",
        setup["pub"],
        "--secure-boot-key",
        sb_key,
    )
    assert code == 0, err
    # A flipped byte in the signed data is caught by espsecure too.
    tampered = bytearray(signed)
    tampered[0x1000] ^= 1
    with pytest.raises(CsiOtaError, match="Secure Boot v2 signature") as info:
        secure_boot.verify_app_image(bytes(tampered), sb_key)
    assert info.value.exit_code == 1


def test_secure_boot_refuses_a_release_key_instead_of_rsa3072(setup: dict[str, Path]) -> None:
    with pytest.raises(CsiOtaError, match="needs an RSA-3072 key"):
        secure_boot.sign_app_image(setup["image"].read_bytes(), setup["key"])


def test_esptool_image_info_accepts_released_images(setup: dict[str, Path], sb_key: Path) -> None:
    signed = Path(create(setup, "--secure-boot-key", sb_key)["image"])
    for path in (setup["image"], signed):
        proc = subprocess.run(
            [sys.executable, "-m", "esptool", "--chip", "esp32s3", "image-info", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "(valid)" in proc.stdout
        assert "invalid" not in proc.stdout.lower()


def test_secure_pad_is_a_no_op_for_an_already_padded_image() -> None:
    image = build_app_image(ImageSpec("1.0.0"))
    padded = secure_boot.secure_pad(image)
    assert len(padded) % secure_boot.MMU_PAGE_BYTES == 0
    assert secure_boot.secure_pad(padded) == padded
