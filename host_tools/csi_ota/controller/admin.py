"""Admin users and their tokens (roles: viewer < operator < admin)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from csi_ota.controller import ADMIN_ROLES, audit
from csi_ota.controller.db import make_engine, session_factory, session_scope, upgrade_database
from csi_ota.controller.models import AdminToken, AdminUser, utcnow
from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.controller.tokens import hash_token, hashes_equal, new_admin_token
from csi_ota.errors import CsiOtaError

ROLE_RANK = {role: rank for rank, role in enumerate(ADMIN_ROLES)}
ADMIN_NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


def role_allows(role: str, required: str) -> bool:
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[required]


def check_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise CsiOtaError(f"unknown role {role!r} (use {', '.join(ADMIN_ROLES)})")
    return role


def create_admin(session: Session, name: str, role: str, *, actor: str = "system") -> str:
    """Creates a user with one token (or adds a token to an existing user); returns the token."""
    import re

    if not re.match(ADMIN_NAME_PATTERN, name):
        raise CsiOtaError(f"admin name {name!r}: use 1-64 letters, digits, _ . @ -")
    check_role(role)
    user = session.scalar(select(AdminUser).where(AdminUser.name == name))
    if user is None:
        user = AdminUser(name=name, role=role, created=utcnow())
        session.add(user)
        session.flush()
        audit.record(session, actor, "admin.create", name, role=role)
    elif user.role != role:
        user.role = role
        audit.record(session, actor, "admin.role", name, role=role)
    token = new_admin_token()
    session.add(AdminToken(user_id=user.id, token_hash=hash_token(token), created=utcnow()))
    audit.record(session, actor, "admin.token_issue", name)
    return token


def _active_admins(session: Session) -> set[str]:
    """Names of enabled users with the admin role and at least one unrevoked token."""
    rows = session.execute(
        select(AdminUser.name)
        .join(AdminToken, AdminToken.user_id == AdminUser.id)
        .where(AdminUser.role == "admin", AdminUser.disabled.is_(False), AdminToken.revoked_at.is_(None))
    )
    return {name for (name,) in rows}


def revoke_admin_tokens(session: Session, name: str, *, actor: str) -> int:
    """Revokes every token of ``name``; refuses (Conflict) to lock out the last active admin."""
    user = session.scalar(select(AdminUser).where(AdminUser.name == name))
    if user is None:
        raise NotFound(f"no admin user {name!r}")
    if _active_admins(session) == {name}:
        raise Conflict(
            f"{name!r} is the last admin with a token: create another admin first "
            "(or issue a new token with `csi-ota admin bootstrap`)"
        )
    count = 0
    for token in session.scalars(select(AdminToken).where(AdminToken.user_id == user.id)):
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            count += 1
    audit.record(session, actor, "admin.revoke", name, tokens=count)
    return count


def authenticate_admin(session: Session, token: str) -> AdminUser | None:
    """The active user owning ``token``, or None (unknown, revoked, disabled)."""
    presented = hash_token(token)
    row = session.scalar(select(AdminToken).where(AdminToken.token_hash == presented))
    if row is None or row.revoked_at is not None or row.user.disabled:
        return None
    if not hashes_equal(row.token_hash, presented):
        return None
    return row.user


def bootstrap_admin(database_url: str, *, name: str = "admin", role: str = "admin") -> str:
    """Migrates the registry and issues a token for ``name`` directly in the database (no server needed)."""
    upgrade_database(database_url)
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(session_factory(engine)) as session:
            return create_admin(session, name, role, actor="cli:bootstrap")
    finally:
        engine.dispose()
