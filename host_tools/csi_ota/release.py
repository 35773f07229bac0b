"""Signed releases: an ESP32-S3 app image plus its signed manifest (docs/releases.md).

``create_release`` reads the image with esptool's classes (header, checksum,
appended SHA-256, esp_app_desc_t), allocates the next sequence number from the
state file beside the signing key, and writes ``<project>-<version>.bin`` and
``<project>-<version>.manifest`` atomically. ``check_release`` runs every check
a device would make and reports each one; ``verify_release`` raises on the
first failure set with a message naming the failed checks.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from csi_ota.app_desc import AppDesc, unpack_app_desc
from csi_ota.errors import EXIT_OPERATION_FAILED, CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.imagegen import ESP32S3_CHIP_ID, load_image
from csi_ota.keys import key_id_for, load_private_key, load_public_key
from csi_ota.manifest import (
    U32_MAX,
    Manifest,
    SignedManifest,
    check_signature,
    manifest_for_image,
    parse_manifest,
    sign_manifest,
)

# The seed's OTA slot: ota_0 / ota_1 of the default 4 MB layout are 0x140000 bytes each.
DEFAULT_SLOT_SIZE_BYTES = 1_310_720
SEQUENCE_STATE_SUFFIX = ".sequence"
IMAGE_SUFFIX = ".bin"
MANIFEST_SUFFIX = ".manifest"


@dataclass(frozen=True)
class ImageInfo:
    """What a release needs to know about an app image, read with esptool's classes."""

    size: int
    sha256: str
    chip_id: int
    min_chip_rev_full: int
    max_chip_rev_full: int
    checksum_valid: bool
    digest_valid: bool
    app_desc: AppDesc

    @property
    def project(self) -> str:
        return self.app_desc.project_name

    @property
    def version(self) -> str:
        return self.app_desc.version

    @property
    def secure_version(self) -> int:
        return self.app_desc.secure_version


@dataclass(frozen=True)
class ReleaseFiles:
    image_path: Path
    manifest_path: Path
    manifest: Manifest


@dataclass(frozen=True)
class CheckResult:
    """One check of `release verify`: its name, whether it passed, and what was compared."""

    name: str
    ok: bool
    detail: str


def describe_image(image: bytes) -> ImageInfo:
    """Parse ``image`` with esptool's ESP32-S3 class; CsiOtaError if it is not an app image."""
    try:
        parsed = load_image(image)
    except Exception as exc:  # esptool raises FatalError, struct.error, ... on garbage
        raise CsiOtaError(f"image: not a valid ESP32-S3 app image ({exc})") from None
    if not parsed.segments:
        raise CsiOtaError("image: has no segments")
    try:
        desc = unpack_app_desc(parsed.segments[0].data)
    except ValueError as exc:
        raise CsiOtaError(f"image: esp_app_desc_t not found in the first segment ({exc})") from None
    digest_valid = bool(parsed.append_digest) and parsed.stored_digest == parsed.calc_digest
    return ImageInfo(
        size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        chip_id=parsed.chip_id,
        min_chip_rev_full=parsed.min_rev_full,
        max_chip_rev_full=parsed.max_rev_full,
        checksum_valid=parsed.checksum == parsed.calculate_checksum(),
        digest_valid=digest_valid,
        app_desc=desc,
    )


