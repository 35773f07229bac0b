"""One simulated ESP32-S3 CSI sensor speaking the real device protocol (docs/device-protocol.md).

It checks for updates, verifies the signed manifest as the firmware does
(docs/manifest.md: signature, project, replay, downgrade, secure version,
chip, size), downloads with Range and resumes after drops, reports every OTA
state with an increasing ``seq``, and heart-beats over HTTP (or MQTT when the
fleet has a broker). What happens after it is offered a new release depends
on its behaviour (behaviours.py); a signed rollback always installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urljoin

import httpx

from csi_ota.controller.semver import semver_key
from csi_ota.errors import CsiOtaError
from csi_ota.manifest import Manifest, verify_manifest

ESP32S3_CHIP_ID = 9
OTA_SLOT_SIZE_BYTES = 1_310_720
DOWNLOAD_CHUNK_BYTES = 4096
MAX_LINK_DROPS_PER_DOWNLOAD = 3
MAX_DOWNLOAD_RESTARTS = 3
REPORT_ATTEMPTS = 3
MIN_REAL_INTERVAL_S = 0.05
LATE_FRACTION = 0.5
STATUS_PATH = "/api/ota/status"
VERSION_PATH = "/api/ota/version"
HEARTBEAT_PATH = "/api/devices/{device_id}/heartbeat"
MAX_REPORTED_INTERVAL_S = 7 * 24 * 3600  # the device API's bound on reported intervals


def _reported_interval_s(virtual_s: float) -> int:
    return min(MAX_REPORTED_INTERVAL_S, max(1, round(virtual_s)))


@dataclass
class FleetStats:
    """Counters shared by every simulated device of one fleet (one asyncio thread: no locks)."""

    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    downloads_in_flight: int = 0
    max_downloads_in_flight: int = 0
    bytes_downloaded: int = 0
    link_drops: int = 0
    power_cuts: int = 0
    range_resumes: int = 0
    version_check_latencies_s: list[float] = field(default_factory=list)
    # Load: periodic checks and heartbeats due (per the intervals) and how late they were sent.
    actions_due: int = 0
    actions_late: int = 0  # done (answered) more than LATE_FRACTION of an interval after they were due

    def download_started(self) -> None:
        self.downloads_in_flight += 1
        self.max_downloads_in_flight = max(self.max_downloads_in_flight, self.downloads_in_flight)

    def download_finished(self) -> None:
        self.downloads_in_flight -= 1


@dataclass
class FleetTiming:
    """Real seconds between a device's actions (virtual intervals divided by the time scale)."""

    check_interval_s: float
    heartbeat_interval_s: float
    time_scale: float = 1.0
    boot_s: float = 0.05
    slow_link_bytes_per_s: float = 64 * 1024
    request_timeout_s: float = 15.0


@dataclass
class FleetContext:
    client: httpx.AsyncClient
    device_urls: list[str]
    trusted_keys: list[Any]
    timing: FleetTiming
    stats: FleetStats
    stop: asyncio.Event
    mqtt_publish: Any = None  # callable(device_id, topic_suffix, payload) or None
    # At most this many requests in the HTTP pool at once. httpx's pool scans every queued
    # request against every connection on each assignment: with 1,000 devices queued on 64
    # connections that scan ate the fleet's CPU and added seconds to every request. Waiting
    # on a semaphore instead is O(1).
    slots: asyncio.Semaphore | None = None


class _Unreachable(Exception):
    pass


