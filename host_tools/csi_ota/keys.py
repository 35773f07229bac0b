"""Release signing keys: ECDSA P-256 (secp256r1) via the cryptography package.

A release key is a PEM private key file written with mode 0600 and never
printed; beside it sits the PEM public key (``<stem>.pub.pem``). Devices trust
raw uncompressed points (``04||X||Y``, 65 bytes) named by a *key id*: the first
8 bytes of SHA-256 of that raw point, 16 lowercase hex (docs/manifest.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic

PRIVATE_KEY_FILE_MODE = 0o600
PUBLIC_KEY_FILE_MODE = 0o644
RAW_PUBLIC_KEY_BYTES = 65  # 0x04 || X (32) || Y (32)
KEY_ID_BYTES = 8
KEY_ID_HEX_CHARS = 2 * KEY_ID_BYTES
PUBLIC_KEY_SUFFIX = ".pub.pem"
CURVE_NAME = "secp256r1"
# The firmware's Kconfig option listing trusted keys: "<keyid>:<130 hex>,<keyid>:<130 hex>".
KCONFIG_TRUSTED_KEYS = "CONFIG_CSI_OTA_TRUSTED_KEYS"
PUBLIC_KEY_FORMATS = ("pem", "hex", "c", "kconfig")

_KCONFIG_ENTRY = re.compile(r"^([0-9a-f]{16}):(04[0-9a-f]{128})$")


def public_key_path_for(private_key_path: str | os.PathLike[str]) -> Path:
    """``release.pem`` → ``release.pub.pem`` (where `keys generate` puts the public key)."""
    path = Path(private_key_path)
    stem = path.name[: -len(".pem")] if path.name.endswith(".pem") else path.name
    return path.with_name(stem + PUBLIC_KEY_SUFFIX)


def generate_key(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Create a new P-256 release key at ``path`` (PEM, mode 0600) and its public key beside it.

    A missing directory is created (mode 0700). Refuses to overwrite an existing key unless
    ``force``. Returns ``path``.
    """
    target = Path(path)
    public_path = public_key_path_for(target)
    if not force:
        for existing in (target, public_path):
            if existing.exists():
                raise CsiOtaError(f"{existing} already exists; use --force to replace it")
    if target.parent.exists() and not target.parent.is_dir():
        raise CsiOtaError(f"{target.parent} is not a directory")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key = ec.generate_private_key(ec.SECP256R1())
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(target, private_pem, mode=PRIVATE_KEY_FILE_MODE)
    write_atomic(public_path, public_pem, mode=PUBLIC_KEY_FILE_MODE)
    return target


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CsiOtaError(f"key file {path} not found") from None
    except IsADirectoryError:
        raise CsiOtaError(f"key file {path} is a directory") from None
    except PermissionError:
        raise CsiOtaError(f"key file {path} is not readable") from None


def _require_p256(key: object, path: str | os.PathLike[str]) -> None:
    curve = getattr(key, "curve", None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or curve is None:
        raise CsiOtaError(f"{path}: not an ECDSA key (release keys are ECDSA P-256)")
    if curve.name != CURVE_NAME:
        raise CsiOtaError(f"{path}: key is on curve {curve.name}, release keys use P-256 ({CURVE_NAME})")


def load_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Load a PEM P-256 private key (unencrypted) or raise CsiOtaError."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CsiOtaError(f"{path}: encrypted private keys are not supported") from None
    except ValueError:
        raise CsiOtaError(f"{path}: not a PEM private key") from None
    _require_p256(key, path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def load_public_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from a PEM public key or a PEM private key file."""
    data = _read(path)
    if b"PRIVATE KEY-----" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise CsiOtaError(f"{path}: not a PEM public or private key") from None
    _require_p256(key, path)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def public_key_raw(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed point ``04||X||Y`` the firmware embeds."""
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def public_key_from_raw(raw: bytes) -> ec.EllipticCurvePublicKey:
    """Inverse of :func:`public_key_raw`; CsiOtaError for a point not on P-256."""
    if len(raw) != RAW_PUBLIC_KEY_BYTES or raw[0] != 0x04:
        raise CsiOtaError(f"a raw public key is {RAW_PUBLIC_KEY_BYTES} bytes starting with 04")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise CsiOtaError("raw public key is not a point on P-256") from None


def key_id_for(public_key: ec.EllipticCurvePublicKey) -> str:
    """First 8 bytes of SHA-256 of the raw public key, 16 lowercase hex."""
    return hashlib.sha256(public_key_raw(public_key)).digest()[:KEY_ID_BYTES].hex()


def _c_identifier(key_id: str) -> str:
    return f"csi_ota_release_key_{key_id}"


def format_public_key(public_key: ec.EllipticCurvePublicKey, fmt: str) -> str:
    """Render one public key as ``pem``, ``hex`` (130 chars), ``c`` (array) or ``kconfig``."""
    raw = public_key_raw(public_key)
    key_id = key_id_for(public_key)
    if fmt == "pem":
        return public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
    if fmt == "hex":
        return raw.hex() + "\n"
    if fmt == "c":
        rows = [", ".join(f"0x{b:02x}" for b in raw[i : i + 13]) for i in range(0, len(raw), 13)]
        body = ",\n    ".join(rows)
        name = _c_identifier(key_id)
        return (
            f"/* csi-ota release key {key_id}: ECDSA P-256, uncompressed point 04||X||Y */\n"
            f'static const char {name}_id[] = "{key_id}";\n'
            f"static const uint8_t {name}[{RAW_PUBLIC_KEY_BYTES}] = {{\n    {body},\n}};\n"
        )
    if fmt == "kconfig":
        return kconfig_trusted_keys_line([public_key]) + "\n"
    raise CsiOtaError(f"unknown key format {fmt!r}; choose one of {', '.join(PUBLIC_KEY_FORMATS)}")


def trusted_keys_value(public_keys: Iterable[ec.EllipticCurvePublicKey]) -> str:
    """``<keyid>:<hex>,…``: the value of CONFIG_CSI_OTA_TRUSTED_KEYS and of the sim's trusted_keys."""
    entries = [f"{key_id_for(k)}:{public_key_raw(k).hex()}" for k in public_keys]
    if not entries:
        raise CsiOtaError("at least one public key is needed")
    return ",".join(entries)


def kconfig_trusted_keys_line(public_keys: Iterable[ec.EllipticCurvePublicKey]) -> str:
    """``CONFIG_CSI_OTA_TRUSTED_KEYS="<keyid>:<hex>,…"`` for sdkconfig / sdkconfig.defaults."""
    return f'{KCONFIG_TRUSTED_KEYS}="{trusted_keys_value(public_keys)}"'


def parse_trusted_keys(value: str) -> dict[str, ec.EllipticCurvePublicKey]:
    """Parse the Kconfig value (without quotes) into {key_id: public key}, checking every id."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for index, entry in enumerate(value.split(","), start=1):
        match = _KCONFIG_ENTRY.match(entry.strip())
        if match is None:
            raise CsiOtaError(
                f"trusted key {index}: expected <16 hex key id>:<130 hex raw key>, got {entry!r}"
            )
        key = public_key_from_raw(bytes.fromhex(match.group(2)))
        if key_id_for(key) != match.group(1):
            raise CsiOtaError(f"trusted key {index}: key id {match.group(1)} does not match its key")
        keys[match.group(1)] = key
    return keys
