"""The device registry: identity and tokens, reconciliation, health, status reports, config.

Every function works inside the caller's session/transaction, so a change and
its audit row commit together or not at all. Heartbeats arriving over HTTP and
over MQTT both go through :func:`record_heartbeat`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote_plus, urlencode

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from csi_ota.controller import DEFAULT_MQTT_CONTROLLER_USER, audit
from csi_ota.controller.models import Device, Release, StatusReport, TagConfig, utcnow
from csi_ota.controller.problems import Conflict, NotFound
from csi_ota.controller.tokens import (
    hash_token,
    hashes_equal,
    mosquitto_password_hash,
    mqtt_password_for,
    new_device_token,
)
from csi_ota.errors import CsiOtaError

# Device ids become MQTT topic levels and file names: no '/', '+', '#', '.', spaces.
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,31}$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_TAGS_PER_DEVICE = 32
OTA_STATES = ("downloading", "downloaded", "pending_verify", "success", "rejected", "failed", "rolled_back")
OTADATA_STATES = ("new", "pending_verify", "valid", "invalid", "aborted", "undefined")
REASON_PATTERN = re.compile(r"^[a-z0-9_]{1,32}$")
U32_MAX = 0xFFFFFFFF
# A device is offline after this many missed health-check intervals.
OFFLINE_AFTER_INTERVALS = 3
DEGRADED_OTADATA_STATES = ("pending_verify", "invalid", "aborted")
# What a status report says about the running image's otadata state (None: nothing new).
REPORT_OTADATA_STATES = {"pending_verify": "pending_verify", "success": "valid", "rolled_back": "valid"}
# How stale devices.last_seen may get before a version check with nothing new rewrites it. 0: always
# (the rollout engine judges silence from last_seen, on a virtual clock that may run 3600x real time).
LAST_SEEN_RESOLUTION_S = 0.0

# Configuration a controller may push (ota_deployment_config_t fields) and how to check each value.
# What the device can hold (firmware/components/ota_core): each URL in ota_deployment_config_t's
# char[256], the whole X-Device-Config header, URL-encoded, in OTA_PORT_DEVICE_CONFIG_MAX_BYTES
# (ota_port.h, NUL included). tests/security/test_h1_config_limits.py ties both to the C headers.
CONFIG_URL_MAX_CHARS = 255
# What a device reports as a version: printable ASCII without spaces (no NUL: PostgreSQL text refuses it).
VERSION_TEXT_PATTERN = re.compile(r"^[\x21-\x7e]{1,31}$")
# What a device's reports may carry: the same, or empty (a report with no target sends "").
REPORTED_VERSION_PATTERN = re.compile(r"^[\x21-\x7e]{0,31}$")
# ASCII digits only: str.isdigit() also accepts "²" and "١٢٣", which the device's strtoul does not read.
_ASCII_DECIMAL = re.compile(r"[0-9]{1,10}")
# No whitespace or control characters anywhere (re.fullmatch: "$" alone would accept a trailing newline).
_CONFIG_URL = re.compile(r"https?://[\x21-\x7e]+")
DEVICE_CONFIG_HEADER_MAX_BYTES = 768 - 1
# Longest values of the fixed-size keys: with both URLs within CONFIG_URL_ENCODED_MAX_BYTES, any
# merge of tag and device configs fits the device's header buffer (see config_header()).
_CONFIG_FIXED_WORST = {"auto_update_enabled": "1", "check_interval_sec": str(7 * 24 * 3600)}
_CONFIG_URL_KEYS = ("update_url", "version_check_url")
CONFIG_URL_ENCODED_MAX_BYTES = (
    DEVICE_CONFIG_HEADER_MAX_BYTES
    - len(urlencode({**_CONFIG_FIXED_WORST, **dict.fromkeys(_CONFIG_URL_KEYS, "")}))
) // len(_CONFIG_URL_KEYS)


def _check_interval(value: str) -> bool:
    return _ASCII_DECIMAL.fullmatch(value) is not None and 10 <= int(value) <= 7 * 24 * 3600


def _check_flag(value: str) -> bool:
    return value in ("0", "1")


def _check_url(value: str) -> bool:
    if _CONFIG_URL.fullmatch(value) is None:
        return False
    size = len(value.encode())
    if size > CONFIG_URL_MAX_CHARS:
        raise CsiOtaError(f"URL of {size} bytes: the device holds at most {CONFIG_URL_MAX_CHARS}")
    encoded = len(quote_plus(value))
    if encoded > CONFIG_URL_ENCODED_MAX_BYTES:
        raise CsiOtaError(
            f"URL is {encoded} bytes once URL-encoded; at most {CONFIG_URL_ENCODED_MAX_BYTES} fit the "
            f"device's X-Device-Config header ({DEVICE_CONFIG_HEADER_MAX_BYTES} bytes for all keys)"
        )
    return True


CONFIG_KEYS = {
    "check_interval_sec": _check_interval,
    "auto_update_enabled": _check_flag,
    "update_url": _check_url,
    "version_check_url": _check_url,
}


def check_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.match(device_id):
        raise CsiOtaError(f"device id {device_id!r}: use 1-31 letters, digits, '_' or '-'")
    return device_id


def check_tags(tags: Iterable[str]) -> list[str]:
    result: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
            raise CsiOtaError(f"tag {tag!r}: use 1-64 letters, digits, '_', '.', ':' or '-'")
        if tag not in result:
            result.append(tag)
    if len(result) > MAX_TAGS_PER_DEVICE:
        raise CsiOtaError(f"at most {MAX_TAGS_PER_DEVICE} tags per device")
    return result


def check_config(config: dict[str, Any]) -> dict[str, str]:
    """Validates a configuration push; values become strings (they travel form-encoded)."""
    if not isinstance(config, dict):
        raise CsiOtaError("config must be an object of key: value")
    result: dict[str, str] = {}
    for key, value in config.items():
        check = CONFIG_KEYS.get(key)
        if check is None:
            raise CsiOtaError(f"config key {key!r} is not pushable (use {', '.join(sorted(CONFIG_KEYS))})")
        if isinstance(value, bool):
            value = "1" if value else "0"
        try:
            valid = isinstance(value, str | int) and check(str(value))
        except CsiOtaError as exc:
            raise CsiOtaError(f"config {key}: {exc}") from None
        if not valid:
            raise CsiOtaError(f"config {key}={value!r}: invalid value")
        result[key] = str(value)
    return result


# --------------------------------------------------------------------------- identity


def get_device(session: Session, device_id: str, *, for_update: bool = False) -> Device:
    statement = select(Device).where(Device.id == device_id)
    if for_update:
        statement = statement.with_for_update(of=Device)
    device = session.scalar(statement)
    if device is None:
        raise NotFound(f"no device {device_id!r}")
    return device


def _issue_token(device: Device) -> str:
    token = new_device_token()
    device.token_hash = hash_token(token)
    device.mqtt_password_hash = mosquitto_password_hash(mqtt_password_for(token))
    device.token_created = utcnow()
    return token


def check_not_reserved(device_id: str, reserved: Iterable[str] = ()) -> str:
    """Refuses the controller's MQTT user names as device ids (case-insensitively): a device with that
    name would share the controller's broker account and break `csi-ota mqtt-acl` for the fleet."""
    names = {DEFAULT_MQTT_CONTROLLER_USER, *reserved}
    if device_id.lower() in {name.lower() for name in names if name}:
        raise CsiOtaError(f"device id {device_id!r} is reserved for the controller's MQTT user")
    return device_id


