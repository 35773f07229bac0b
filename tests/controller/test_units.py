"""The controller's small pieces on their own: rate limiter, CSI sink, store, settings, Mosquitto files."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest

from csi_ota.controller.csi_sink import RotatingFileSink, read_records
from csi_ota.controller.mqtt_acl import render_acl_file, write_mqtt_files
from csi_ota.controller.ratelimit import DeviceRateLimiter
from csi_ota.controller.settings import settings_from_env
from csi_ota.controller.store import FirmwareStore
from csi_ota.controller.tokens import (
    MOSQUITTO_PBKDF2_ITERATIONS,
    bearer_token,
    hash_token,
    mosquitto_password_hash,
    new_device_token,
)
from csi_ota.errors import CsiOtaError


def test_token_bucket_refills_at_the_configured_rate():
    now = [0.0]
    limiter = DeviceRateLimiter(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("a") == pytest.approx(0.5)
    assert limiter.allow("b") == 0.0  # buckets are per device
    now[0] += 0.5
    assert limiter.allow("a") == 0.0
    assert limiter.allow("a") > 0


def test_csi_sink_keeps_records_and_rotates(tmp_path):
    sink = RotatingFileSink(tmp_path, max_file_bytes=100, files_kept=2)
    payloads = [bytes([i]) * 30 for i in range(10)]
    for payload in payloads:
        sink.write("dev1", payload)
    current = tmp_path / "dev1" / "csi.bin"
    kept = [p for _, p in read_records(current.with_name("csi.bin.2"))]
    kept += [p for _, p in read_records(current.with_name("csi.bin.1"))]
    kept += [p for _, p in read_records(current)]
    assert kept == payloads[-len(kept) :]  # newest records, in order, none torn
    assert not current.with_name("csi.bin.3").exists()
    assert all(p.stat().st_size <= 100 for p in current.parent.iterdir())


def test_store_commits_only_whole_files_and_cleans_parts(tmp_path):
    store = FirmwareStore(tmp_path)
    data = b"\xe9" + b"x" * 100_000
    incoming = store.new_incoming()
    incoming.write(data)
    digest = incoming.finish()
    assert digest == hashlib.sha256(data).hexdigest()
    assert not store.has(digest)
    store.commit(incoming, digest)
    assert store.path_for(digest).read_bytes() == data
    abandoned = store.new_incoming()
    abandoned.write(b"half")
    host = abandoned.path.name.rsplit("-", 2)[0]
    live_other = store.incoming / f"{host}-{os.getppid()}-00ff.part"  # another controller, still running
    live_other.write_bytes(b"in flight")
    foreign = store.incoming / "otherhost-1-00ff.part"  # another host's, recent
    foreign.write_bytes(b"in flight")
    assert store.clean_incoming() == 1
    assert sorted(p.name for p in store.incoming.iterdir()) == sorted([live_other.name, foreign.name])
    assert store.clean_incoming(now=time.time() + 2 * 3600) == 2  # stale parts go whoever wrote them
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")


def test_tokens_and_mosquitto_hash_format():
    token = new_device_token()
    assert token.startswith("dev_") and len(token) > 40 and hash_token(token) != token
    assert bearer_token(f"Bearer {token}") == token
    assert bearer_token(f"bearer {token}") == token
    assert (
        bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None
    )
    salt = b"0123456789ab"
    line = mosquitto_password_hash("secret", salt=salt)
    _, kind, iterations, salt_b64, digest_b64 = line.split("$")
    assert (kind, int(iterations), base64.b64decode(salt_b64)) == ("7", MOSQUITTO_PBKDF2_ITERATIONS, salt)
    assert base64.b64decode(digest_b64) == hashlib.pbkdf2_hmac(
        "sha512", b"secret", salt, MOSQUITTO_PBKDF2_ITERATIONS, 64
    )


def test_mqtt_files_refuse_a_device_named_like_the_controller(tmp_path):
    with pytest.raises(CsiOtaError, match="controller's MQTT user"):
        write_mqtt_files(tmp_path, [("ota-controller", mosquitto_password_hash("x"))])
    assert not (tmp_path / "passwd").exists()
    files = write_mqtt_files(tmp_path, [("dev1", mosquitto_password_hash("x"))])
    first_password = files.controller_password_file.read_text()
    files = write_mqtt_files(tmp_path, [])
    assert files.controller_password_file.read_text() == first_password  # kept across regenerations
    acl = render_acl_file("ota-controller", ["dev1"])
    assert "user dev1\ntopic write csi/dev1/#" in acl and "pattern" not in acl


def test_settings_defaults_are_the_seeds(tmp_path):
    settings = settings_from_env(tmp_path, environ={})
    assert settings.firmware_max_size_bytes == 1_310_720
    assert (settings.device_update_batch_size, settings.rollback_timeout_min) == (5, 30)
    assert (settings.update_retry_count, settings.health_check_interval_s) == (3, 300)
    assert settings.update_strategy == "gradual_rollout"
    assert settings.firmware_dir == tmp_path / "firmware"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'registry.db').resolve()}"
    pg = settings_from_env(tmp_path, environ={"DEVICE_REGISTRY_DB": "postgresql://u:p@db:5432/ota"})
    assert pg.database_url == "postgresql+psycopg://u:p@db:5432/ota"
