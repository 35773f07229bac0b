"""How a simulated device behaves when it is offered a new (non-rollback) release.

A mix like ``healthy=70,fail_selftest=30`` is spread over the fleet
deterministically: device *i* gets the behaviour whose cumulative share
covers a hash of (seed, i), so the same seed gives the same fleet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from csi_ota.errors import CsiOtaError

BEHAVIOURS = (
    "healthy",  # installs, passes the self-test, marks valid, keeps heart-beating
    "fail_selftest",  # boots the new image, self-test fails, rolls back (reports rolled_back/selftest)
    "crash_on_boot",  # new image crashes, bootloader falls back: comes back on the old version
    "silent",  # goes silent once offered an update (never talks again)
    "slow_link",  # downloads at a low byte rate
    "flaky_link",  # connection drops mid-download; resumes with Range
    "power_cut_mid_download",  # loses power half-way once; reboots on the old image and retries
)
# Behaviours that install successfully in the end.
SUCCEEDING_BEHAVIOURS = ("healthy", "slow_link", "flaky_link", "power_cut_mid_download")


@dataclass(frozen=True)
class BehaviourMix:
    shares: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: str) -> BehaviourMix:
        """``healthy=70,fail_selftest=30`` (weights, normalised); a bare name means 100 %."""
        text = (text or "healthy").strip()
        shares: list[tuple[str, float]] = []
        for part in text.split(","):
            name, sep, weight_text = part.strip().partition("=")
            name = name.strip()
            if name not in BEHAVIOURS:
                raise CsiOtaError(f"unknown behaviour {name!r}; choose from {', '.join(BEHAVIOURS)}")
            try:
                weight = float(weight_text) if sep else 1.0
            except ValueError as exc:
                raise CsiOtaError(f"behaviour weight for {name!r} is not a number: {weight_text!r}") from exc
            if weight < 0:
                raise CsiOtaError(f"behaviour weight for {name!r} is negative")
            shares.append((name, weight))
        total = sum(w for _, w in shares)
        if total <= 0:
            raise CsiOtaError("behaviour weights add up to zero")
        if len({n for n, _ in shares}) != len(shares):
            raise CsiOtaError("a behaviour is named twice in the mix")
        return cls(tuple((n, w / total) for n, w in shares))

    def assign(self, count: int, seed: str = "fleet") -> list[str]:
        """Exactly-proportional assignment (largest remainder), shuffled by a stable hash."""
        quotas = [(name, share * count) for name, share in self.shares]
        counts = {name: int(q) for name, q in quotas}
        remainder = count - sum(counts.values())
        for name, _q in sorted(quotas, key=lambda nq: nq[1] - int(nq[1]), reverse=True)[:remainder]:
            counts[name] += 1
        order = sorted(range(count), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
        result = [""] * count
        position = 0
        for name, _ in self.shares:
            for _ in range(counts[name]):
                result[order[position]] = name
                position += 1
        return result

    def describe(self) -> str:
        return ", ".join(f"{n} {s * 100:.0f} %" for n, s in self.shares)
