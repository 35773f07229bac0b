"""Release intake: a streamed image plus its signed manifest, checked before anything is stored.

Checks, in order: the manifest parses and its signature verifies against a
trusted key (csi_ota.manifest.verify_manifest); the image's SHA-256 and size
equal the manifest's; the image is an ESP app image for the chip the manifest
names, which must be the fleet's chip; its esp_app_desc_t names the manifest's
project, version and secure_version; the version is not yet stored. Only then
is the image moved into the content-addressed store and the row inserted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from csi_ota.app_desc import APP_DESC_IMAGE_OFFSET, APP_DESC_SIZE_BYTES, unpack_app_desc
from csi_ota.controller import audit
from csi_ota.controller.models import Release, utcnow
from csi_ota.controller.problems import Conflict
from csi_ota.controller.semver import semver_key
from csi_ota.errors import CsiOtaError
from csi_ota.manifest import Manifest, verify_manifest

ESP_IMAGE_MAGIC = 0xE9
ESP32S3_CHIP_ID = 9
MANIFEST_MAX_BYTES = 1024
# esp_image_header_t: magic u8 at 0; extended header: chip_id u16 at 12, min_chip_rev_full u16 at 15,
# max_chip_rev_full u16 at 17.
IMAGE_HEADER_FIELDS = {
    "chip_id": (12, "<H"),
    "min_chip_rev_full": (15, "<H"),
    "max_chip_rev_full": (17, "<H"),
}
IMAGE_HEAD_BYTES = APP_DESC_IMAGE_OFFSET + APP_DESC_SIZE_BYTES


@dataclass(frozen=True)
class UploadedImage:
    sha256: str
    size_bytes: int
    head: bytes  # the first IMAGE_HEAD_BYTES bytes


def check_upload(
    manifest_bytes: bytes,
    image: UploadedImage,
    trusted_keys: Iterable[EllipticCurvePublicKey],
    *,
    expected_chip_id: int = ESP32S3_CHIP_ID,
) -> Manifest:
    """Returns the verified manifest, or raises CsiOtaError naming the first problem."""
    if len(manifest_bytes) > MANIFEST_MAX_BYTES:
        raise CsiOtaError(f"manifest is {len(manifest_bytes)} bytes, at most {MANIFEST_MAX_BYTES} allowed")
    manifest = verify_manifest(manifest_bytes, list(trusted_keys))
    if image.size_bytes != manifest.size:
        raise CsiOtaError(f"image size {image.size_bytes} differs from the manifest's {manifest.size}")
    if image.sha256 != manifest.sha256:
        raise CsiOtaError(f"image SHA-256 {image.sha256} differs from the manifest's {manifest.sha256}")
    if manifest.chip_id != expected_chip_id:
        raise CsiOtaError(
            f"release is for chip id {manifest.chip_id}; this fleet is chip id {expected_chip_id}"
        )
    head = image.head
    if len(head) < IMAGE_HEAD_BYTES or head[0] != ESP_IMAGE_MAGIC:
        raise CsiOtaError("image is not an ESP app image (bad magic byte or too short)")
    for name, (offset, fmt) in IMAGE_HEADER_FIELDS.items():
        (value,) = struct.unpack_from(fmt, head, offset)
        if value != getattr(manifest, name):
            raise CsiOtaError(
                f"image header {name}={value} differs from the manifest's {getattr(manifest, name)}"
            )
    try:
        desc = unpack_app_desc(head[APP_DESC_IMAGE_OFFSET:IMAGE_HEAD_BYTES])
    except ValueError as exc:
        raise CsiOtaError(f"image has no esp_app_desc_t: {exc}") from None
    for name, desc_value in (
        ("project", desc.project_name),
        ("version", desc.version),
        ("secure_version", desc.secure_version),
    ):
        if desc_value != getattr(manifest, name):
            raise CsiOtaError(f"image esp_app_desc_t {name}={desc_value!r} differs from the manifest's")
    return manifest


def find_existing_release(session: Session, manifest: Manifest) -> Release | None:
    """The stored release ``manifest`` would duplicate, if any.

    One forward release per (project, version); a signed rollback manifest of
    a version may be stored any number of times, once per sequence.
    """
    statement = select(Release).where(
        Release.project == manifest.project,
        Release.version == manifest.version,
        Release.rollback.is_(manifest.rollback),
    )
    if manifest.rollback:
        statement = statement.where(Release.sequence == manifest.sequence)
    return session.scalar(statement)


def describe_duplicate(manifest: Manifest) -> str:
    if manifest.rollback:
        return f"rollback release {manifest.project} {manifest.version} sequence {manifest.sequence} already exists"
    return f"release {manifest.project} {manifest.version} already exists"


def add_release_row(session: Session, manifest: Manifest, manifest_bytes: bytes, *, actor: str) -> Release:
    """The releases row of a verified (or just signed) manifest, added and flushed; no checks."""
    release = Release(
        project=manifest.project,
        version=manifest.version,
        sequence=manifest.sequence,
        sha256=manifest.sha256,
        size=manifest.size,
        chip_id=manifest.chip_id,
        min_chip_rev_full=manifest.min_chip_rev_full,
        max_chip_rev_full=manifest.max_chip_rev_full,
        secure_version=manifest.secure_version,
        rollback=manifest.rollback,
        key_id=manifest.key_id,
        manifest=manifest_bytes,
        notes=manifest.notes,
        created=utcnow(),
        uploaded_by=actor,
    )
    session.add(release)
    session.flush()
    return release


def first_forward_release(session: Session, versions: Iterable[str]) -> Release | None:
    """The forward (not rollback) release of the first of ``versions`` that has one."""
    for version in versions:
        release = session.scalar(
            select(Release).where(Release.version == version, Release.rollback.is_(False))
        )
        if release is not None:
            return release
    return None


def insert_release(session: Session, manifest: Manifest, manifest_bytes: bytes, *, actor: str) -> Release:
    """Adds the row and its audit entry in the caller's transaction."""
    if find_existing_release(session, manifest) is not None:
        raise Conflict(describe_duplicate(manifest))
    release = add_release_row(session, manifest, manifest_bytes, actor=actor)
    audit.record(
        session,
        actor,
        "release.create",
        f"release:{release.id}",
        version=release.version,
        sha256=release.sha256,
    )
    return release


def sorted_releases(releases: Iterable[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: (r.project, semver_key(r.version), r.sequence))


def release_to_dict(release: Release) -> dict:
    return {
        "id": release.id,
        "project": release.project,
        "version": release.version,
        "sequence": release.sequence,
        "sha256": release.sha256,
        "size": release.size,
        "chip_id": release.chip_id,
        "min_chip_rev_full": release.min_chip_rev_full,
        "max_chip_rev_full": release.max_chip_rev_full,
        "secure_version": release.secure_version,
        "rollback": release.rollback,
        "key_id": release.key_id,
        "notes": release.notes,
        "created": release.created.isoformat().replace("+00:00", "Z"),
        "uploaded_by": release.uploaded_by,
        "retired": release.retired,
    }


def release_detail(session: Session, release: Release) -> dict:
    """release_to_dict plus the signed manifest text and how many devices are assigned the release."""
    from csi_ota.controller.models import Device

    result = release_to_dict(release)
    result["manifest"] = release.manifest.decode("utf-8")
    result["assigned_devices"] = len(
        list(session.scalars(select(Device.id).where(Device.assigned_release_id == release.id)))
    )
    return result
