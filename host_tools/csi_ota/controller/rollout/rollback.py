"""Signed rollback releases: the previous image with a newer-sequence manifest marked ``rollback=1``.

A device accepts a lower version only from a manifest with ``rollback=1``, and
only if its sequence is above every sequence it has accepted — so the
rollback installs while replays of the old release's manifest stay refused.
The image is the previous release's, already in the firmware store under its
SHA-256; only the manifest is new, signed with ROLLBACK_SIGNING_KEY.

The rollback row carries the version it rolls back to, as its manifest and
image do; the releases table allows one forward release per (project,
version) and any number of rollback releases of it, one per sequence.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csi_ota.controller.models import Release
from csi_ota.controller.releases import add_release_row

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
    return add_release_row(session, manifest, sign_manifest(manifest, private_key), actor=created_by)
