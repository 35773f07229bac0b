"""csi-ota keys: ECDSA P-256 release keys, their files, ids and the formats the firmware embeds."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csi_ota import keys
from csi_ota.cli import main
from csi_ota.errors import CsiOtaError


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `csi-ota ARGS` in-process; returns (exit code, stdout, stderr with rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


@pytest.fixture()
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "release.pem"
    code, _, err = run_cli("keys", "generate", path)
    assert code == 0, err
    return path


def test_generate_writes_0600_private_key_and_public_key_without_printing_it(tmp_path: Path) -> None:
    path = tmp_path / "release.pem"
    code, out, err = run_cli("keys", "generate", path)
    assert code == 0, err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in out + err
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp256r1"
    public_path = tmp_path / "release.pub.pem"
    public = serialization.load_pem_public_key(public_path.read_bytes())
    assert public == private.public_key()
    assert keys.key_id_for(private.public_key()) in out
    assert not list(tmp_path.glob(".*tmp*")), "temp files left behind"


def test_generate_refuses_to_overwrite_without_force(key_path: Path) -> None:
    before = key_path.read_bytes()
    code, _, err = run_cli("keys", "generate", key_path)
    assert code == 2
    assert "already exists" in err and "--force" in err
    assert key_path.read_bytes() == before
    code, _, _ = run_cli("keys", "generate", key_path, "--force")
    assert code == 0
    assert key_path.read_bytes() != before
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_key_id_is_first_8_bytes_of_sha256_of_raw_point(key_path: Path) -> None:
    private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    numbers = private.public_key().public_numbers()
    raw = b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    expected = hashlib.sha256(raw).hexdigest()[:16]
    for source in (key_path, key_path.with_name("release.pub.pem")):
        code, out, _ = run_cli("keys", "id", source)
        assert code == 0
        assert out.strip() == expected


def test_show_public_hex_c_and_kconfig_carry_the_same_raw_key(key_path: Path) -> None:
    public = keys.load_public_key(key_path)
    raw = keys.public_key_raw(public)
    assert len(raw) == 65 and raw[0] == 4

    code, out, _ = run_cli("keys", "show-public", key_path, "--format", "hex")
    assert code == 0
    assert out.strip() == raw.hex() and len(out.strip()) == 130

    code, out, _ = run_cli("keys", "show-public", key_path, "--format", "c")
    assert code == 0
    array = re.search(r"\[65\] = \{(.*?)\};", out, re.S)
    assert array is not None
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", array.group(1))) == raw
    assert f'"{keys.key_id_for(public)}"' in out

    code, out, _ = run_cli("keys", "show-public", key_path, "--format", "kconfig")
    assert code == 0
    match = re.fullmatch(r'CONFIG_CSI_OTA_TRUSTED_KEYS="([^"]+)"\n', out)
    assert match is not None
    assert keys.parse_trusted_keys(match.group(1)) == {keys.key_id_for(public): public}

    code, out, _ = run_cli("keys", "show-public", key_path)
    assert code == 0
    assert "PUBLIC KEY" in out and "PRIVATE" not in out


def test_kconfig_lists_several_keys_comma_separated(tmp_path: Path, key_path: Path) -> None:
    second = keys.generate_key(tmp_path / "second.pem")
    code, out, _ = run_cli("keys", "show-public", key_path, second, "--format", "kconfig")
    assert code == 0
    value = out.split('"')[1]
    parsed = keys.parse_trusted_keys(value)
    assert set(parsed) == {keys.key_id_for(keys.load_public_key(p)) for p in (key_path, second)}
    assert value.count(",") == 1


def test_parse_trusted_keys_rejects_a_mismatched_id(key_path: Path) -> None:
    public = keys.load_public_key(key_path)
    wrong = f"{'0' * 16}:{keys.public_key_raw(public).hex()}"
    with pytest.raises(CsiOtaError, match="does not match"):
        keys.parse_trusted_keys(wrong)
    with pytest.raises(CsiOtaError, match="expected <16 hex key id>"):
        keys.parse_trusted_keys("abc:04")


def test_bad_key_files_are_clear_input_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    code, _, err = run_cli("keys", "id", garbage)
    assert code == 2
    assert "not a PEM public or private key" in err

    p384 = tmp_path / "p384.pem"
    p384.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    code, _, err = run_cli("keys", "show-public", p384)
    assert code == 2
    assert "P-256" in err

    code, _, err = run_cli("keys", "id", tmp_path / "missing.pem")
    assert code == 2
    assert "does not exist" in err


def test_generate_creates_a_missing_directory_private_to_the_user(tmp_path: Path) -> None:
    # README: `csi-ota keys generate keys/release.pem` on a fresh clone, where keys/ does not exist.
    code, _, err = run_cli("keys", "generate", tmp_path / "keys" / "release.pem")
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert (tmp_path / "keys" / "release.pub.pem").is_file()
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli("keys", "generate", tmp_path / "file" / "k.pem")
    assert code == 2 and "is not a directory" in err
