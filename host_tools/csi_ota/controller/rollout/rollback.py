"""Signed rollback releases: the previous image with a newer-sequence manifest marked ``rollback=1``.

A device accepts a lower version only from a manifest with ``rollback=1``, and
only if its sequence is above every sequence it has accepted — so the
rollback installs while replays of the old release's manifest stay refused.
The image is the previous release's, already in the firmware store under its
SHA-256; only the manifest is new, signed with ROLLBACK_SIGNING_KEY.

The releases table keeps one row per (project, version); the rollback row
records its version as ``<version>+rollback.<sequence>`` (semver build
metadata, which does not change ordering) while the manifest it serves says
``version=<version>``, exactly as the image does.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csi_ota.controller.models import Release
from csi_ota.errors import CsiOtaError

SIGNING_KEY_ENV = "ROLLBACK_SIGNING_KEY"


def signing_key_path(environ: dict[str, str] | None = None) -> Path | None:
    raw = (os.environ if environ is None else environ).get(SIGNING_KEY_ENV, "").strip()
    return Path(raw) if raw else None


def create_rollback_release(
    session: Session, previous: Release, key_path: Path, *, notes: str, created_by: str = "rollout-engine"
) -> Release:
    """Inserts (in the session's transaction) a rollback release of ``previous``; returns it."""
    from csi_ota.keys import key_id_for, load_private_key
    from csi_ota.manifest import parse_manifest, sign_manifest, utc_now_text

    private_key = load_private_key(key_path)
    key_id = key_id_for(private_key.public_key())
    highest = session.execute(select(func.max(Release.sequence))).scalar_one() or 0
    sequence = int(highest) + 1
    base = parse_manifest(bytes(previous.manifest)).manifest
    manifest = dataclasses.replace(
        base, sequence=sequence, rollback=True, created=utc_now_text(), key_id=key_id, notes=notes[:200]
    )
    data = sign_manifest(manifest, private_key)
    row_version = f"{previous.version.split('+', 1)[0]}+rollback.{sequence}"
    if len(row_version) > 32:
        raise CsiOtaError(f"rollback version label {row_version!r} is too long", exit_code=1)
    release = Release(
        project=previous.project,
        version=row_version,
        sequence=sequence,
        sha256=previous.sha256,
        size=previous.size,
        chip_id=previous.chip_id,
        min_chip_rev_full=previous.min_chip_rev_full,
        max_chip_rev_full=previous.max_chip_rev_full,
        secure_version=previous.secure_version,
        rollback=True,
        key_id=key_id,
        manifest=data,
        notes=notes[:200],
        uploaded_by=created_by,
    )
    session.add(release)
    session.flush()
    return release
