"""The signed release manifest — exactly the bytes of docs/manifest.md.

``key=value`` lines, ``\\n`` endings, at most 1024 bytes; the last line is
``signature=<128 hex>``: ECDSA P-256 over SHA-256 of every byte before it,
raw r||s. Parsing is strict and names the exact problem; unknown keys are
allowed (and covered by the signature) but ignored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from csi_ota.controller.semver import PRERELEASE_IDENTIFIER
from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError
from csi_ota.keys import key_id_for

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_KEYS",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "SignedManifest",
    "key_id_for",
    "manifest_for_image",
    "parse_manifest",
    "render_manifest",
    "sign_manifest",
    "signed_message_digest",
    "verify_manifest",
]

MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 1024
U32_MAX = 0xFFFFFFFF
U16_MAX = 0xFFFF
SIGNATURE_KEY = "signature"
SIGNATURE_BYTES = 64  # raw r || s
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(-{PRERELEASE_IDENTIFIER}(\.{PRERELEASE_IDENTIFIER})*)?$"
)
_PROJECT = re.compile(r"^[A-Za-z0-9_.-]+$")
_LOWER_HEX = re.compile(r"^[0-9a-f]*$")
_CREATED = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
_KEY = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class FieldRule:
    """How one manifest value is written and checked."""

    kind: str  # "u32", "u16", "bool", "hex", "semver", "project", "created", "text", "format"
    max_bytes: int
    hex_chars: int = 0  # exact length for "hex"
    min_value: int = 0  # for numbers


# Key order as the writer emits it (docs/manifest.md); `signature` is always last.
MANIFEST_KEYS: dict[str, FieldRule] = {
    "format": FieldRule("format", 1),
    "project": FieldRule("project", 31),  # esp_app_desc_t.project_name[32] with terminator
    "version": FieldRule("semver", 31),  # esp_app_desc_t.version[32] with terminator
    "sequence": FieldRule("u32", 10),
    "chip_id": FieldRule("u16", 5),
    "min_chip_rev_full": FieldRule("u16", 5),
    "max_chip_rev_full": FieldRule("u16", 5),
    "secure_version": FieldRule("u32", 10),
    "size": FieldRule("u32", 10, min_value=1),
    "sha256": FieldRule("hex", 64, hex_chars=64),
    "rollback": FieldRule("bool", 1),
    "created": FieldRule("created", 20),
    "key_id": FieldRule("hex", 16, hex_chars=16),
    "notes": FieldRule("text", 200),
}
SIGNATURE_RULE = FieldRule("hex", 2 * SIGNATURE_BYTES, hex_chars=2 * SIGNATURE_BYTES)


@dataclass(frozen=True)
class Manifest:
    """The fields of a release manifest (docs/manifest.md), in writer order."""

    format: int
    project: str
    version: str
    sequence: int
    chip_id: int
    min_chip_rev_full: int
    max_chip_rev_full: int
    secure_version: int
    size: int
    sha256: str
    rollback: bool
    created: str
    key_id: str
    notes: str = ""

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class SignedManifest:
    """A parsed manifest: its fields, the signed bytes and the raw r||s signature."""

    manifest: Manifest
    signed_bytes: bytes
    signature: bytes
    unknown_keys: tuple[str, ...] = ()

    @property
    def data(self) -> bytes:
        """The complete manifest bytes."""
        return self.signed_bytes + f"{SIGNATURE_KEY}={self.signature.hex()}\n".encode()


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def _render_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _check_value(name: str, text: str, rule: FieldRule) -> object:
    """Return the typed value of ``text`` or raise CsiOtaError naming the problem."""
    raw_len = len(text.encode("utf-8"))
    if raw_len > rule.max_bytes:
        raise CsiOtaError(f"manifest: {name} is {raw_len} bytes, at most {rule.max_bytes} allowed")
    if rule.kind in ("u32", "u16", "format"):
        if not _DECIMAL.match(text):
            raise CsiOtaError(f"manifest: {name}={text!r} is not a decimal number")
        number = int(text)
        limit = U16_MAX if rule.kind == "u16" else U32_MAX
        if number > limit:
            raise CsiOtaError(f"manifest: {name}={number} is above {limit}")
        if number < rule.min_value:
            raise CsiOtaError(f"manifest: {name}={number} is below {rule.min_value}")
        if rule.kind == "format" and number != MANIFEST_FORMAT:
            raise CsiOtaError(
                f"manifest: format {number} is not supported (this tool reads {MANIFEST_FORMAT})"
            )
        return number
    if rule.kind == "bool":
        if text not in ("0", "1"):
            raise CsiOtaError(f"manifest: {name}={text!r} must be 0 or 1")
        return text == "1"
    if rule.kind == "hex":
        if not _LOWER_HEX.match(text):
            raise CsiOtaError(f"manifest: {name} is not lowercase hex")
        if len(text) != rule.hex_chars:
            raise CsiOtaError(f"manifest: {name} has {len(text)} hex characters, expected {rule.hex_chars}")
        return text
    if rule.kind == "semver":
        if not _SEMVER.match(text):
            raise CsiOtaError(f"manifest: version {text!r} is not semver MAJOR.MINOR.PATCH[-pre]")
        return text
    if rule.kind == "project":
        if not _PROJECT.match(text):
            raise CsiOtaError(f"manifest: project {text!r} must be non-empty [A-Za-z0-9_.-]")
        return text
    if rule.kind == "created":
        if not _CREATED.match(text):
            raise CsiOtaError(f"manifest: created {text!r} is not UTC YYYY-MM-DDTHH:MM:SSZ")
        try:
            datetime.strptime(text, CREATED_FORMAT)
        except ValueError:
            raise CsiOtaError(f"manifest: created {text!r} is not a real date and time") from None
        return text
    return text  # "text": control characters are refused for every line


def _check_text(where: str, text: str) -> None:
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise CsiOtaError(f"manifest: {where} contains control character {ord(ch):#04x}")


def _check_revision_range(min_rev: int, max_rev: int) -> None:
    # As the device's parser: max 0 means "no upper bound".
    if min_rev > max_rev and max_rev != 0:
        raise CsiOtaError(f"manifest: min_chip_rev_full {min_rev} is above max_chip_rev_full {max_rev}")


def _validate(m: Manifest) -> None:
    for name, rule in MANIFEST_KEYS.items():
        value = getattr(m, name)
        if rule.kind == "bool" and not isinstance(value, bool):
            raise CsiOtaError(f"manifest: {name} must be a bool")
        if rule.kind in ("u32", "u16", "format") and (isinstance(value, bool) or not isinstance(value, int)):
            raise CsiOtaError(f"manifest: {name} must be an integer")
        text = _render_value(name, value)
        _check_text(name, text)
        _check_value(name, text, rule)
    _check_revision_range(m.min_chip_rev_full, m.max_chip_rev_full)


# ---------------------------------------------------------------------------
# Writing and signing
# ---------------------------------------------------------------------------


def render_manifest(m: Manifest) -> bytes:
    """The signed part: every ``key=value\\n`` line up to and including ``notes=``."""
    _validate(m)
    lines = [f"{name}={_render_value(name, getattr(m, name))}\n" for name in MANIFEST_KEYS]
    return "".join(lines).encode("utf-8")


def signed_message_digest(signed_bytes: bytes) -> bytes:
    """SHA-256 of the signed bytes — what the device hands to psa_verify_hash."""
    return hashlib.sha256(signed_bytes).digest()


def _raw_signature(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign_manifest(m: Manifest, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The complete manifest bytes: rendered fields + ``signature=<r||s hex>\\n``.

    ``m.key_id`` must be the id of ``private_key``'s public key.
    """
    expected_id = key_id_for(private_key.public_key())
    if m.key_id != expected_id:
        raise CsiOtaError(f"manifest key_id {m.key_id} is not the signing key's id {expected_id}")
    signed = render_manifest(m)
    der = private_key.sign(signed_message_digest(signed), ec.ECDSA(Prehashed(hashes.SHA256())))
    data = signed + f"{SIGNATURE_KEY}={_raw_signature(der).hex()}\n".encode()
    if len(data) > MAX_MANIFEST_BYTES:
        raise CsiOtaError(f"manifest would be {len(data)} bytes, at most {MAX_MANIFEST_BYTES} allowed")
    return data