def register_device(
    session: Session,
    device_id: str,
    *,
    tags: Iterable[str] = (),
    actor: str,
    reserved_ids: Iterable[str] = (),
) -> str:
    """Creates the device and returns its token (shown once; only its hash is stored)."""
    check_device_id(device_id)
    check_not_reserved(device_id, reserved_ids)
    tags = check_tags(tags)
    if session.get(Device, device_id) is not None:
        raise Conflict(f"device {device_id!r} already exists")
    device = Device(id=device_id, tags=tags, created=utcnow(), health="unknown")
    token = _issue_token(device)
    session.add(device)
    audit.record(session, actor, "device.register", f"device:{device_id}", tags=tags)
    return token


def rotate_token(session: Session, device_id: str, *, actor: str) -> str:
    device = get_device(session, device_id)
    if device.decommissioned:
        raise Conflict(f"device {device_id!r} is decommissioned")
    token = _issue_token(device)
    audit.record(session, actor, "device.token_rotate", f"device:{device_id}")
    return token


def revoke_token(session: Session, device_id: str, *, actor: str) -> None:
    device = get_device(session, device_id)
    device.token_hash = None
    device.mqtt_password_hash = None
    audit.record(session, actor, "device.token_revoke", f"device:{device_id}")


def decommission(session: Session, device_id: str, *, actor: str) -> None:
    device = get_device(session, device_id)
    device.decommissioned = True
    device.token_hash = None
    device.mqtt_password_hash = None
    device.assigned_release_id = None
    audit.record(session, actor, "device.decommission", f"device:{device_id}")


