"""Management routes under /api/rollouts (port 8081): create, list, show, operator controls.

Reading needs the ``viewer`` role, changing needs ``operator``. Bad input gets
a 4xx with a reason and changes nothing (each request is one transaction).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from csi_ota.controller.admin import authenticate_admin, role_allows
from csi_ota.controller.models import utcnow
from csi_ota.controller.rollout import lease, service
from csi_ota.controller.rollout.models import ROLLOUT_STATES
from csi_ota.controller.tokens import bearer_token

ROUTE_PREFIX = "/api/rollouts"
MAX_ID = 2**31 - 1
RolloutId = Annotated[int, Path(ge=1, le=MAX_ID, description="rollout id")]


class RolloutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: Annotated[str, Field(max_length=64)] | Annotated[int, Field(ge=1, le=MAX_ID)] = Field(
        description="release id or version"
    )
    selection: dict[str, Any] = Field(description='{"all": true}, {"tag": "..."} or {"devices": [...]}')
    policy: dict[str, Any] = Field(default_factory=dict)
    name: str = Field("", max_length=80)
    previous_release: str | int | None = Field(
        None, description="rollback target; default: what most run now"
    )
    allow_no_rollback_target: bool = Field(
        False, description="create a rollback=auto rollout even when no rollback target is known"
    )


class ExcludeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=31)


def _ctx(request: Request):
    return request.app.state.ctx


def _clock(request: Request):
    return request.app.state.rollout_engine.clock


def _actor(request: Request, required: str) -> str:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
    with _ctx(request).session() as session:
        user = authenticate_admin(session, token)
        if user is None:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        if not role_allows(user.role, required):
            raise HTTPException(403, detail=f"needs the {required} role")
        return f"admin:{user.name}"


def build_router() -> APIRouter:
    router = APIRouter(prefix=ROUTE_PREFIX, tags=["rollouts"])

    @router.post("", status_code=201)
    def create(body: RolloutCreate, request: Request) -> dict[str, Any]:
        """Creates a rollout of a release on a selection of devices with a policy."""
        actor = _actor(request, "operator")
        with _ctx(request).session() as session:
            rollout = service.create_rollout(
                session,
                release=body.release,
                selection=body.selection,
                policy=body.policy,
                name=body.name,
                previous_release=body.previous_release,
                allow_no_rollback_target=body.allow_no_rollback_target,
                actor=actor,
                clock=_clock(request),
            )
            return service.rollout_detail(session, rollout)

    @router.get("")
    def list_rollouts(request: Request, state: str | None = Query(None)) -> list[dict[str, Any]]:
        """All rollouts, newest first (optionally only one state)."""
        _actor(request, "viewer")
        if state is not None and state not in ROLLOUT_STATES:
            raise HTTPException(422, detail=f"state must be one of {', '.join(ROLLOUT_STATES)}")
        with _ctx(request).session() as session:
            return [service.rollout_summary(session, r) for r in service.list_rollouts(session, state)]

    @router.get("/engine")
    def engine_status(request: Request) -> dict[str, Any]:
        """Which controller process holds the engine lease, and whether it is this one."""
        _actor(request, "viewer")
        engine = request.app.state.rollout_engine
        with _ctx(request).session() as session:
            # One read of the committed row: holder, generation and "this process holds it" agree.
            seen = lease.view(session, engine.holder, utcnow())
        return {
            **seen.as_dict(),
            "lease_ttl_s": engine.lease_ttl_s,
            "virtual_time": engine.clock.now().isoformat(),
            "time_scale": engine.clock.scale,
        }

    @router.get("/{rollout_id}")
    def show(
        rollout_id: RolloutId, request: Request, events_after: int = Query(0, ge=0, le=2**62)
    ) -> dict[str, Any]:
        """A rollout with per-stage counts and its gate decisions and events."""
        _actor(request, "viewer")
        with _ctx(request).session() as session:
            return service.rollout_detail(
                session, service.get_rollout(session, rollout_id), events_after=events_after
            )

    @router.get("/{rollout_id}/devices")
    def devices(
        rollout_id: RolloutId, request: Request, state: str | None = Query(None, max_length=16)
    ) -> list[dict[str, Any]]:
        """The rollout's devices with stage, state, attempts and reason."""
        _actor(request, "viewer")
        with _ctx(request).session() as session:
            service.get_rollout(session, rollout_id)
            return service.rollout_devices(session, rollout_id, state=state)

    def _control(name: str, action):
        def endpoint(rollout_id: RolloutId, request: Request) -> dict[str, Any]:
            actor = _actor(request, "operator")
            with _ctx(request).session() as session:
                rollout = action(session, rollout_id, actor=actor, clock=_clock(request))
                return service.rollout_summary(session, rollout)

        endpoint.__name__ = f"{name}_rollout"
        endpoint.__doc__ = {
            "pause": "Stops new offers; devices already updating finish and are judged.",
            "resume": "Continues a paused or halted rollout.",
            "abort": "Ends the rollout; offers are withdrawn, so downloading devices stop at their next check.",
            "promote": "Opens the next stage now, without waiting for the soak.",
        }[name]
        router.post(f"/{{rollout_id}}/{name}")(endpoint)

    _control("pause", service.pause)
    _control("resume", service.resume)
    _control("abort", service.abort)
    _control("promote", service.promote)

    @router.post("/{rollout_id}/exclude")
    def exclude(rollout_id: RolloutId, body: ExcludeIn, request: Request) -> dict[str, Any]:
        """Removes one device from the rollout (its offer is withdrawn)."""
        actor = _actor(request, "operator")
        with _ctx(request).session() as session:
            rd = service.exclude(session, rollout_id, body.device_id, actor=actor, clock=_clock(request))
            return {"rollout_id": rollout_id, "device_id": rd.device_id, "state": rd.state}

    return router