# ---------------------------------------------------------------------------
# Parsing and verifying
# ---------------------------------------------------------------------------


def parse_manifest(data: bytes) -> SignedManifest:
    """Parse manifest bytes strictly (no signature check); CsiOtaError names the problem."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise CsiOtaError(f"manifest: {len(data)} bytes, at most {MAX_MANIFEST_BYTES} allowed")
    if not data:
        raise CsiOtaError("manifest: empty")
    if b"\r" in data:
        position = data.index(b"\r")
        raise CsiOtaError(f"manifest: carriage return (\\r) at byte {position}; lines end in \\n only")
    if not data.endswith(b"\n"):
        raise CsiOtaError("manifest: missing final newline")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsiOtaError(f"manifest: not UTF-8 at byte {exc.start}") from None

    values: dict[str, str] = {}
    unknown: list[str] = []
    signature_text: str | None = None
    signed_end = 0
    offset = 0
    lines = text[:-1].split("\n")
    for number, line in enumerate(lines, start=1):
        if "=" not in line:
            raise CsiOtaError(f"manifest: line {number}: expected key=value, got {line[:40]!r}")
        key, value = line.split("=", 1)
        if not _KEY.match(key):
            raise CsiOtaError(f"manifest: line {number}: key {key[:40]!r} is not [a-z0-9_]+")
        if key in values or (key == SIGNATURE_KEY and signature_text is not None):
            raise CsiOtaError(f"manifest: line {number}: duplicate key {key}")
        if signature_text is not None:
            raise CsiOtaError(
                f"manifest: line {number}: {key} follows the signature line, which must be last"
            )
        _check_text(f"line {number} ({key})", value)
        if key == SIGNATURE_KEY:
            signature_text = value
            signed_end = offset
        else:
            values[key] = value
            if key not in MANIFEST_KEYS:
                unknown.append(key)
        offset += len(line.encode("utf-8")) + 1

    missing = [name for name in MANIFEST_KEYS if name not in values]
    if missing:
        raise CsiOtaError(f"manifest: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if signature_text is None:
        raise CsiOtaError("manifest: missing key signature (it must be the last line)")
    typed = {name: _check_value(name, values[name], rule) for name, rule in MANIFEST_KEYS.items()}
    _check_value(SIGNATURE_KEY, signature_text, SIGNATURE_RULE)
    _check_revision_range(typed["min_chip_rev_full"], typed["max_chip_rev_full"])  # type: ignore[arg-type]
    manifest = Manifest(**typed)  # type: ignore[arg-type]
    return SignedManifest(
        manifest=manifest,
        signed_bytes=data[:signed_end],
        signature=bytes.fromhex(signature_text),
        unknown_keys=tuple(unknown),
    )


def check_signature(signed: SignedManifest, public_key: ec.EllipticCurvePublicKey) -> bool:
    """True when ``signed.signature`` is a valid signature of the signed bytes by ``public_key``."""
    r = int.from_bytes(signed.signature[:32], "big")
    s = int.from_bytes(signed.signature[32:], "big")
    try:
        public_key.verify(
            encode_dss_signature(r, s),
            signed_message_digest(signed.signed_bytes),
            ec.ECDSA(Prehashed(hashes.SHA256())),
        )
    except InvalidSignature:
        return False
    return True


def verify_manifest(data: bytes, trusted_public_keys: Iterable[ec.EllipticCurvePublicKey]) -> Manifest:
    """Parse and check the signature against the trusted key named by ``key_id``.

    Malformed bytes raise CsiOtaError with exit code 2; an unknown key or a bad
    signature raise it with exit code 1 (a check that ran and failed).
    """
    signed = parse_manifest(data)
    trusted = {key_id_for(k): k for k in trusted_public_keys}
    key = trusted.get(signed.manifest.key_id)
    if key is None:
        known = ", ".join(sorted(trusted)) or "none"
        raise CsiOtaError(
            f"manifest key: signed by key {signed.manifest.key_id}, which is not trusted (trusted: {known})",
            exit_code=EXIT_OPERATION_FAILED,
        )
    if not check_signature(signed, key):
        raise CsiOtaError(
            f"manifest signature: does not verify with key {signed.manifest.key_id}",
            exit_code=EXIT_OPERATION_FAILED,
        )
    return signed.manifest


# ---------------------------------------------------------------------------
# From an image
# ---------------------------------------------------------------------------


def utc_now_text(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    return now().strftime(CREATED_FORMAT)


def manifest_for_image(
    image: bytes,
    *,
    sequence: int,
    key_id: str,
    rollback: bool = False,
    notes: str = "",
    created: str | None = None,
) -> Manifest:
    """A Manifest describing ``image``: app_desc, header chip fields, size and SHA-256."""
    from csi_ota.release import describe_image  # release imports manifest; avoid a cycle

    info = describe_image(image)
    if not _SEMVER.match(info.version):
        raise CsiOtaError(
            f"image: esp_app_desc_t.version {info.version!r} is not semver MAJOR.MINOR.PATCH[-pre]; "
            "set the app version with firmware/version.txt or PROJECT_VER"
        )
    m = Manifest(
        format=MANIFEST_FORMAT,
        project=info.project,
        version=info.version,
        sequence=sequence,
        chip_id=info.chip_id,
        min_chip_rev_full=info.min_chip_rev_full,
        max_chip_rev_full=info.max_chip_rev_full,
        secure_version=info.secure_version,
        size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        rollback=rollback,
        created=created or utc_now_text(),
        key_id=key_id,
        notes=notes,
    )
    _validate(m)
    return m