def mqtt_credentials(session: Session) -> list[tuple[str, str]]:
    """(device id, Mosquitto password hash) of every device that may use the broker, by id."""
    rows = session.execute(
        select(Device.id, Device.mqtt_password_hash)
        .where(Device.decommissioned.is_(False), Device.mqtt_password_hash.is_not(None))
        .order_by(Device.id)
    )
    return [(device_id, hashed) for device_id, hashed in rows]


def set_tags(
    session: Session, device_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = (), actor: str
) -> list[str]:
    device = get_device(session, device_id)
    add, remove = check_tags(add), check_tags(remove)
    tags = [t for t in device.tags if t not in remove]
    tags = check_tags(tags + [t for t in add if t not in tags])
    device.tags = tags
    audit.record(session, actor, "device.tag", f"device:{device_id}", add=add, remove=remove)
    return tags


def authenticate_device(session: Session, token: str) -> Device | None:
    """The device owning ``token`` — None for unknown, revoked or decommissioned."""
    presented = hash_token(token)
    device = session.scalar(select(Device).where(Device.token_hash == presented))
    if device is None or device.decommissioned or not hashes_equal(device.token_hash, presented):
        return None
    return device


# --------------------------------------------------------------------------- assignment and config


def assign_release(session: Session, device: Device, release: Release | None, *, actor: str) -> None:
    if release is not None and release.retired:
        raise Conflict(f"release {release.version} is retired")
    if device.decommissioned:
        raise Conflict(f"device {device.id!r} is decommissioned")
    device.assigned_release_id = None if release is None else release.id
    device.assigned_release = release
    audit.record(
        session,
        actor,
        "device.assign",
        f"device:{device.id}",
        release_id=None if release is None else release.id,
        version=None if release is None else release.version,
    )


def offered_release(device: Device) -> Release | None:
    """The release the version check offers: assigned, not retired, not already running."""
    release = device.assigned_release
    if release is None or release.retired or release.version == device.version:
        return None
    return release


def may_download(device: Device, release: Release) -> bool:
    """A device downloads only its assigned release (offered or already running) or the image it runs.

    Any other stored image is refused (issue 12 L6): a device token must not fetch every image by hash.
    """
    assigned = device.assigned_release
    if assigned is not None and assigned.sha256 == release.sha256:
        return True
    return device.version is not None and release.version == device.version and not release.rollback


def set_device_config(session: Session, device: Device, config: dict[str, Any] | None, *, actor: str) -> None:
    device.config = check_config(config) if config else None
    device.config_revision = (device.config_revision or 0) + 1
    audit.record(session, actor, "device.config", f"device:{device.id}", config=device.config)


def set_tag_config(session: Session, tag: str, config: dict[str, Any] | None, *, actor: str) -> None:
    check_tags([tag])
    row = session.get(TagConfig, tag)
    if not config:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(TagConfig(tag=tag, config=check_config(config), revision=1, updated=utcnow()))
    else:
        row.config = check_config(config)
        row.revision += 1
        row.updated = utcnow()
    audit.record(session, actor, "tag.config", f"tag:{tag}", config=config or None)


