"""The manifest bytes of docs/manifest.md: writing, signing, strict parsing, verifying."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from csi_ota import manifest as mf
from csi_ota.errors import CsiOtaError
from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.keys import key_id_for, public_key_raw

KEY = ec.generate_private_key(ec.SECP256R1())
KEY_ID = key_id_for(KEY.public_key())

EXPECTED_KEY_ORDER = [
    "format",
    "project",
    "version",
    "sequence",
    "chip_id",
    "min_chip_rev_full",
    "max_chip_rev_full",
    "secure_version",
    "size",
    "sha256",
    "rollback",
    "created",
    "key_id",
    "notes",
    "signature",
]


def sample(**changes: object) -> mf.Manifest:
    base = mf.Manifest(
        format=1,
        project="csi_sensor",
        version="1.2.0",
        sequence=17,
        chip_id=9,
        min_chip_rev_full=0,
        max_chip_rev_full=99,
        secure_version=0,
        size=812345,
        sha256="ab" * 32,
        rollback=False,
        created="2026-11-28T16:50:00Z",
        key_id=KEY_ID,
        notes="fix CSI timestamps",
    )
    return dataclasses.replace(base, **changes)


def resign(signed_part: bytes) -> bytes:
    """Sign arbitrary bytes the way sign_manifest does (to build malformed-but-signed inputs)."""
    der = KEY.sign(hashlib.sha256(signed_part).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    return signed_part + b"signature=" + mf._raw_signature(der).hex().encode() + b"\n"


def test_signed_manifest_has_the_documented_bytes() -> None:
    data = mf.sign_manifest(sample(), KEY)
    text = data.decode()
    lines = text.split("\n")
    assert lines[-1] == "" and "\r" not in text
    assert [line.split("=", 1)[0] for line in lines[:-1]] == EXPECTED_KEY_ORDER
    assert text.startswith(
        "format=1\nproject=csi_sensor\nversion=1.2.0\nsequence=17\nchip_id=9\n"
        "min_chip_rev_full=0\nmax_chip_rev_full=99\nsecure_version=0\nsize=812345\n"
        f"sha256={'ab' * 32}\nrollback=0\ncreated=2026-11-28T16:50:00Z\nkey_id={KEY_ID}\n"
        "notes=fix CSI timestamps\nsignature="
    )
    assert len(data) <= mf.MAX_MANIFEST_BYTES


def test_signature_is_raw_r_s_over_sha256_of_everything_before_signature_line() -> None:
    data = mf.sign_manifest(sample(), KEY)
    cut = data.index(b"signature=")
    signed_part, signature_hex = data[:cut], data[cut + len("signature=") : -1]
    assert signed_part.endswith(b"notes=fix CSI timestamps\n")
    assert len(signature_hex) == 128 and signature_hex == signature_hex.lower()
    raw = bytes.fromhex(signature_hex.decode())
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    # What a device does: SHA-256 of the signed bytes, ECDSA verify with the raw 65-byte key.
    device_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), public_key_raw(KEY.public_key())
    )
    device_key.verify(der, hashlib.sha256(signed_part).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    with pytest.raises(InvalidSignature):
        device_key.verify(
            der, hashlib.sha256(signed_part + b"x").digest(), ec.ECDSA(Prehashed(hashes.SHA256()))
        )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_verifies_the_signature_over_the_signed_bytes(tmp_path: Path) -> None:
    data = mf.sign_manifest(sample(), KEY)
    signed = mf.parse_manifest(data)
    (tmp_path / "signed.bin").write_bytes(signed.signed_bytes)
    r, s = int.from_bytes(signed.signature[:32], "big"), int.from_bytes(signed.signature[32:], "big")
    (tmp_path / "sig.der").write_bytes(encode_dss_signature(r, s))
    (tmp_path / "pub.pem").write_bytes(
        KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    command = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der"]
    ok = subprocess.run([*command, "signed.bin"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout
    (tmp_path / "signed.bin").write_bytes(signed.signed_bytes.replace(b"sequence=17", b"sequence=18"))
    bad = subprocess.run([*command, "signed.bin"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "Verification failure" in bad.stdout


def test_parse_round_trips_and_verify_accepts_trusted_key() -> None:
    m = sample(rollback=True, notes="")
    data = mf.sign_manifest(m, KEY)
    signed = mf.parse_manifest(data)
    assert signed.manifest == m
    assert signed.data == data
    assert mf.verify_manifest(data, [KEY.public_key()]) == m


def test_verify_refuses_untrusted_key_with_exit_1() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    data = mf.sign_manifest(sample(), KEY)
    with pytest.raises(CsiOtaError, match=f"signed by key {KEY_ID}, which is not trusted") as info:
        mf.verify_manifest(data, [other.public_key()])
    assert info.value.exit_code == 1


def test_every_flipped_byte_is_detected() -> None:
    data = mf.sign_manifest(sample(), KEY)
    for position in range(len(data)):
        for bit in (0x01, 0x20):
            tampered = bytearray(data)
            tampered[position] ^= bit
            with pytest.raises(CsiOtaError):
                mf.verify_manifest(bytes(tampered), [KEY.public_key()])


def test_sign_refuses_a_key_id_that_is_not_the_signers() -> None:
    with pytest.raises(CsiOtaError, match="is not the signing key's id"):
        mf.sign_manifest(sample(key_id="0" * 16), KEY)


GOOD = mf.sign_manifest(sample(), KEY)


def replace_line(key: str, value: str) -> bytes:
    lines = GOOD.decode().split("\n")
    out = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    return "\n".join(out).encode()


MALFORMED = [
    (GOOD.replace(b"\n", b"\r\n"), "carriage return"),
    (GOOD[:-1], "missing final newline"),
    (b"", "empty"),
    (GOOD.replace(b"sequence=17\n", b"sequence=17\nsequence=18\n"), "duplicate key sequence"),
    (GOOD.replace(b"chip_id=9\n", b""), "missing key chip_id"),
    (GOOD.replace(b"chip_id=9\n", b"").replace(b"size=812345\n", b""), "missing keys chip_id, size"),
    (GOOD[: GOOD.index(b"signature=")], "missing key signature"),
    (replace_line("sha256", "AB" * 32), "sha256 is not lowercase hex"),
    (replace_line("sha256", "zz" * 32), "sha256 is not lowercase hex"),
    (replace_line("sha256", "ab" * 31), "sha256 has 62 hex characters, expected 64"),
    (replace_line("signature", "00" * 63), "signature has 126 hex characters"),
    (replace_line("notes", "n" * 201), "notes is 201 bytes, at most 200"),
    (replace_line("project", "p" * 32), "project is 32 bytes, at most 31"),
    (replace_line("version", "1.2"), "not semver"),
    (replace_line("sequence", "4294967296"), "above 4294967295"),
    (replace_line("sequence", "017"), "not a decimal number"),
    (replace_line("sequence", "-1"), "not a decimal number"),
    (replace_line("chip_id", "65536"), "above 65535"),
    (replace_line("rollback", "2"), "must be 0 or 1"),
    (replace_line("created", "2026-11-28 16:50:00"), "not UTC"),
    (replace_line("created", "2026-02-30T16:50:00Z"), "not a real date"),
    (replace_line("format", "2"), "format 2 is not supported"),
    (replace_line("notes", "tab\there"), "control character 0x09"),
    (GOOD.replace(b"notes=", b"Notes="), "is not [a-z0-9_]+"),
    (GOOD.replace(b"notes=fix CSI timestamps\n", b"notes fix\n"), "expected key=value"),
    (GOOD + b"extra=1\n", "follows the signature line"),
    (GOOD.replace(b"notes=fix", b"notes=\xff"), "not UTF-8"),
    (GOOD.replace(b"created=", b"padding=" + b"y" * 700 + b"\ncreated="), "at most 1024"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=[message for _, message in MALFORMED])
def test_malformed_manifests_name_the_exact_problem(data: bytes, message: str) -> None:
    with pytest.raises(CsiOtaError, match=re.escape(message)) as info:
        mf.parse_manifest(data)
    assert info.value.exit_code == 2


def test_unknown_keys_are_signed_but_ignored() -> None:
    signed_part = mf.render_manifest(sample())
    with_extra = signed_part.replace(b"notes=", b"channel=beta\nnotes=")
    data = resign(with_extra)
    parsed = mf.parse_manifest(data)
    assert parsed.manifest == sample()
    assert parsed.unknown_keys == ("channel",)
    assert mf.verify_manifest(data, [KEY.public_key()]) == sample()
    # ...and covered by the signature: changing the unknown value breaks it.
    with pytest.raises(CsiOtaError, match="does not verify"):
        mf.verify_manifest(data.replace(b"channel=beta", b"channel=prod"), [KEY.public_key()])


def test_render_refuses_values_a_device_would_refuse() -> None:
    with pytest.raises(CsiOtaError, match="notes is 201 bytes"):
        mf.render_manifest(sample(notes="x" * 201))
    with pytest.raises(CsiOtaError, match="control character 0x0a"):
        mf.render_manifest(sample(notes="two\nlines"))
    with pytest.raises(CsiOtaError, match="sequence=4294967296 is above"):
        mf.render_manifest(sample(sequence=2**32))


def test_manifest_for_image_reads_app_desc_and_header() -> None:
    image = build_app_image(
        ImageSpec("3.4.5-rc.1", project_name="csi_probe", secure_version=7, min_rev_full=1, max_rev_full=199)
    )
    m = mf.manifest_for_image(image, sequence=5, key_id=KEY_ID, rollback=True, notes="n")
    assert (m.project, m.version, m.secure_version) == ("csi_probe", "3.4.5-rc.1", 7)
    assert (m.chip_id, m.min_chip_rev_full, m.max_chip_rev_full) == (9, 1, 199)
    assert (m.size, m.sha256) == (len(image), hashlib.sha256(image).hexdigest())
    assert m.rollback is True and m.sequence == 5 and m.notes == "n"


@settings(max_examples=60, deadline=None)
@given(
    notes=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_characters="\x7f"),
        max_size=60,
    ),
    sequence=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_round_trip_property(notes: str, sequence: int) -> None:
    m = sample(notes=notes, sequence=sequence)
    data = mf.sign_manifest(m, KEY)
    assert mf.verify_manifest(data, [KEY.public_key()]) == m
