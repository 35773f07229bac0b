"""The controller's own intake lag, so a slow controller never blames devices for silence it caused.

Every controller process runs an :class:`IntakeMonitor` beside its servers. It
measures how late the process takes in device traffic — the event loop's lag
(a short sleep that overshoots) and the database's latency through the same
thread pool the request handlers use — and records every span in which that
lag exceeded ``STALL_THRESHOLD_S`` as a row of ``rollout_intake_stalls``. The
engine loads those spans each tick into a :class:`StallLedger` and measures a
device's silence (or its time since taking an offer) *without* them: a window
in which the controller itself was stalled never counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import Gauge
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from csi_ota.controller.rollout.clock import VirtualClock
from csi_ota.controller.rollout.models import IntakeStall

log = logging.getLogger("csi_ota.rollout")

LOOP_PROBE_INTERVAL_S = 0.2
DB_PROBE_INTERVAL_S = 1.0
FLUSH_INTERVAL_S = 1.0
STALL_THRESHOLD_S = 0.1  # lag above this is a stall (requests wait that long before being handled)
STALL_RETENTION = dt.timedelta(days=31)
MAX_STALLS_LOADED = 20_000
SPAN_MERGE_GAP_S = 0.05

INTAKE_LAG = Gauge(
    "csi_ota_controller_intake_lag_seconds",
    "How late this controller process takes in device traffic (event-loop lag or database latency)",
    ["source"],
)


def _ts(value: dt.datetime) -> float:
    return value.timestamp()


@dataclass
class StallLedger:
    """Merged stall spans (unix seconds); measures virtual time elapsed without them."""

    clock: VirtualClock
    spans: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def build(cls, clock: VirtualClock, spans: Iterable[tuple[float, float]]) -> StallLedger:
        merged: list[tuple[float, float]] = []
        for start, end in sorted(spans):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return cls(clock, merged)

    @classmethod
    def load(cls, session: Session, clock: VirtualClock, now_real: dt.datetime) -> StallLedger:
        since = now_real - STALL_RETENTION
        rows = session.execute(
            select(IntakeStall.start_real, IntakeStall.end_real)
            .where(IntakeStall.end_real > since)
            .order_by(IntakeStall.end_real.desc())
            .limit(MAX_STALLS_LOADED)
        ).all()
        return cls.build(clock, ((_ts(s), _ts(e)) for s, e in rows))

    def stalled_s(self, start_real: dt.datetime, end_real: dt.datetime) -> float:
        """Wall-clock seconds of [start, end] during which a controller was stalled."""
        a, b = _ts(start_real), _ts(end_real)
        total = 0.0
        for s, e in self.spans:
            if e <= a:
                continue
            if s >= b:
                break
            total += min(e, b) - max(s, a)
        return total

    def virtual_since(self, start_real: dt.datetime, now_real: dt.datetime) -> float:
        """Virtual seconds from ``start_real`` to ``now_real``, stalls not counted."""
        real_s = max(0.0, _ts(now_real) - _ts(start_real) - self.stalled_s(start_real, now_real))
        return real_s * self.clock.scale


def record_stall(
    session: Session, process: str, start_real: dt.datetime, end_real: dt.datetime, lag_s: float
) -> None:
    session.add(
        IntakeStall(process=process[:128], start_real=start_real, end_real=end_real, lag_ms=int(lag_s * 1000))
    )


def prune_stalls(session: Session, now_real: dt.datetime) -> None:
    session.execute(delete(IntakeStall).where(IntakeStall.end_real < now_real - STALL_RETENTION))


class IntakeMonitor:
    """Measures this process's intake lag and writes its stalls; runs until ``stop`` is set."""

    def __init__(
        self, session_scope: Callable, *, process: str | None = None, threshold_s: float = STALL_THRESHOLD_S
    ) -> None:
        self.session_scope = session_scope  # () -> context manager yielding a Session (one transaction)
        self.process = process or f"pid{os.getpid()}"
        self.threshold_s = threshold_s
        self.pending: list[tuple[float, float, float]] = []  # (start, end, lag) unix seconds
        self.max_lag_s = 0.0

    def note(self, end_s: float, lag_s: float, source: str) -> None:
        INTAKE_LAG.labels(source).set(lag_s)
        self.max_lag_s = max(self.max_lag_s, lag_s)
        if lag_s <= self.threshold_s:
            return
        start_s = end_s - lag_s
        if self.pending and start_s <= self.pending[-1][1] + SPAN_MERGE_GAP_S:
            s, e, lag = self.pending[-1]
            self.pending[-1] = (min(s, start_s), max(e, end_s), max(lag, lag_s))
        else:
            self.pending.append((start_s, end_s, lag_s))

    def _probe_db(self) -> None:
        with self.session_scope() as session:
            session.execute(text("SELECT 1"))

    def _flush(self, spans: list[tuple[float, float, float]]) -> None:
        with self.session_scope() as session:
            for start_s, end_s, lag_s in spans:
                record_stall(
                    session,
                    self.process,
                    dt.datetime.fromtimestamp(start_s, dt.UTC),
                    dt.datetime.fromtimestamp(end_s, dt.UTC),
                    lag_s,
                )

    async def run(self, stop: asyncio.Event) -> None:
        import anyio.to_thread

        last_db = last_flush = time.monotonic()
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(LOOP_PROBE_INTERVAL_S)
            after = time.monotonic()
            self.note(time.time(), max(0.0, after - before - LOOP_PROBE_INTERVAL_S), "event_loop")
            if after - last_db >= DB_PROBE_INTERVAL_S:
                last_db = after
                try:  # the request handlers' own thread pool: a queue there delays devices too
                    await anyio.to_thread.run_sync(self._probe_db)
                    self.note(time.time(), time.monotonic() - after, "database")
                except Exception:
                    log.exception("intake monitor: database probe failed")
            if self.pending and time.monotonic() - last_flush >= FLUSH_INTERVAL_S:
                last_flush = time.monotonic()
                # Keep the last span open a little: a stall still going on is extended, not split.
                ready = [s for s in self.pending if s[1] < time.time() - LOOP_PROBE_INTERVAL_S]
                if ready:
                    try:
                        await asyncio.to_thread(self._flush, ready)
                        self.pending = self.pending[len(ready) :]
                    except Exception:
                        log.exception("intake monitor: recording stalls failed")
        if self.pending:
            try:
                await asyncio.to_thread(self._flush, self.pending)
            except Exception:
                log.exception("intake monitor: recording stalls failed")
            self.pending = []