def merged_config(session: Session, device: Device) -> dict[str, str]:
    """Per-tag configs in the device's tag order, then the device's own (device wins)."""
    merged: dict[str, str] = {}
    if device.tags:
        rows = {r.tag: r for r in session.scalars(select(TagConfig).where(TagConfig.tag.in_(device.tags)))}
        for tag in device.tags:
            if tag in rows:
                merged.update(rows[tag].config)
    merged.update(device.config or {})
    return merged


def config_header(config: dict[str, str]) -> str | None:
    """X-Device-Config; None when empty, or (stored before the limits existed) too long to hold."""
    if not config:
        return None
    header = urlencode(sorted(config.items()))
    return header if len(header) <= DEVICE_CONFIG_HEADER_MAX_BYTES else None


# --------------------------------------------------------------------------- device reports


def reconcile_version_check(device: Device, query: dict[str, Any], now: dt.datetime) -> bool:
    """Updates what the device runs from its version check (already validated); True if anything changed.

    ``last_seen`` is rewritten when it is LAST_SEEN_RESOLUTION_S old; a positive resolution
    makes a device polling again with nothing new cost a read, not a write.
    """
    changed = False
    if query.get("version") is not None and query.get("slot") is None and device.version != query["version"]:
        _set_running(device, query["version"], None)
        changed = True
    for name in ("version", "secure_version", "slot"):
        if query.get(name) is not None and getattr(device, name) != query[name]:
            setattr(device, name, query[name])
            changed = True
    if query.get("state") is not None and device.ota_state != query["state"]:
        device.ota_state = query["state"]
        changed = True
    stale = device.last_seen is None or now - device.last_seen >= dt.timedelta(seconds=LAST_SEEN_RESOLUTION_S)
    if changed or stale:
        device.last_seen = now
    return changed


def health_from_heartbeat(ota_state: str | None) -> str:
    return "degraded" if ota_state in DEGRADED_OTADATA_STATES else "healthy"


def note_offer_taken(device: Device, release: Release, now: dt.datetime) -> None:
    """The device received ``release``'s manifest (or asked for its image): it took the offer.

    Called on the version-check and download hot paths; writes only the first time per offer
    (the rollout engine clears ``offer_taken_at`` when it makes or renews an offer), so the
    device's health clock starts when it really picked the update up.
    """
    if device.offer_release_id != release.id or device.offer_taken_at is None:
        device.offer_release_id = release.id
        device.offer_taken_at = now


def _set_running(device: Device, version: str | None, slot: int | None) -> None:
    """Records what the device runs; ``slot`` is always the running slot.

    Without an explicit slot, a change of running version on a two-slot device means it
    booted the other slot (an update or a rollback always crosses slots).
    """
    if slot is not None:
        device.slot = slot
    elif version and device.version and version != device.version and device.slot in (0, 1):
        device.slot = 1 - device.slot
    if version:
        device.version = version


def _interval(value: Any) -> int | None:
    return value if isinstance(value, int) and 1 <= value <= 7 * 24 * 3600 else None


def record_heartbeat(session: Session, device: Device, heartbeat: dict[str, Any], now: dt.datetime) -> None:
    """The one health update for HTTP and MQTT heartbeats (fields already type-checked).

    Reconciled in order with the status reports: a heartbeat taken while the image was still
    being verified (``pending_verify``) but received after the device reported ``success`` for
    that version is stale: it shows the device is alive (``last_seen``) but changes neither
    its state nor its health, and is not the healthy heartbeat after an update.
    """
    device.last_seen = now
    version, ota_state = heartbeat.get("version"), heartbeat.get("ota_state")
    confirmed = device.last_ota_state == "success" and version is not None and version == device.version
    if ota_state == "pending_verify" and confirmed:
        return  # taken before the confirm, received after it: alive, but says nothing newer
    device.last_heartbeat = now
    for name in ("uptime_s", "rssi", "csi_frames", "free_heap"):
        if heartbeat.get(name) is not None:
            setattr(device, name, heartbeat[name])
    check_s, heartbeat_s = (
        _interval(heartbeat.get("check_interval_sec")),
        _interval(heartbeat.get("heartbeat_interval_sec")),
    )
    if check_s is not None:
        device.check_interval_s = check_s
    if heartbeat_s is not None:
        device.heartbeat_interval_s = heartbeat_s
    _set_running(device, version, heartbeat.get("slot"))
    if ota_state is not None:
        device.ota_state = ota_state
    device.health = health_from_heartbeat(device.ota_state)


