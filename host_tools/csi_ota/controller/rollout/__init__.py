"""Progressive rollouts with health gates and automatic rollback (the controller's rollout engine).

``attach(app)`` is called by the controller's management-app factory: it
adds the /api/rollouts routes and runs the engine, and the intake monitor
that records when this process was too stalled to take in device traffic
(intake.py), as background tasks for the life of the app. Every controller process runs an engine; a database
lease lets exactly one of them decide at a time (docs/rollout.md).

Environment:
    ROLLOUT_ENGINE=0            do not run the engine in this process (routes stay)
    ROLLOUT_TICK_INTERVAL_S     seconds between engine passes (default 1)
    ROLLOUT_LEASE_TTL_S         lease lifetime; a dead holder is replaced after it (default 10)
    ROLLOUT_TIME_SCALE, ROLLOUT_CLOCK_ORIGIN   virtual clock (clock.py)
    ROLLOUT_ALERT_WEBHOOK       default webhook for halt alerts
    ROLLBACK_SIGNING_KEY        private key that signs rollback manifests
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from contextlib import asynccontextmanager

from csi_ota.controller.rollout import alerts
from csi_ota.controller.rollout.clock import VirtualClock
from csi_ota.controller.rollout.engine import DEFAULT_LEASE_TTL_S, DEFAULT_TICK_INTERVAL_S, RolloutEngine
from csi_ota.controller.rollout.intake import IntakeMonitor
from csi_ota.controller.rollout.rollback import signing_key_path
from csi_ota.errors import CsiOtaError

__all__ = ["RolloutEngine", "VirtualClock", "attach", "engine_from_env"]

ENGINE_ENV = "ROLLOUT_ENGINE"
TICK_ENV = "ROLLOUT_TICK_INTERVAL_S"
LEASE_ENV = "ROLLOUT_LEASE_TTL_S"
ENGINE_STOP_TIMEOUT_S = 10.0


def _env_seconds(name: str, default: float, environ) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise CsiOtaError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not (0.01 <= value <= 3600):
        raise CsiOtaError(f"{name} must be between 0.01 and 3600 s, got {value}")
    return value


def engine_from_env(session_factory, environ: dict[str, str] | None = None) -> RolloutEngine:
    environ = os.environ if environ is None else environ
    key = signing_key_path(environ)
    if key is not None and not key.is_file():
        raise CsiOtaError(f"ROLLBACK_SIGNING_KEY={key}: no such file")
    tick = _env_seconds(TICK_ENV, DEFAULT_TICK_INTERVAL_S, environ)
    ttl = _env_seconds(LEASE_ENV, DEFAULT_LEASE_TTL_S, environ)
    if ttl <= 2 * tick:
        raise CsiOtaError(f"{LEASE_ENV} ({ttl} s) must exceed twice {TICK_ENV} ({tick} s)")
    return RolloutEngine(
        session_factory,
        clock=VirtualClock.from_env(environ),
        lease_ttl_s=ttl,
        tick_interval_s=tick,
        signing_key=key,
    )


def attach(app) -> None:
    """Adds the rollout routes to the management ``app`` and runs the engine during its lifespan."""
    from csi_ota.controller.rollout.api import build_router

    if getattr(app.state, "rollout_attached", False):
        return
    app.state.rollout_attached = True
    run_engine = os.environ.get(ENGINE_ENV, "1").strip() != "0"
    # Validate configuration now, so a bad value stops `csi-ota serve` before it listens.
    engine_from_env(None)
    app.include_router(build_router())
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan_with_engine(the_app):
        async with original(the_app) as state:
            ctx = the_app.state.ctx
            engine = engine_from_env(ctx.session_factory)
            alerts.register_metrics(ctx.metrics.registry)
            the_app.state.rollout_engine = engine
            stop = asyncio.Event()
            # Every process measures its own intake lag (also with ROLLOUT_ENGINE=0: it serves devices).
            monitor = IntakeMonitor(ctx.session, process=engine.holder)
            the_app.state.intake_monitor = monitor
            tasks = [asyncio.create_task(monitor.run(stop))]
            if run_engine:
                tasks.append(asyncio.create_task(engine.run(stop)))
            try:
                yield state
            finally:
                stop.set()
                for task in tasks:
                    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(task, ENGINE_STOP_TIMEOUT_S)

    app.router.lifespan_context = lifespan_with_engine
