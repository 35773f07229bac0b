"""The engine's clock: wall-clock time, or a virtual clock running ``scale`` times faster.

Virtual time is a pure function of wall-clock time,
``virtual = origin_virtual + (real - origin_real) * scale``, so every process
configured with the same origin and scale (two controllers, a restarted one,
the fleet simulator) reads the same virtual time — nothing about the clock
lives in memory. Configure it with

    ROLLOUT_TIME_SCALE=8640
    ROLLOUT_CLOCK_ORIGIN=2026-11-28T23:30:00Z@1764372600.0   (virtual start @ unix seconds)

With a scale of 8640 a 24 h soak takes 10 s.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass

from csi_ota.errors import CsiOtaError

TIME_SCALE_ENV = "ROLLOUT_TIME_SCALE"
CLOCK_ORIGIN_ENV = "ROLLOUT_CLOCK_ORIGIN"
MAX_TIME_SCALE = 1_000_000.0
UTC = dt.UTC


def parse_utc(text: str) -> dt.datetime:
    """An ISO-8601 time with a zone (``Z`` allowed) as an aware UTC datetime."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise CsiOtaError(f"not an ISO-8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise CsiOtaError(f"time {text!r} has no time zone (add Z or +00:00)")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class VirtualClock:
    scale: float = 1.0
    origin_real_s: float = 0.0
    origin_virtual: dt.datetime = dt.datetime(1970, 1, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        if not (0 < self.scale <= MAX_TIME_SCALE):
            raise CsiOtaError(f"{TIME_SCALE_ENV} must be in (0, {MAX_TIME_SCALE:.0f}], got {self.scale}")

    @classmethod
    def starting_now(cls, virtual_start: dt.datetime, scale: float) -> VirtualClock:
        return cls(scale=scale, origin_real_s=time.time(), origin_virtual=virtual_start.astimezone(UTC))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> VirtualClock:
        environ = os.environ if environ is None else environ
        raw_scale = environ.get(TIME_SCALE_ENV, "").strip()
        raw_origin = environ.get(CLOCK_ORIGIN_ENV, "").strip()
        try:
            scale = float(raw_scale) if raw_scale else 1.0
        except ValueError as exc:
            raise CsiOtaError(f"{TIME_SCALE_ENV} must be a number, got {raw_scale!r}") from exc
        if not raw_origin:
            if scale != 1.0:
                return cls.starting_now(dt.datetime.now(UTC), scale)
            return cls()
        virtual_text, sep, real_text = raw_origin.rpartition("@")
        if not sep:
            raise CsiOtaError(
                f"{CLOCK_ORIGIN_ENV} must be '<virtual ISO time>@<unix seconds>', got {raw_origin!r}"
            )
        try:
            origin_real_s = float(real_text)
        except ValueError as exc:
            raise CsiOtaError(f"{CLOCK_ORIGIN_ENV}: {real_text!r} is not unix seconds") from exc
        return cls(scale=scale, origin_real_s=origin_real_s, origin_virtual=parse_utc(virtual_text))

    def env(self) -> dict[str, str]:
        """The environment variables that make another process read this same clock."""
        origin = self.origin_virtual.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {TIME_SCALE_ENV: repr(self.scale), CLOCK_ORIGIN_ENV: f"{origin}@{self.origin_real_s!r}"}

    @property
    def is_real(self) -> bool:
        return self.scale == 1.0 and self.origin_real_s == 0.0

    def to_virtual(self, real: dt.datetime) -> dt.datetime:
        if self.is_real:
            return real
        elapsed_s = real.timestamp() - self.origin_real_s
        return self.origin_virtual + dt.timedelta(seconds=elapsed_s * self.scale)

    def to_real(self, virtual: dt.datetime) -> dt.datetime:
        """The wall-clock time at which the virtual clock shows ``virtual``."""
        if self.is_real:
            return virtual
        elapsed_s = (virtual - self.origin_virtual).total_seconds() / self.scale
        return dt.datetime.fromtimestamp(self.origin_real_s + elapsed_s, UTC)

    def now(self) -> dt.datetime:
        return self.to_virtual(dt.datetime.now(UTC))

    def real_seconds(self, virtual_s: float) -> float:
        """How many wall-clock seconds ``virtual_s`` virtual seconds take."""
        return virtual_s / self.scale