class SimulatedDevice:
    def __init__(
        self,
        device_id: str,
        token: str,
        behaviour: str,
        ctx: FleetContext,
        *,
        version: str,
        highest_sequence: int = 0,
        project: str = "csi_sensor",
        secure_version: int = 0,
        seed: int = 0,
    ) -> None:
        self.device_id = device_id
        self.token = token
        self.behaviour = behaviour
        self.ctx = ctx
        self.version = version
        self.initial_version = version
        self.highest_sequence = highest_sequence
        self.project = project
        self.secure_version = secure_version
        self.slot = 0
        self.ota_state = "valid"
        self.seq = 0
        self.unacked: tuple[int, str] | None = None
        self.url_index = 0
        self.silent = False
        self.power_cut_done = False
        self.check_interval_s = ctx.timing.check_interval_s
        self.started = time.monotonic()
        self.rng = random.Random(f"{seed}:{device_id}")
        self.history: list[str] = []
        self.refused_sequences: set[int] = set()
        self.installs = 0
        self.holding_slot = False
        self._due: tuple[float, float] | None = None  # (monotonic due time, interval) of the action running

    # ------------------------------------------------------------------ transport

    @property
    def base_url(self) -> str:
        return self.ctx.device_urls[self.url_index % len(self.ctx.device_urls)]

    @contextlib.asynccontextmanager
    async def _slot(self):
        """One of the fleet's request slots; re-entrant per device (a report sent mid-download)."""
        if self.ctx.slots is None or self.holding_slot:
            yield
            return
        async with self.ctx.slots:
            self.holding_slot = True
            try:
                yield
            finally:
                self.holding_slot = False

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _request(self, method: str, path: str, kind: str, **kwargs) -> httpx.Response:
        """One request, failing over to the next controller URL when the current one is down."""
        for _ in range(len(self.ctx.device_urls)):
            url = urljoin(self.base_url, path)
            try:
                async with self._slot():
                    response = await self.ctx.client.request(
                        method,
                        url,
                        headers=self._headers(),
                        timeout=self.ctx.timing.request_timeout_s,
                        **kwargs,
                    )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectTimeout):
                self.ctx.stats.errors[f"{kind}:unreachable"] += 1
                self.url_index += 1
                continue
            except httpx.TimeoutException:
                self.ctx.stats.errors[f"{kind}:timeout"] += 1
                raise _Unreachable from None
            self.ctx.stats.requests[kind] += 1
            if response.status_code >= 500 or response.status_code == 429:
                self.ctx.stats.errors[f"{kind}:http_{response.status_code}"] += 1
            return response
        raise _Unreachable

    # ------------------------------------------------------------------ the device's main loop

    async def run(self) -> None:
        timing = self.ctx.timing
        # Devices power up spread over their shorter interval. As the firmware does, a device
        # heart-beats right after boot (telling the controller its intervals), then checks.
        boot_s = self.rng.uniform(
            0, max(min(timing.check_interval_s, timing.heartbeat_interval_s), MIN_REAL_INTERVAL_S)
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stop.wait(), timeout=boot_s)
        if self.ctx.stop.is_set():
            return
        self._count_due(0.0, timing.heartbeat_interval_s)
        with contextlib.suppress(_Unreachable):
            await self.heartbeat()
        next_check = time.monotonic()
        next_heartbeat = next_check + self._jitter(timing.heartbeat_interval_s)
        while not self.ctx.stop.is_set() and not self.silent:
            now = time.monotonic()
            if now >= next_check:
                self._due = (next_check, self.check_interval_s)
                with contextlib.suppress(_Unreachable):
                    await self.check_for_update()
                self._answered()
                next_check = time.monotonic() + self._jitter(self.check_interval_s)
            if self.silent:
                break
            now = time.monotonic()
            if now >= next_heartbeat:
                self._due = (next_heartbeat, timing.heartbeat_interval_s)
                with contextlib.suppress(_Unreachable):
                    await self.heartbeat()
                self._answered()
                next_heartbeat = time.monotonic() + self._jitter(timing.heartbeat_interval_s)
            wait_s = max(0.0, min(next_check, next_heartbeat) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), timeout=wait_s)

    def _answered(self) -> None:
        """The periodic action due at ``self._due`` got its answer (or gave up) now: on time or late."""
        if self._due is not None:
            due, interval_s = self._due
            self._due = None
            self._count_due(time.monotonic() - due, interval_s)

    def _count_due(self, late_s: float, interval_s: float) -> None:
        self.ctx.stats.actions_due += 1
        if late_s > LATE_FRACTION * max(interval_s, MIN_REAL_INTERVAL_S):
            self.ctx.stats.actions_late += 1

    def _jitter(self, interval_s: float) -> float:
        return max(MIN_REAL_INTERVAL_S, interval_s * self.rng.uniform(0.9, 1.1))

    # ------------------------------------------------------------------ protocol steps

    def version_query(self) -> dict[str, Any]:
        query: dict[str, Any] = {
            "device_id": self.device_id,
            "version": self.version,
            "secure_version": self.secure_version,
            "slot": self.slot,
            "state": self.ota_state,
        }
        if self.unacked is not None:
            query["last_seq"], query["last_reason"] = self.unacked
        return query

    async def check_for_update(self) -> None:
        started = time.perf_counter()
        response = await self._request("GET", VERSION_PATH, "version_check", params=self.version_query())
        self.ctx.stats.version_check_latencies_s.append(time.perf_counter() - started)
        self._answered()  # the check is answered; an install it starts is not lateness
        self._apply_config(response.headers.get("X-Device-Config"))
        if response.status_code != 200:
            return
        data = response.content
        firmware_url = response.headers.get("X-Firmware-Url")
        manifest, refusal = self.evaluate(data)
        if refusal == "same_version":
            return
        if refusal is not None:
            sequence = manifest.sequence if manifest is not None else -1
            if sequence not in self.refused_sequences:  # report a refusal once per manifest
                self.refused_sequences.add(sequence)
                self.ctx.stats.rejected[refusal] += 1
                await self.report("rejected", refusal, manifest=manifest)
            return
        assert manifest is not None
        if self.behaviour == "silent" and not manifest.rollback:
            self.silent = True  # dies right after being offered the update
            self.history.append(f"silent@{manifest.version}")
            return
        await self.install(manifest, firmware_url)

    def _apply_config(self, header: str | None) -> None:
        """The seed's configuration push: check_interval_sec (virtual seconds) is honoured."""
        if not header:
            return
        for key, value in parse_qsl(header):
            if key == "check_interval_sec" and value.isdigit() and int(value) >= 1:
                self.check_interval_s = max(MIN_REAL_INTERVAL_S, int(value) / self.ctx.timing.time_scale)

    def evaluate(self, data: bytes) -> tuple[Manifest | None, str | None]:
        """What the firmware decides about a manifest: (manifest, None) to install, or a refusal reason."""
        try:
            manifest = verify_manifest(data, self.ctx.trusted_keys)
        except CsiOtaError as exc:
            text = exc.message
            if text.startswith("manifest key"):
                return None, "manifest_key"
            if text.startswith("manifest signature"):
                return None, "manifest_signature"
            return None, "manifest_format"
        if manifest.project != self.project:
            return manifest, "manifest_project"
        if manifest.version == self.version:
            return manifest, "same_version"
        if manifest.sequence <= self.highest_sequence:
            return manifest, "manifest_replay"
        if semver_key(manifest.version) < semver_key(self.version) and not manifest.rollback:
            return manifest, "downgrade"
        if manifest.secure_version < self.secure_version:
            return manifest, "secure_version"
        if manifest.chip_id != ESP32S3_CHIP_ID:
            return manifest, "chip_id"
        if manifest.size > OTA_SLOT_SIZE_BYTES:
            return manifest, "image_too_large"
        return manifest, None

    async def report(
        self, state: str, reason: str = "ok", *, manifest: Manifest | None = None, bytes_written: int = 0
    ):
        self.seq += 1
        body = {
            "device_id": self.device_id,
            "seq": self.seq,
            "state": state,
            "reason": reason,
            "version": self.version,
            "target_version": manifest.version if manifest else None,
            "target_sha256": manifest.sha256 if manifest else None,
            "manifest_sequence": manifest.sequence if manifest else None,
            "bytes_written": bytes_written,
        }
        self.history.append(f"{state}:{reason}")
        self.unacked = (self.seq, reason)
        for _ in range(REPORT_ATTEMPTS):
            try:
                response = await self._request("POST", STATUS_PATH, "status_report", json=body)
            except _Unreachable:
                await asyncio.sleep(MIN_REAL_INTERVAL_S)
                continue
            if response.status_code == 200:
                self.unacked = None
                return
            if 400 <= response.status_code < 500 and response.status_code != 429:
                self.ctx.stats.errors[f"status_report:http_{response.status_code}"] += 1
                return
            await asyncio.sleep(MIN_REAL_INTERVAL_S)

    def heartbeat_body(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "version": self.version,
            "uptime_s": int(time.monotonic() - self.started),
            "rssi": -40 - self.rng.randint(0, 40),
            "csi_frames": int((time.monotonic() - self.started) * 100),
            "free_heap": 120_000 + self.rng.randint(0, 8000),
            "ota_state": self.ota_state,
            "slot": self.slot,
            # The intervals it runs with, in the controller's (virtual) seconds: the rollout engine
            # judges reach and silence against them.
            # Clamped to what the device API accepts (1 s .. 7 days): at a large --time-scale the
            # virtual interval can exceed it, and an out-of-range field refuses the whole heartbeat.
            "check_interval_sec": _reported_interval_s(self.check_interval_s * self.ctx.timing.time_scale),
            "heartbeat_interval_sec": _reported_interval_s(
                self.ctx.timing.heartbeat_interval_s * self.ctx.timing.time_scale
            ),
        }

    async def heartbeat(self) -> None:
        body = self.heartbeat_body()
        if self.ctx.mqtt_publish is not None:
            published = self.ctx.mqtt_publish(self.device_id, "heartbeat", body)
            if published:
                self.ctx.stats.requests["heartbeat_mqtt"] += 1
                return
        path = HEARTBEAT_PATH.format(device_id=self.device_id)
        await self._request("POST", path, "heartbeat", json=body)

    # ------------------------------------------------------------------ installing

    async def install(self, manifest: Manifest, firmware_url: str | None) -> None:
        stats = self.ctx.stats
        stats.download_started()
        try:
            image = await self.download(manifest, firmware_url)
        finally:
            stats.download_finished()
        if image is None:
            return
        if len(image) != manifest.size:
            await self.report("rejected", "image_size", manifest=manifest)
            return
        if hashlib.sha256(image).hexdigest() != manifest.sha256:
            await self.report("rejected", "image_digest", manifest=manifest)
            return
        await self.report("downloaded", manifest=manifest, bytes_written=len(image))
        await asyncio.sleep(self.ctx.timing.boot_s)  # reboot into the new slot
        self.installs += 1
        old_version, old_slot = self.version, self.slot
        applies = not manifest.rollback
        if applies and self.behaviour == "crash_on_boot":
            # The new image crashes; the bootloader falls back to the old slot.
            self.ota_state = "valid"
            await self.report("rolled_back", "rolled_back", manifest=manifest)
            stats.outcomes["crashed_rolled_back"] += 1
            await self.heartbeat()
            return
        self.version, self.slot, self.ota_state = manifest.version, 1 - old_slot, "pending_verify"
        await self.report("pending_verify", manifest=manifest)
        if applies and self.behaviour == "fail_selftest":
            self.version, self.slot, self.ota_state = old_version, old_slot, "valid"
            await self.report("rolled_back", "selftest", manifest=manifest)
            stats.outcomes["selftest_rolled_back"] += 1
            await self.heartbeat()
            return
        self.ota_state = "valid"
        self.highest_sequence = max(self.highest_sequence, manifest.sequence)
        await self.report("success", manifest=manifest)
        stats.outcomes["rollback_installed" if manifest.rollback else "installed"] += 1
        await self.heartbeat()

    async def download(self, manifest: Manifest, firmware_url: str | None) -> bytes | None:
        """The image, or None when the download was abandoned (power cut, withdrawn offer, failures)."""
        stats = self.ctx.stats
        path = firmware_url or f"/api/ota/firmware/{manifest.sha256}"
        buffer = bytearray()
        await self.report("downloading", manifest=manifest, bytes_written=0)
        drops = restarts = 0
        last_check = time.monotonic()
        while len(buffer) < manifest.size:
            if self.ctx.stop.is_set():
                return None
            headers = {"Range": f"bytes={len(buffer)}-"} if buffer else {}
            if buffer:
                stats.range_resumes += 1
            drop_at = None
            if (
                self.behaviour == "flaky_link"
                and drops < MAX_LINK_DROPS_PER_DOWNLOAD
                and not manifest.rollback
            ):
                drop_at = len(buffer) + self.rng.randint(1, max(1, manifest.size // 2))
            try:
                url = urljoin(self.base_url, path)
                async with (
                    self._slot(),
                    self.ctx.client.stream(
                        "GET",
                        url,
                        headers={**self._headers(), **headers},
                        timeout=self.ctx.timing.request_timeout_s,
                    ) as response,
                ):
                    stats.requests["firmware"] += 1
                    if response.status_code == 200 and buffer:
                        buffer.clear()  # server ignored Range: start again from byte 0
                    elif response.status_code == 206:
                        if not self._range_ok(response, len(buffer), manifest.size):
                            await self.report(
                                "failed", "http_range", manifest=manifest, bytes_written=len(buffer)
                            )
                            return None
                    elif response.status_code != 200:
                        stats.errors[f"firmware:http_{response.status_code}"] += 1
                        await self.report(
                            "failed", "http_status", manifest=manifest, bytes_written=len(buffer)
                        )
                        return None
                    async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK_BYTES):
                        buffer += chunk
                        stats.bytes_downloaded += len(chunk)
                        if self.behaviour == "slow_link" and not manifest.rollback:
                            await asyncio.sleep(len(chunk) / self.ctx.timing.slow_link_bytes_per_s)
                        if (
                            self.behaviour == "power_cut_mid_download"
                            and not self.power_cut_done
                            and not manifest.rollback
                            and len(buffer) >= manifest.size // 2
                        ):
                            self.power_cut_done = True
                            stats.power_cuts += 1
                            self.history.append("power_cut")
                            await asyncio.sleep(self.ctx.timing.boot_s)  # reboots on the old image
                            return None
                        if drop_at is not None and len(buffer) >= drop_at:
                            break  # the link drops: close the connection mid-body
                        if time.monotonic() - last_check >= self.check_interval_s:
                            last_check = time.monotonic()
                            if not await self._offer_still_stands(manifest):
                                await self.report(
                                    "failed", "aborted", manifest=manifest, bytes_written=len(buffer)
                                )
                                return None
            except (httpx.TransportError, _Unreachable):
                stats.errors["firmware:transport"] += 1
                restarts += 1
                if restarts > MAX_DOWNLOAD_RESTARTS:
                    await self.report(
                        "failed", "http_truncated", manifest=manifest, bytes_written=len(buffer)
                    )
                    return None
                self.url_index += 1
                await asyncio.sleep(MIN_REAL_INTERVAL_S)
                continue
            if drop_at is not None and len(buffer) < manifest.size:
                drops += 1
                stats.link_drops += 1
                await asyncio.sleep(MIN_REAL_INTERVAL_S)
            elif len(buffer) < manifest.size:
                restarts += 1
                if restarts > MAX_DOWNLOAD_RESTARTS:
                    await self.report(
                        "failed", "http_truncated", manifest=manifest, bytes_written=len(buffer)
                    )
                    return None
        return bytes(buffer)

    @staticmethod
    def _range_ok(response: httpx.Response, offset: int, total: int) -> bool:
        content_range = response.headers.get("Content-Range", "")
        unit, _, rest = content_range.partition(" ")
        span, _, size = rest.partition("/")
        start, _, _end = span.partition("-")
        return unit == "bytes" and start == str(offset) and size == str(total)

    async def _offer_still_stands(self, manifest: Manifest) -> bool:
        """A check during a long download: the controller may have withdrawn the offer (abort)."""
        try:
            response = await self._request("GET", VERSION_PATH, "version_check", params=self.version_query())
        except _Unreachable:
            return True
        if response.status_code != 200:
            return False
        try:
            current = verify_manifest(response.content, self.ctx.trusted_keys)
        except CsiOtaError:
            return False
        return current.sha256 == manifest.sha256 and current.sequence == manifest.sequence

    def snapshot(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "behaviour": self.behaviour,
            "version": self.version,
            "initial_version": self.initial_version,
            "ota_state": self.ota_state,
            "highest_sequence": self.highest_sequence,
            "silent": self.silent,
            "installs": self.installs,
            "history": self.history[-20:],
        }
