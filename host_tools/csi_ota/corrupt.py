"""`csi-ota corrupt`: bad images and manifests made from good ones, one defect each.

Every kind breaks exactly one thing and repairs what would otherwise give the
defect away earlier (the appended SHA-256 is recomputed after a header edit,
the signature is redone after a field edit), so a device reports the intended
reason (an ota_status_t name, see :data:`CORRUPT_KINDS`). Image kinds read
and write images with esptool's classes; manifest kinds re-sign with
csi_ota.manifest. QA reproduces any rejection scenario by hand with these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from esptool.bin_image import ELFSection

from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.imagegen import ESP32S3_CHIP_ID, load_image
from csi_ota.keys import key_id_for, load_private_key
from csi_ota.manifest import manifest_for_image, parse_manifest, sign_manifest
from csi_ota.release import DEFAULT_SLOT_SIZE_BYTES, describe_image, reserve_sequence

# Offsets in the 24-byte ESP image header (esptool's common + extended header).
HEADER_CHIP_ID_OFFSET = 12  # u16
HEADER_MIN_REV_OFFSET = 14  # u8, major revision (legacy)
HEADER_MIN_REV_FULL_OFFSET = 15  # u16
HEADER_BYTES = 24
SHA256_BYTES = 32
ESP_IMAGE_MAGIC = 0xE9

TRUNCATE_BYTES = 64_000
TRUNCATE_HEADER_BYTES = 180
WRONG_CHIP_ID = 5  # ESP32-C3
UNREACHABLE_MIN_REV_FULL = 9900  # v99.00: above any real chip
TOO_LARGE_MARGIN_BYTES = 65_536  # how far beyond the slot `too-large` grows the image


@dataclass(frozen=True)
class CorruptKind:
    name: str
    target: str  # "image" or "manifest"
    description: str
    reason: str  # what the device reports (ota_status_t name, lower case, without OTA_ERR_)


@dataclass(frozen=True)
class CorruptResult:
    kind: CorruptKind
    out_path: Path
    detail: str
    manifest_path: Path | None = None


# ---------------------------------------------------------------------------
# Image helpers
# ---------------------------------------------------------------------------


def _parse(image: bytes):  # -> esptool ESP32S3FirmwareImage
    try:
        return load_image(image)
    except Exception as exc:
        raise CsiOtaError(f"input image: not a valid ESP32-S3 app image ({exc})") from None


def _digest_offset(image: bytes) -> int:
    """Offset of the appended SHA-256 (= the length it covers)."""
    parsed = _parse(image)
    if not parsed.append_digest or parsed.data_length is None:
        raise CsiOtaError("input image has no appended SHA-256")
    return parsed.data_length


def rehash(image: bytes) -> bytes:
    """Recompute the appended SHA-256 after an edit elsewhere."""
    end = _digest_offset(image)
    return image[:end] + hashlib.sha256(image[:end]).digest() + image[end + SHA256_BYTES :]


def _with_header_u16(image: bytes, offset: int, value: int) -> bytes:
    edited = bytearray(image)
    struct.pack_into("<H", edited, offset, value)
    return bytes(edited)


def relay_out(image: bytes, grow_bytes: int = 0) -> bytes:
    """Save ``image`` again with esptool (its largest segment grown by ``grow_bytes``), checksum + SHA valid."""
    parsed = _parse(image)
    segments = [
        ELFSection(f".seg{i}".encode(), s.addr, s.data, flags=0)
        for i, s in enumerate(parsed.segments)
        if s.addr != 0  # padding segments: esptool regenerates them
    ]
    if grow_bytes:
        largest = max(segments, key=lambda s: len(s.data))
        largest.data = largest.data + bytes(grow_bytes - grow_bytes % 4)
    parsed.segments = segments
    out = parsed.save(None)
    assert out is not None
    return out


# ---------------------------------------------------------------------------
# Image kinds
# ---------------------------------------------------------------------------


def _truncate(image: bytes, length: int) -> tuple[bytes, str]:
    if len(image) <= length:
        raise CsiOtaError(f"input image is {len(image)} bytes; it must be longer than {length} to truncate")
    return image[:length], f"{len(image)} -> {length} bytes"


def _random(image: bytes, seed: int | None) -> tuple[bytes, str]:
    rng = random.Random(seed) if seed is not None else None
    data = bytearray(rng.randbytes(len(image)) if rng else os.urandom(len(image)))
    if data[0] == ESP_IMAGE_MAGIC:
        data[0] ^= 0xFF  # never a valid magic byte
    return bytes(data), f"{len(image)} random bytes (no 0xE9 magic)"


def _wrong_chip(image: bytes) -> tuple[bytes, str]:
    old = struct.unpack_from("<H", image, HEADER_CHIP_ID_OFFSET)[0]
    new = WRONG_CHIP_ID if old != WRONG_CHIP_ID else 0
    return rehash(
        _with_header_u16(image, HEADER_CHIP_ID_OFFSET, new)
    ), f"chip id {old} -> {new}, SHA-256 recomputed"


def _chip_rev(image: bytes) -> tuple[bytes, str]:
    old = struct.unpack_from("<H", image, HEADER_MIN_REV_FULL_OFFSET)[0]
    edited = bytearray(_with_header_u16(image, HEADER_MIN_REV_FULL_OFFSET, UNREACHABLE_MIN_REV_FULL))
    edited[HEADER_MIN_REV_OFFSET] = UNREACHABLE_MIN_REV_FULL // 100
    return rehash(bytes(edited)), f"min_rev_full {old} -> {UNREACHABLE_MIN_REV_FULL}, SHA-256 recomputed"


def _bad_checksum(image: bytes) -> tuple[bytes, str]:
    end = _digest_offset(image)
    edited = bytearray(image)
    edited[end - 1] ^= 0xFF  # the checksum byte ends the 16-byte aligned data
    return rehash(
        bytes(edited)
    ), f"checksum byte at {end - 1:#x} {image[end - 1]:#04x} -> {edited[end - 1]:#04x}, SHA-256 recomputed"


def _bad_sha256(image: bytes) -> tuple[bytes, str]:
    end = _digest_offset(image)
    edited = bytearray(image)
    edited[end + SHA256_BYTES - 1] ^= 0x01
    return bytes(edited), f"last byte of the appended SHA-256 at {end + SHA256_BYTES - 1:#x} flipped"


def _too_large(image: bytes) -> tuple[bytes, str]:
    if relay_out(image) != image:
        raise CsiOtaError(
            "input image cannot be re-laid out by esptool unchanged; too-large needs one that can"
        )
    grow = max(0, DEFAULT_SLOT_SIZE_BYTES + TOO_LARGE_MARGIN_BYTES - len(image))
    out = relay_out(image, grow)
    return out, f"{len(image)} -> {len(out)} bytes (slot {DEFAULT_SLOT_SIZE_BYTES}), still a valid image"


# ---------------------------------------------------------------------------
# Manifest kinds
# ---------------------------------------------------------------------------


def _bad_signature(data: bytes) -> tuple[bytes, str]:
    signed = parse_manifest(data)
    signature = bytearray(signed.signature)
    signature[-1] ^= 0x01
    out = signed.signed_bytes + b"signature=" + signature.hex().encode() + b"\n"
    return out, "last byte of the signature (s) flipped"


def _unknown_key(data: bytes) -> tuple[bytes, str]:
    signed = parse_manifest(data)
    fresh = ec.generate_private_key(ec.SECP256R1())
    m = dataclasses.replace(signed.manifest, key_id=key_id_for(fresh.public_key()))
    return sign_manifest(m, fresh), f"re-signed by a fresh key {m.key_id} (thrown away)"


def _other_image(
    data: bytes, key: ec.EllipticCurvePrivateKey | None, other_sha256: str | None
) -> tuple[bytes, str]:
    if key is None:
        raise CsiOtaError("other-image re-signs the manifest: pass the trusted release key with --key")
    signed = parse_manifest(data)
    digest = (
        other_sha256 or hashlib.sha256(b"csi-ota other image:" + signed.manifest.sha256.encode()).hexdigest()
    )
    if digest == signed.manifest.sha256:
        raise CsiOtaError("--other-image is the image this manifest describes; pick a different one")
    m = dataclasses.replace(signed.manifest, sha256=digest, key_id=key_id_for(key.public_key()))
    return sign_manifest(
        m, key
    ), f"sha256 {signed.manifest.sha256[:16]}… -> {digest[:16]}…, size kept, re-signed"


# name -> (kind, maker). Image makers take (image, seed); manifest makers (data, key, other_sha256).
CORRUPT_KINDS: dict[str, CorruptKind] = {
    k.name: k
    for k in (
        CorruptKind("truncate", "image", f"first {TRUNCATE_BYTES:,} bytes only", "image_invalid"),
        CorruptKind(
            "truncate-header",
            "image",
            f"first {TRUNCATE_HEADER_BYTES} bytes only (header, part of app_desc)",
            "image_invalid",
        ),
        CorruptKind("random", "image", "same length, random bytes (no image magic)", "image_header"),
        CorruptKind(
            "wrong-chip",
            "image",
            f"header chip id {WRONG_CHIP_ID} (ESP32-C3) instead of {ESP32S3_CHIP_ID}",
            "chip_id",
        ),
        CorruptKind(
            "chip-rev",
            "image",
            f"min_rev_full {UNREACHABLE_MIN_REV_FULL} (v99.0), above any real chip",
            "chip_revision",
        ),
        CorruptKind(
            "bad-checksum", "image", "segment checksum byte wrong, appended SHA-256 valid", "image_invalid"
        ),
        CorruptKind("bad-sha256", "image", "appended SHA-256 wrong, checksum valid", "image_invalid"),
        CorruptKind(
            "too-large",
            "image",
            f"valid image grown beyond the {DEFAULT_SLOT_SIZE_BYTES:,}-byte slot",
            "image_too_large",
        ),
        CorruptKind("bad-signature", "manifest", "one signature byte flipped", "manifest_signature"),
        CorruptKind("unknown-key", "manifest", "re-signed by a fresh, untrusted key", "manifest_key"),
        CorruptKind(
            "other-image", "manifest", "sha256 of a different image, re-signed with --key", "image_digest"
        ),
    )
}

_IMAGE_MAKERS: dict[str, Callable[[bytes, int | None], tuple[bytes, str]]] = {
    "truncate": lambda image, seed: _truncate(image, TRUNCATE_BYTES),
    "truncate-header": lambda image, seed: _truncate(image, TRUNCATE_HEADER_BYTES),
    "random": _random,
    "wrong-chip": lambda image, seed: _wrong_chip(image),
    "chip-rev": lambda image, seed: _chip_rev(image),
    "bad-checksum": lambda image, seed: _bad_checksum(image),
    "bad-sha256": lambda image, seed: _bad_sha256(image),
    "too-large": lambda image, seed: _too_large(image),
}
_MANIFEST_MAKERS: dict[
    str, Callable[[bytes, ec.EllipticCurvePrivateKey | None, str | None], tuple[bytes, str]]
] = {
    "bad-signature": lambda data, key, other: _bad_signature(data),
    "unknown-key": lambda data, key, other: _unknown_key(data),
    "other-image": _other_image,
}
assert set(_IMAGE_MAKERS) | set(_MANIFEST_MAKERS) == set(CORRUPT_KINDS)


def get_kind(name: str) -> CorruptKind:
    kind = CORRUPT_KINDS.get(name)
    if kind is None:
        raise CsiOtaError(f"unknown corruption kind {name!r}; `csi-ota corrupt --list` shows them")
    return kind


def corrupt_image(name: str, image: bytes, *, seed: int | None = None) -> tuple[bytes, str]:
    """Apply image kind ``name`` to a good image; returns (bad image, what changed)."""
    if get_kind(name).target != "image":
        raise CsiOtaError(f"{name} corrupts a manifest, not an image")
    describe_image(image)  # the input must be a good image
    return _IMAGE_MAKERS[name](image, seed)


def corrupt_manifest(
    name: str,
    data: bytes,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    other_sha256: str | None = None,
) -> tuple[bytes, str]:
    """Apply manifest kind ``name`` to a good manifest; returns (bad manifest, what changed)."""
    if get_kind(name).target != "manifest":
        raise CsiOtaError(f"{name} corrupts an image, not a manifest")
    return _MANIFEST_MAKERS[name](data, key, other_sha256)


def corrupt_file(
    name: str,
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    key_path: str | os.PathLike[str] | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
    sequence: int | None = None,
    seed: int | None = None,
    other_image_path: str | os.PathLike[str] | None = None,
) -> CorruptResult:
    """Read IN, write the bad OUT atomically; for image kinds with a key also a manifest for OUT.

    That manifest takes project/version/chip fields from the good IN image and
    size/sha256 from OUT, so the device accepts the manifest and rejects the
    image itself with the kind's reason.
    """
    kind = get_kind(name)
    try:
        data = Path(in_path).read_bytes()
    except OSError as exc:
        raise CsiOtaError(f"{in_path}: {exc.strerror}") from None
    if Path(out_path).resolve() == Path(in_path).resolve():
        raise CsiOtaError("OUT must differ from IN (the good file is kept)")
    key = load_private_key(key_path) if key_path is not None else None
    if kind.target == "manifest":
        other = None
        if other_image_path is not None:
            other = hashlib.sha256(Path(other_image_path).read_bytes()).hexdigest()
        bad, detail = corrupt_manifest(name, data, key=key, other_sha256=other)
        write_atomic(out_path, bad)
        return CorruptResult(kind, Path(out_path), detail)
    bad, detail = corrupt_image(name, data, seed=seed)
    written_manifest = None
    manifest_bytes = None
    if key is not None and key_path is not None:
        good = describe_image(data)
        seq = reserve_sequence(key_path, sequence)
        m = manifest_for_image(
            data, sequence=seq, key_id=key_id_for(key.public_key()), notes=f"csi-ota corrupt {name}"
        )
        m = dataclasses.replace(m, size=len(bad), sha256=hashlib.sha256(bad).hexdigest())
        assert m.project == good.project
        manifest_bytes = sign_manifest(m, key)
        written_manifest = Path(manifest_path) if manifest_path else Path(out_path).with_suffix(".manifest")
    elif manifest_path is not None:
        raise CsiOtaError("--manifest names where to write a manifest for OUT; it needs --key to sign it")
    write_atomic(out_path, bad)
    if written_manifest is not None and manifest_bytes is not None:
        write_atomic(written_manifest, manifest_bytes)
    return CorruptResult(kind, Path(out_path), detail, written_manifest)
