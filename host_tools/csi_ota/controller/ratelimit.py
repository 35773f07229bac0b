"""Per-device request rate limit: a token bucket per device id, in this process's memory.

Several controller processes (PostgreSQL scale-out) each keep their own
buckets, so a device's effective limit is the per-process rate times the number
of processes it is balanced across. The table is bounded: when it holds
MAX_TRACKED_DEVICES buckets, full (idle) ones are dropped first.
"""

from __future__ import annotations

import threading
import time

MAX_TRACKED_DEVICES = 200_000


class DeviceRateLimiter:
    def __init__(self, rate_per_s: float, burst: int, *, clock=time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # device id -> (tokens, last refill time)
        self._lock = threading.Lock()

    def allow(self, device_id: str) -> float:
        """0.0 if the request may proceed, else the seconds to wait before retrying."""
        if self.rate_per_s <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(device_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[device_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[device_id] = (tokens, now)
            if len(self._buckets) > MAX_TRACKED_DEVICES:
                self._evict(now)
            return (1.0 - tokens) / self.rate_per_s

    def _evict(self, now: float) -> None:
        idle = [
            k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate_per_s >= self.burst
        ]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) > MAX_TRACKED_DEVICES:
            self._buckets.clear()
