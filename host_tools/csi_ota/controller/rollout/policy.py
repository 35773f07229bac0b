"""A rollout's policy: stages, soak, batch size, thresholds, update window, timeouts, rollback.

Defaults come from the seed's environment variables (DEVICE_UPDATE_BATCH_SIZE,
UPDATE_RETRY_COUNT, ROLLBACK_TIMEOUT_MIN) and its rollout plan (10 % → 50 % →
100 %, 24 h of monitoring before widening). Stage membership is by rank: the
selection sorted by hash(rollout id, device id) and cut at ceil(p × N), fixed
when the rollout is created (a pure function, recomputed identically anywhere).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from csi_ota.errors import CsiOtaError

DEFAULT_STAGE_PERCENTS = (10, 50, 100)
DEFAULT_SOAK_S = 24 * 3600
DEFAULT_BATCH_SIZE = 5  # DEVICE_UPDATE_BATCH_SIZE
DEFAULT_RETRY_COUNT = 3  # UPDATE_RETRY_COUNT
DEFAULT_HEALTH_TIMEOUT_MIN = 30  # ROLLBACK_TIMEOUT_MIN
DEFAULT_CHECK_INTERVAL_S = 3600  # the firmware's CONFIG_CSI_OTA_CHECK_INTERVAL_SEC, `provision`, `fleet`
DEFAULT_HEARTBEAT_INTERVAL_S = 300  # HEALTH_CHECK_INTERVAL_SEC
MAX_INTERVAL_S = 7 * 24 * 3600
ROLLBACK_POLICIES = ("auto", "none")
BUCKET_BITS = 63  # fits a signed BIGINT on SQLite and PostgreSQL
BUCKET_SPACE = 1 << BUCKET_BITS
_WINDOW = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
MAX_STAGES = 10
MAX_SOAK_S = 30 * 24 * 3600
MAX_BATCH_SIZE = 1_000_000
MAX_COUNT = 1_000_000_000


def _env_int(name: str, default: int, minimum: int, environ: dict[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise CsiOtaError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise CsiOtaError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class UpdateWindow:
    """Daily window ``HH:MM-HH:MM`` in a named time zone; may cross midnight; empty = always."""

    spec: str = ""
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError, TypeError) as exc:
            raise CsiOtaError(f"update window: unknown time zone {self.time_zone!r}") from exc
        if self.spec and not _WINDOW.match(self.spec):
            raise CsiOtaError(f"update window must look like 01:00-05:00, got {self.spec!r}")
        if self.spec and self._bounds()[0] == self._bounds()[1]:
            raise CsiOtaError(f"update window {self.spec!r} is empty (start equals end)")

    def _bounds(self) -> tuple[int, int]:
        m = _WINDOW.match(self.spec)
        assert m is not None
        start = int(m.group(1)) * 60 + int(m.group(2))
        end = int(m.group(3)) * 60 + int(m.group(4))
        return start, min(end, 24 * 60)

    def contains(self, when: dt.datetime) -> bool:
        if not self.spec:
            return True
        local = when.astimezone(ZoneInfo(self.time_zone))
        minute = local.hour * 60 + local.minute
        start, end = self._bounds()
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # crosses midnight

    def describe(self) -> str:
        return f"{self.spec} {self.time_zone}" if self.spec else "always"


@dataclass(frozen=True)
class RolloutPolicy:
    stages: tuple[int, ...] = DEFAULT_STAGE_PERCENTS  # cumulative percent of the selection
    soak_s: int = DEFAULT_SOAK_S  # per stage, after its last device is decided
    batch_size: int = DEFAULT_BATCH_SIZE  # maximum concurrent updates
    success_percent: float = 95.0
    success_min_count: int = 1
    failure_percent: float = 10.0
    failure_min_count: int = 3
    window: UpdateWindow = field(default_factory=UpdateWindow)
    health_timeout_s: int = DEFAULT_HEALTH_TIMEOUT_MIN * 60
    max_retries: int = DEFAULT_RETRY_COUNT
    # Assumed for a device that has not said (heartbeat check_interval_sec / heartbeat_interval_sec)
    # and has no pushed check_interval_sec: how often it checks, how often it heart-beats.
    check_interval_s: int = DEFAULT_CHECK_INTERVAL_S
    heartbeat_interval_s: int = DEFAULT_HEARTBEAT_INTERVAL_S
    rollback: str = "auto"
    alert_webhook: str = ""

    def __post_init__(self) -> None:
        if not self.stages or len(self.stages) > MAX_STAGES:
            raise CsiOtaError(f"a rollout needs 1 to {MAX_STAGES} stages")
        previous = 0
        for percent in self.stages:
            if not isinstance(percent, int) or not (previous < percent <= 100):
                raise CsiOtaError(
                    f"stages must be increasing percents ending at 100, got {list(self.stages)}"
                )
            previous = percent
        if self.stages[-1] != 100:
            raise CsiOtaError(f"the last stage must be 100 %, got {list(self.stages)}")
        if not (0 <= self.soak_s <= MAX_SOAK_S):
            raise CsiOtaError(f"soak must be between 0 and {MAX_SOAK_S} s, got {self.soak_s}")
        if not (1 <= self.batch_size <= MAX_BATCH_SIZE):
            raise CsiOtaError(f"batch size must be 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        for name in ("success_percent", "failure_percent"):
            value = getattr(self, name)
            if not (0 <= value <= 100):
                raise CsiOtaError(f"{name.replace('_', ' ')} must be 0..100, got {value}")
        if not (0 <= self.success_min_count <= MAX_COUNT) or not (1 <= self.failure_min_count <= MAX_COUNT):
            raise CsiOtaError(f"success minimum must be 0..{MAX_COUNT} and failure minimum 1..{MAX_COUNT}")
        if not (1 <= self.health_timeout_s <= MAX_SOAK_S):
            raise CsiOtaError(f"health timeout must be 1..{MAX_SOAK_S} s, got {self.health_timeout_s}")
        for name in ("check_interval_s", "heartbeat_interval_s"):
            if not (1 <= getattr(self, name) <= MAX_INTERVAL_S):
                raise CsiOtaError(f"{name.replace('_', ' ')} must be 1..{MAX_INTERVAL_S} s")
        if not (0 <= self.max_retries <= 100):
            raise CsiOtaError(f"retries must be 0..100, got {self.max_retries}")
        if self.rollback not in ROLLBACK_POLICIES:
            raise CsiOtaError(f"rollback policy must be one of {', '.join(ROLLBACK_POLICIES)}")
        if not isinstance(self.alert_webhook, str) or len(self.alert_webhook) > 2000:
            raise CsiOtaError("alert webhook must be a URL of at most 2000 characters")
        if self.alert_webhook and not re.match(r"^https?://[^\s]+$", self.alert_webhook):
            raise CsiOtaError(f"alert webhook must be an http(s) URL, got {self.alert_webhook!r}")

    @classmethod
    def defaults_from_env(cls, environ: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "batch_size": _env_int("DEVICE_UPDATE_BATCH_SIZE", DEFAULT_BATCH_SIZE, 1, environ),
            "max_retries": _env_int("UPDATE_RETRY_COUNT", DEFAULT_RETRY_COUNT, 0, environ),
            "health_timeout_s": 60 * _env_int("ROLLBACK_TIMEOUT_MIN", DEFAULT_HEALTH_TIMEOUT_MIN, 1, environ),
            "heartbeat_interval_s": _env_int(
                "HEALTH_CHECK_INTERVAL_SEC", DEFAULT_HEARTBEAT_INTERVAL_S, 1, environ
            ),
            "alert_webhook": (environ if environ is not None else os.environ).get(
                "ROLLOUT_ALERT_WEBHOOK", ""
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], environ: dict[str, str] | None = None) -> RolloutPolicy:
        """Builds a policy from JSON (API body or the stored column); unknown keys are an error."""
        values: dict[str, Any] = cls.defaults_from_env(environ)
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known - {"window_time_zone"})
        if unknown:
            raise CsiOtaError(f"unknown rollout policy field(s): {', '.join(unknown)}")
        for key, value in data.items():
            if key in ("window", "window_time_zone"):
                continue
            values[key] = value
        window = data.get("window", "")
        if isinstance(window, dict):
            window = UpdateWindow(str(window.get("spec", "")), str(window.get("time_zone", "UTC")))
        else:
            window = UpdateWindow(str(window or ""), str(data.get("window_time_zone", "UTC")))
        values["window"] = window
        try:
            if "stages" in values:
                values["stages"] = tuple(int(p) for p in values["stages"])
            for key in ("soak_s", "batch_size", "success_min_count", "failure_min_count"):
                values[key] = _as_int(key, values.get(key, getattr(cls, key, 0)))
            for key in ("health_timeout_s", "max_retries", "check_interval_s", "heartbeat_interval_s"):
                values[key] = _as_int(key, values.get(key, getattr(cls, key)))
            for key in ("success_percent", "failure_percent"):
                if key in values:
                    values[key] = float(values[key])
        except (TypeError, ValueError) as exc:
            raise CsiOtaError(f"rollout policy: {exc}") from exc
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = list(self.stages)
        return data


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError(f"{key} must be an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{key} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {value!r}") from None


def device_bucket(rollout_id: int, device_id: str) -> int:
    """A stable 63-bit hash of (rollout id, device id), uniform over 0..2**63."""
    digest = hashlib.sha256(f"{rollout_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - BUCKET_BITS)


def stage_sizes(count: int, stages: tuple[int, ...], min_first: int = 1) -> list[int]:
    """Devices per stage: cumulative cuts at ceil(percent × count / 100).

    The first stage holds at least ``min_first`` devices (the gate's success minimum) and at
    least one whenever ``count`` >= 1, so a canary stage is never empty; later stages may be.
    """
    cuts = []
    previous = 0
    for percent in stages:
        cut = min(count, max(-(-percent * count // 100), min(max(min_first, 1), count), previous))
        cuts.append(cut - previous)
        previous = cut
    return cuts


def assign_stages(
    rollout_id: int, device_ids: Iterable[str], stages: tuple[int, ...], min_first: int = 1
) -> dict[str, tuple[int, int]]:
    """device id -> (stage, bucket): members sorted by hash(rollout, device), cut by rank.

    A pure function of the rollout id, the member set and the policy, so any controller
    process recomputes the same stages; the split is exactly the policy's percentages.
    """
    ranked = sorted((device_bucket(rollout_id, d), d) for d in set(device_ids))
    sizes = stage_sizes(len(ranked), stages, min_first)
    result: dict[str, tuple[int, int]] = {}
    position = 0
    for stage, size in enumerate(sizes):
        for bucket, device_id in ranked[position : position + size]:
            result[device_id] = (stage, bucket)
        position += size
    return result
