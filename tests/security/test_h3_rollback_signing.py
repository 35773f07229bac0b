"""H3: the rollout engine's signing key does not let an operator downgrade devices.

Before: an operator created a rollout of the release the fleet already ran, with one silent extra
device and ``previous_release=1.0.0``; the rollout halted and the engine signed a rollback release
of 1.0.0 (uploaded by ``rollout-engine``, no release.create audit entry) that the operator could
then assign. Now the engine signs a rollback only for a rollout created by an admin (or a role
ROLLBACK_SIGNING_ROLES allows), only to a release that rollout replaced on its devices, and audits
it as release.create with the rollout as cause.

The engine runs in-process on a real SQLite registry (tests/rollout/engine_world.py), as in the
rollout suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))

from engine_world import EngineWorld  # noqa: E402

from csi_ota.controller import admin as admin_lib  # noqa: E402
from csi_ota.controller.db import session_scope  # noqa: E402
from csi_ota.controller.models import AuditEntry, Release  # noqa: E402

POLICY = {
    "stages": [100],
    "batch_size": 10,
    "soak_s": 3600,
    "health_timeout_s": 600,
    "max_retries": 0,
    "failure_percent": 1,
    "failure_min_count": 1,
    "rollback": "auto",
}


def _world(tmp_path: Path, users: dict[str, str], **kwargs) -> EngineWorld:
    world = EngineWorld(tmp_path, 6, **kwargs)
    with session_scope(world.sessions) as session:
        for name, role in users.items():
            admin_lib.create_admin(session, name, role, actor="test")
    return world


def _rollback_releases(world: EngineWorld) -> list[Release]:
    with world.sessions() as session:
        return list(session.scalars(select(Release).where(Release.rollback.is_(True))))


def _events(world: EngineWorld, rollout_id: int) -> list[str]:
    return [e["message"] for e in world.detail(rollout_id)["events"]]


@pytest.mark.parametrize("creator", ["operator", "admin"])
def test_a_rollout_of_the_current_release_cannot_mint_a_downgrade(tmp_path, creator):
    world = _world(tmp_path, {"op": "operator", "boss": "admin"}, checked_in=False)
    fleet, silent = world.device_ids[:5], world.device_ids[5]
    for device_id in fleet:  # the fleet already runs 2.0.0
        world.check(device_id, "2.0.0")
        world.heartbeat(device_id, "2.0.0")
    actor = "admin:op" if creator == "operator" else "admin:boss"
    rollout_id = world.create(POLICY, version="2.0.0", previous_release="1.0.0", actor=actor)
    world.tick()
    assert silent in world.in_state(rollout_id, "offered")
    # The extra device is heard once after the offer (a device never heard from since the offer
    # is only "not reached" and halts nothing, issue 11), then never answers. It is judged once it
    # is past the reach bound (two check intervals) and silent for three heartbeat intervals,
    # while the fleet keeps sending heartbeats (so the silence is not systemic): the rollout halts.
    world.heartbeat(silent, None)
    for _ in range(8):
        world.advance(1800)
        for device_id in fleet:
            world.heartbeat(device_id, "2.0.0")
        world.tick()
    world.tick()
    assert world.rollout(rollout_id).state != "active", _events(world, rollout_id)
    assert _rollback_releases(world) == [], "the engine signed a downgrade nobody could have signed"
    assert any("rollback" in m and ("role" in m or "replaced" in m) for m in _events(world, rollout_id))


def _halting_rollout(world: EngineWorld, actor: str) -> int:
    rollout_id = world.create({**POLICY, "failure_min_count": 2, "failure_percent": 20}, actor=actor)
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    world.settle(offered[:3], offered[3:5])  # 1.0.0 -> 2.0.0: two fail their self-test
    return rollout_id


def test_an_admins_rollout_rolls_back_what_it_replaced_and_audits_it(tmp_path):
    world = _world(tmp_path, {"boss": "admin"})
    rollout_id = _halting_rollout(world, "admin:boss")
    (rollback,) = _rollback_releases(world)
    assert rollback.version == "1.0.0" and rollback.uploaded_by == f"rollout:{rollout_id}"
    with world.sessions() as session:
        entries = list(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "release.create", AuditEntry.target == f"release:{rollback.id}"
                )
            )
        )
    assert len(entries) == 1
    entry = entries[0]
    assert entry.actor == f"rollout:{rollout_id}"
    assert entry.details["cause"] == f"rollout:{rollout_id}" and entry.details["approved_by"] == "admin:boss"
    assert entry.details["rollback"] is True


def test_an_operators_rollout_needs_an_explicit_policy(tmp_path, monkeypatch):
    world = _world(tmp_path, {"op": "operator"})
    rollout_id = _halting_rollout(world, "admin:op")
    assert _rollback_releases(world) == []
    assert any("role admin" in m for m in _events(world, rollout_id)), _events(world, rollout_id)

    monkeypatch.setenv("ROLLBACK_SIGNING_ROLES", "operator,admin")
    other = _world(tmp_path / "policy", {"op": "operator"})
    _halting_rollout(other, "admin:op")
    assert [r.version for r in _rollback_releases(other)] == ["1.0.0"]


def test_assigning_a_signed_rollback_by_hand_needs_the_admin_role(sqlite_controller, release_key):
    """The last step of the attack: an operator assigning a rollback release the engine signed."""
    from controller_helpers import build_release, new_device, upload

    from csi_ota.controller.db import make_engine, session_factory
    from csi_ota.controller.rollout.rollback import create_rollback_release

    old = build_release(release_key)
    assert upload(sqlite_controller, old).status_code == 201
    engine = make_engine(sqlite_controller.database_url, pool_size=1)
    try:
        with session_scope(session_factory(engine)) as session:
            previous = session.scalar(select(Release).where(Release.version == old.version))
            rollback_id = create_rollback_release(session, previous, release_key, notes="test").id
    finally:
        engine.dispose()
    device_id, _ = new_device(sqlite_controller)
    with sqlite_controller.management_client() as mgmt:
        operator = mgmt.post("/api/admin/users", json={"name": "h3-op", "role": "operator"}).json()["token"]
    import httpx

    body = {"release": str(rollback_id)}
    with httpx.Client(
        base_url=sqlite_controller.management_url, headers={"Authorization": f"Bearer {operator}"}
    ) as as_operator:
        refused = as_operator.put(f"/api/devices/{device_id}/assignment", json=body)
        assert refused.status_code == 403, refused.text
        batch = as_operator.post(
            "/api/batch",
            json={"selection": {"device_ids": [device_id]}, "action": "assign", "release": str(rollback_id)},
        )
        assert batch.status_code == 403, batch.text
        assert (
            as_operator.put(f"/api/devices/{device_id}/assignment", json={"release": old.version}).status_code
            == 200
        )
    with sqlite_controller.management_client() as mgmt:
        assert mgmt.put(f"/api/devices/{device_id}/assignment", json=body).status_code == 200