def record_stats(session: Session, device: Device, stats: dict[str, Any], now: dt.datetime) -> None:
    device.last_seen = now
    device.stats = stats


def record_csi(device: Device, payload_bytes: int, now: dt.datetime) -> None:
    device.last_seen = now
    device.csi_messages_received = (device.csi_messages_received or 0) + 1
    device.csi_bytes_received = (device.csi_bytes_received or 0) + payload_bytes


def record_status(session: Session, device: Device, report: dict[str, Any], now: dt.datetime) -> bool:
    """Stores a status report once per (device, seq); returns False for a repeat (nothing changes)."""
    seq = report["seq"]
    existing = session.scalar(
        select(StatusReport.id).where(StatusReport.device_id == device.id, StatusReport.seq == seq)
    )
    if existing is not None:
        return False
    session.add(
        StatusReport(
            device_id=device.id,
            seq=seq,
            state=report["state"],
            reason=report.get("reason") or "ok",
            version=report.get("version"),
            target_version=report.get("target_version"),
            target_sha256=report.get("target_sha256"),
            manifest_sequence=report.get("manifest_sequence"),
            bytes_written=report.get("bytes_written"),
            received_at=now,
        )
    )
    device.last_seen = now
    if device.last_status_seq is None or seq >= device.last_status_seq:
        device.last_status_seq = seq
        device.last_ota_state = report["state"]
        device.last_ota_reason = report.get("reason") or "ok"
        device.last_ota_at = now
        _set_running(device, report.get("version"), report.get("slot"))
        running_state = REPORT_OTADATA_STATES.get(report["state"])
        if running_state is not None:  # the report says what the running image's otadata state is
            device.ota_state = running_state
            if device.last_heartbeat is not None:
                device.health = health_from_heartbeat(running_state)
    audit.record(
        session,
        f"device:{device.id}",
        "device.ota_state",
        f"device:{device.id}",
        seq=seq,
        state=report["state"],
        reason=report.get("reason") or "ok",
        version=report.get("version"),
        target_version=report.get("target_version"),
    )
    return True


# --------------------------------------------------------------------------- queries


def effective_health(device: Device, now: dt.datetime, health_check_interval_s: int) -> str:
    if device.last_heartbeat is None:
        return device.health
    if now - device.last_heartbeat > dt.timedelta(seconds=OFFLINE_AFTER_INTERVALS * health_check_interval_s):
        return "offline"
    return device.health


def select_devices(
    *,
    tag: str | None = None,
    version: str | None = None,
    health: str | None = None,
    seen_within_s: int | None = None,
    not_seen_within_s: int | None = None,
    device_ids: Iterable[str] | None = None,
    include_decommissioned: bool = False,
    now: dt.datetime,
    health_check_interval_s: int,
):
    """A SELECT of devices matching every given filter (tags are matched in Python, see filter_tag)."""
    statement = select(Device).order_by(Device.id)
    if not include_decommissioned:
        statement = statement.where(Device.decommissioned.is_(False))
    if device_ids is not None:
        statement = statement.where(Device.id.in_(list(device_ids)))
    if version:
        statement = statement.where(Device.version == version)
    if seen_within_s is not None:
        statement = statement.where(Device.last_seen >= now - dt.timedelta(seconds=seen_within_s))
    if not_seen_within_s is not None:
        cutoff = now - dt.timedelta(seconds=not_seen_within_s)
        statement = statement.where(or_(Device.last_seen.is_(None), Device.last_seen < cutoff))
    if health:
        offline_cutoff = now - dt.timedelta(seconds=OFFLINE_AFTER_INTERVALS * health_check_interval_s)
        if health == "offline":
            statement = statement.where(Device.last_heartbeat < offline_cutoff)
        elif health == "unknown":
            statement = statement.where(Device.last_heartbeat.is_(None))
        else:
            statement = statement.where(
                and_(Device.health == health, Device.last_heartbeat >= offline_cutoff)
            )
    return statement