def _read_input(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CsiOtaError(f"{what} {path} not found") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise CsiOtaError(f"{what} {path} cannot be read: {exc.strerror}") from None


# ---------------------------------------------------------------------------
# Sequence numbers
# ---------------------------------------------------------------------------


def sequence_state_path(key_path: str | os.PathLike[str]) -> Path:
    """``release.pem`` → ``release.pem.sequence``: the highest sequence signed with that key."""
    path = Path(key_path)
    return path.with_name(path.name + SEQUENCE_STATE_SUFFIX)


def read_highest_sequence(key_path: str | os.PathLike[str]) -> int:
    """The highest sequence recorded beside ``key_path`` (0 when none was recorded)."""
    state = sequence_state_path(key_path)
    try:
        text = state.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit() or int(text) > U32_MAX:
        raise CsiOtaError(f"{state}: expected one decimal sequence number, found {text[:40]!r}")
    return int(text)


def reserve_sequence(key_path: str | os.PathLike[str], requested: int | None = None) -> int:
    """Allocate the sequence for a new release signed with ``key_path`` and record it.

    Default: one more than the highest recorded. An explicit ``requested``
    must be above the highest recorded (a device refuses anything not newer).
    The key file is locked meanwhile, so two concurrent releases never share one.
    """
    with open(key_path, "rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        highest = read_highest_sequence(key_path)
        if requested is None:
            sequence = highest + 1
        else:
            if requested < 1 or requested > U32_MAX:
                raise CsiOtaError(f"sequence {requested} is outside 1..{U32_MAX}")
            if requested <= highest:
                raise CsiOtaError(
                    f"sequence {requested} is not above {highest}, the highest already signed with "
                    f"{key_path} (devices refuse it as a replay); use {highest + 1} or more"
                )
            sequence = requested
        if sequence > U32_MAX:
            raise CsiOtaError(f"sequence numbers of {key_path} are exhausted")
        write_atomic(sequence_state_path(key_path), f"{sequence}\n".encode(), mode=0o644)
    return sequence


# ---------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------


def release_basename(manifest: Manifest) -> str:
    return f"{manifest.project}-{manifest.version}"


def check_image_releasable(info: ImageInfo, slot_size_bytes: int = DEFAULT_SLOT_SIZE_BYTES) -> None:
    """Refuse to sign an image a device would reject anyway."""
    if not info.checksum_valid:
        raise CsiOtaError("image: checksum is invalid; refusing to sign a broken image")
    if not info.digest_valid:
        raise CsiOtaError("image: appended SHA-256 is missing or invalid; refusing to sign a broken image")
    if info.chip_id != ESP32S3_CHIP_ID:
        raise CsiOtaError(f"image: chip id {info.chip_id} is not ESP32-S3 ({ESP32S3_CHIP_ID})")
    if info.size > slot_size_bytes:
        raise CsiOtaError(
            f"image: {info.size} bytes does not fit the {slot_size_bytes}-byte OTA slot "
            f"({info.size - slot_size_bytes} bytes over)"
        )


def create_release(
    image_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    sequence: int | None = None,
    notes: str = "",
    rollback: bool = False,
    secure_boot_key: str | os.PathLike[str] | None = None,
    slot_size_bytes: int = DEFAULT_SLOT_SIZE_BYTES,
    force: bool = False,
) -> ReleaseFiles:
    """Sign ``image_path`` with ``key_path``; write image + manifest into ``out_dir``.

    An existing release of the same project and version in ``out_dir`` is refused (nothing
    written, no sequence spent) unless ``force``: a second manifest with a new sequence would
    silently replace the one already published or tested.
    """
    image = _read_input(image_path, "image")
    private_key = load_private_key(key_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CsiOtaError(f"--out {out} is not a directory")
    if secure_boot_key is not None:
        from csi_ota.secure_boot import sign_app_image

        image = sign_app_image(image, secure_boot_key)
    info = describe_image(image)
    check_image_releasable(info, slot_size_bytes)
    key_id = key_id_for(private_key.public_key())
    # Validate everything with a placeholder sequence before one is spent.
    placeholder = manifest_for_image(image, sequence=1, key_id=key_id, rollback=rollback, notes=notes)
    if not force:
        existing = [
            out / (release_basename(placeholder) + suffix)
            for suffix in (IMAGE_SUFFIX, MANIFEST_SUFFIX)
            if (out / (release_basename(placeholder) + suffix)).exists()
        ]
        if existing:
            raise CsiOtaError(
                f"{existing[0]} already exists (release {placeholder.project} {placeholder.version}); "
                "bump the version, choose another --out, or pass --force to replace it with a new sequence"
            )
    out.mkdir(parents=True, exist_ok=True)
    seq = reserve_sequence(key_path, sequence)
    manifest = manifest_for_image(image, sequence=seq, key_id=key_id, rollback=rollback, notes=notes)
    data = sign_manifest(manifest, private_key)
    base = release_basename(manifest)
    image_out = out / (base + IMAGE_SUFFIX)
    manifest_out = out / (base + MANIFEST_SUFFIX)
    write_atomic(image_out, image)
    write_atomic(manifest_out, data)
    return ReleaseFiles(image_path=image_out, manifest_path=manifest_out, manifest=manifest)


# ---------------------------------------------------------------------------
# Verify
# ---------------------------------------------------------------------------


def _check(name: str, ok: bool, good: str, bad: str) -> CheckResult:
    return CheckResult(name, ok, good if ok else bad)


def check_release(
    image: bytes,
    manifest_data: bytes,
    trusted_public_keys: Iterable[ec.EllipticCurvePublicKey],
    *,
    slot_size_bytes: int = DEFAULT_SLOT_SIZE_BYTES,
) -> list[CheckResult]:
    """Every check `release verify` makes, in order; stops early only when nothing else can run."""
    results: list[CheckResult] = []
    try:
        signed: SignedManifest = parse_manifest(manifest_data)
    except CsiOtaError as exc:
        return [CheckResult("manifest format", False, exc.message.removeprefix("manifest: "))]
    m = signed.manifest
    results.append(CheckResult("manifest format", True, f"{len(manifest_data)} bytes, format {m.format}"))

    trusted = {key_id_for(k): k for k in trusted_public_keys}
    key = trusted.get(m.key_id)
    results.append(
        _check(
            "signing key",
            key is not None,
            f"key {m.key_id} is trusted",
            f"key {m.key_id} is not among the trusted keys ({', '.join(sorted(trusted)) or 'none'})",
        )
    )
    if key is not None:
        results.append(
            _check(
                "signature",
                check_signature(signed, key),
                "ECDSA P-256 signature verifies",
                f"signature does not verify with key {m.key_id} (manifest altered or mis-signed)",
            )
        )
    results.append(
        _check(
            "size",
            len(image) == m.size,
            f"{m.size} bytes",
            f"image is {len(image)} bytes, manifest says {m.size}",
        )
    )
    digest = hashlib.sha256(image).hexdigest()
    results.append(
        _check("sha256", digest == m.sha256, m.sha256, f"image SHA-256 is {digest}, manifest says {m.sha256}")
    )
    results.append(
        _check(
            "slot size",
            m.size <= slot_size_bytes,
            f"{m.size} <= {slot_size_bytes} bytes",
            f"{m.size} bytes does not fit the {slot_size_bytes}-byte OTA slot",
        )
    )
    try:
        info = describe_image(image)
    except CsiOtaError as exc:
        results.append(CheckResult("image", False, exc.message.removeprefix("image: ")))
        return results
    results.append(
        _check(
            "image checksum",
            info.checksum_valid,
            "segment checksum valid",
            "segment checksum invalid (esptool: checksum mismatch)",
        )
    )
    results.append(
        _check(
            "image sha256",
            info.digest_valid,
            "appended SHA-256 valid",
            "appended SHA-256 missing or does not match the image",
        )
    )
    pairs = (
        ("chip id", info.chip_id, m.chip_id),
        (
            "chip revision range",
            (info.min_chip_rev_full, info.max_chip_rev_full),
            (m.min_chip_rev_full, m.max_chip_rev_full),
        ),
        ("project", info.project, m.project),
        ("version", info.version, m.version),
        ("secure_version", info.secure_version, m.secure_version),
    )
    for name, in_image, in_manifest in pairs:
        results.append(
            _check(
                name,
                in_image == in_manifest,
                str(in_image),
                f"image has {in_image}, manifest says {in_manifest}",
            )
        )
    results.append(
        _check(
            "chip",
            info.chip_id == ESP32S3_CHIP_ID,
            f"ESP32-S3 (chip id {ESP32S3_CHIP_ID})",
            f"chip id {info.chip_id} is not ESP32-S3 ({ESP32S3_CHIP_ID})",
        )
    )
    return results


def failed_checks_message(results: Sequence[CheckResult]) -> str:
    failed = [r for r in results if not r.ok]
    return "; ".join(f"{r.name}: {r.detail}" for r in failed)


def verify_release(
    image_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    public_key_paths: Iterable[str | os.PathLike[str]],
    *,
    slot_size_bytes: int = DEFAULT_SLOT_SIZE_BYTES,
) -> Manifest:
    """Check image + manifest against the trusted keys; CsiOtaError (exit 1) names failed checks."""
    keys = [load_public_key(p) for p in public_key_paths]
    if not keys:
        raise CsiOtaError("at least one trusted public key (--key) is needed")
    image = _read_input(image_path, "image")
    data = _read_input(manifest_path, "manifest")
    results = check_release(image, data, keys, slot_size_bytes=slot_size_bytes)
    if any(not r.ok for r in results):
        raise CsiOtaError(
            f"release verify failed: {failed_checks_message(results)}", exit_code=EXIT_OPERATION_FAILED
        )
    return parse_manifest(data).manifest
