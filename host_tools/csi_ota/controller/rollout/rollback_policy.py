"""Who may make the rollout engine sign a rollback, and to what (issue 12 H3).

The engine holds ROLLBACK_SIGNING_KEY; an operator does not. Without limits an operator could
create a rollout of the current release with a silent extra device and ``previous_release=`` an
old version, let it halt, and obtain a signed downgrade. The engine's signing power must not
exceed what the rollout's creator could do, so a signed rollback needs all of:

- the rollout was created by an admin user whose role is in ROLLBACK_SIGNING_ROLES (default
  ``admin``; e.g. ``operator,admin`` is the explicitly configured wider policy);
- its target is a release the rollout itself replaced: at least one member device that was
  offered the rollout's release (not one already running it) ran the target version then
  (``from_version``), and only such devices are sent the rollback;
- it is a forward release older than the rollout's release, of the same project.

A signed rollback is audited as ``release.create`` by ``rollout:<id>`` with the rollout as cause
and its creator named. Assigning a rollback release by hand needs the admin role too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from csi_ota.controller import ADMIN_ROLES, audit
from csi_ota.controller.models import AdminUser, Release
from csi_ota.controller.rollout.models import Rollout, RolloutDevice
from csi_ota.controller.rollout.rollback import create_rollback_release
from csi_ota.controller.semver import semver_key

ROLES_ENV = "ROLLBACK_SIGNING_ROLES"
DEFAULT_ROLES = ("admin",)
# Member states/reasons of devices the rollout did not move off their version.
NOT_REPLACED_REASONS = ("already_current",)
NOT_REPLACED_STATES = ("excluded",)


class RollbackRefused(Exception):
    """The engine must not sign this rollback; the message says why (shown as a rollout event)."""


def signing_roles(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    raw = (os.environ if environ is None else environ).get(ROLES_ENV, "").strip()
    if not raw:
        return DEFAULT_ROLES
    roles = tuple(role.strip() for role in raw.split(",") if role.strip())
    unknown = [role for role in roles if role not in ADMIN_ROLES]
    if unknown:
        raise RollbackRefused(f"{ROLES_ENV}={raw!r}: unknown role(s) {', '.join(unknown)}")
    return roles


def replaced_devices_clause(rollout: Rollout, previous: Release):
    """SQL condition: member devices this rollout moved off ``previous`` (the ones a rollback may touch)."""
    return (
        (RolloutDevice.rollout_id == rollout.id)
        & (RolloutDevice.from_version == previous.version)
        & RolloutDevice.reason.not_in(NOT_REPLACED_REASONS)
        & RolloutDevice.state.not_in(NOT_REPLACED_STATES)
    )


def check_rollback(
    session: Session,
    rollout: Rollout,
    release: Release,
    previous: Release,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Raises RollbackRefused unless the engine may sign a rollback of ``rollout`` to ``previous``."""
    roles = signing_roles(environ)
    creator = rollout.created_by or ""
    if not creator.startswith("admin:"):
        raise RollbackRefused(f"rollout created by {creator!r}, not an admin user: no signed rollback")
    user = session.scalar(select(AdminUser).where(AdminUser.name == creator.removeprefix("admin:")))
    if user is None or user.disabled or user.role not in roles:
        role = "unknown" if user is None else ("disabled" if user.disabled else user.role)
        raise RollbackRefused(
            f"signed rollbacks need a rollout created by role {' or '.join(roles)} "
            f"({creator} is {role}; {ROLES_ENV} sets the policy)"
        )
    if previous.rollback or previous.project != release.project:
        raise RollbackRefused(f"{previous.version} is not a forward release of project {release.project}")
    if semver_key(previous.version) >= semver_key(release.version):
        raise RollbackRefused(f"{previous.version} is not older than {release.version}")
    replaced = session.scalar(
        select(RolloutDevice.device_id).where(replaced_devices_clause(rollout, previous)).limit(1)
    )
    if replaced is None:
        raise RollbackRefused(
            f"no device of this rollout was moved off {previous.version}: the engine signs rollbacks only "
            "to a release the rollout itself replaced"
        )


def authorised_rollback_release(
    session: Session, rollout: Rollout, release: Release, previous: Release, key_path: Path, *, notes: str
) -> Release:
    """Checks the policy, signs the rollback release and audits it (release.create, cause: the rollout)."""
    check_rollback(session, rollout, release, previous)
    actor = f"rollout:{rollout.id}"
    rollback = create_rollback_release(session, previous, key_path, notes=notes, created_by=actor)
    audit.record(
        session,
        actor,
        "release.create",
        f"release:{rollback.id}",
        version=rollback.version,
        sha256=rollback.sha256,
        rollback=True,
        sequence=rollback.sequence,
        cause=f"rollout:{rollout.id}",
        approved_by=rollout.created_by,
        replaces=release.version,
    )
    return rollback