def filter_tag(devices: Iterable[Device], tag: str | None) -> list[Device]:
    return [d for d in devices if tag is None or tag in (d.tags or [])]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def device_to_dict(device: Device, now: dt.datetime, health_check_interval_s: int) -> dict[str, Any]:
    release = device.assigned_release
    return {
        "device_id": device.id,
        "tags": list(device.tags or []),
        "version": device.version,
        "secure_version": device.secure_version,
        "slot": device.slot,
        "ota_state": device.ota_state,
        "health": effective_health(device, now, health_check_interval_s),
        "last_seen": _iso(device.last_seen),
        "last_heartbeat": _iso(device.last_heartbeat),
        "uptime_s": device.uptime_s,
        "rssi": device.rssi,
        "free_heap": device.free_heap,
        "csi_frames": device.csi_frames,
        "csi_messages_received": device.csi_messages_received,
        "csi_bytes_received": device.csi_bytes_received,
        "stats": device.stats,
        "last_status_seq": device.last_status_seq,
        "last_ota_state": device.last_ota_state,
        "last_ota_reason": device.last_ota_reason,
        "last_ota_at": _iso(device.last_ota_at),
        "assigned_release_id": device.assigned_release_id,
        "assigned_version": None if release is None else release.version,
        "config": device.config,
        "config_revision": device.config_revision,
        "token_active": device.token_hash is not None,
        "decommissioned": device.decommissioned,
        "created": _iso(device.created),
    }


def list_devices(
    session: Session,
    *,
    now: dt.datetime,
    health_check_interval_s: int,
    limit: int,
    offset: int = 0,
    **filters: Any,
) -> tuple[list[Device], int]:
    """One page of devices matching every filter (select_devices's), by id, and how many match in all."""
    statement = select_devices(now=now, health_check_interval_s=health_check_interval_s, **filters)
    matching = filter_tag(session.scalars(statement), filters.get("tag"))
    return matching[offset : offset + limit], len(matching)


def report_to_dict(report: StatusReport) -> dict[str, Any]:
    return {
        "seq": report.seq,
        "state": report.state,
        "reason": report.reason,
        "version": report.version,
        "target_version": report.target_version,
        "target_sha256": report.target_sha256,
        "manifest_sequence": report.manifest_sequence,
        "bytes_written": report.bytes_written,
        "received_at": _iso(report.received_at),
    }


def latest_reports(session: Session, device_id: str, limit: int) -> list[StatusReport]:
    """The device's latest status reports, newest first."""
    return list(
        session.scalars(
            select(StatusReport)
            .where(StatusReport.device_id == device_id)
            .order_by(StatusReport.received_at.desc(), StatusReport.seq.desc())
            .limit(limit)
        )
    )


def fleet_counts(
    session: Session, now: dt.datetime, health_check_interval_s: int
) -> dict[str, dict[str, int]]:
    """Active devices counted by running version, effective health and last OTA state."""
    offline_cutoff = now - dt.timedelta(seconds=OFFLINE_AFTER_INTERVALS * health_check_interval_s)
    by_version: dict[str, int] = {}
    by_health: dict[str, int] = {}
    by_ota_state: dict[str, int] = {}
    rows = session.execute(
        select(Device.version, Device.health, Device.last_heartbeat, Device.last_ota_state).where(
            Device.decommissioned.is_(False)
        )
    )
    for version, health, last_heartbeat, ota_state in rows:
        if last_heartbeat is not None and last_heartbeat < offline_cutoff:
            health = "offline"
        for table, key in (
            (by_version, version or "unknown"),
            (by_health, health),
            (by_ota_state, ota_state or "none"),
        ):
            table[key] = table.get(key, 0) + 1
    return {"version": by_version, "health": by_health, "ota_state": by_ota_state}
