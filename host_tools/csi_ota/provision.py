"""Device provisioning: the seed's ota_deployment_config_t as an NVS partition image.

``build_nvs_image`` writes the generator's CSV to a temp directory and runs
esp-idf-nvs-partition-gen on it; ``read_nvs_image`` parses an NVS partition
back (ESP-IDF's documented page/entry format, CRCs checked) so the result can
be inspected (`csi-ota provision show`) and tested field by field. The key
mapping is in docs/provisioning.md and :data:`PROVISION_FIELDS`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509

from csi_ota import nvs_encryption
from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.secure_boot import quiet_esp_tools

NVS_NAMESPACE = "csi_ota"
NVS_KEY_MAX_CHARS = 15
NVS_PAGE_BYTES = 4096
NVS_MIN_PARTITION_BYTES = 0x3000
DEFAULT_NVS_PARTITION_BYTES = 0x14000  # the default layout's nvs partition (81,920 bytes)
DEFAULT_CHECK_INTERVAL_SEC = 3600
# The firmware ignores intervals below a minute (firmware/main/provisioning.c); a week at most
# (ota_config.c). Values outside are refused here rather than silently ignored there.
MIN_CHECK_INTERVAL_SEC = 60
MAX_CHECK_INTERVAL_SEC = 604_800
U32_MAX = 0xFFFFFFFF
NVS_STRING_MAX_BYTES = 4000  # NVS v2: a string entry holds at most 4000 bytes incl. NUL


@dataclass(frozen=True)
class ProvisionField:
    """One device setting: its NVS key, NVS encoding and C buffer size including the terminator."""

    nvs_key: str
    encoding: str  # esp-idf-nvs-partition-gen encoding: "string", "u32", "u8"
    max_bytes: int  # C buffer size including the NUL (strings only)
    optional: bool = False


# Setting -> how it is stored in namespace "csi_ota". The first six are the seed's
# ota_deployment_config_t; the rest are what firmware/main/provisioning.c also reads.
PROVISION_FIELDS: dict[str, ProvisionField] = {
    "update_url": ProvisionField("update_url", "string", 256),
    "version_check_url": ProvisionField("version_url", "string", 256),
    "check_interval_sec": ProvisionField("check_int_sec", "u32", 4),
    "auto_update_enabled": ProvisionField("auto_update", "u8", 1),
    "device_id": ProvisionField("device_id", "string", 32),
    "auth_token": ProvisionField("auth_token", "string", 128),
    "ca_cert": ProvisionField("ca_cert", "string", NVS_STRING_MAX_BYTES, optional=True),
    "wifi_ssid": ProvisionField("wifi_ssid", "string", 33, optional=True),
    "wifi_password": ProvisionField("wifi_pass", "string", 65, optional=True),
    "mqtt_uri": ProvisionField("mqtt_uri", "string", 128, optional=True),
    "data_url": ProvisionField("data_url", "string", 128, optional=True),
}
assert all(len(f.nvs_key) <= NVS_KEY_MAX_CHARS for f in PROVISION_FIELDS.values())

_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: goes into an HTTP header
_MQTT_URI = re.compile(r"^(mqtt|mqtts|ws|wss)://[^\s/?#]+[^\s]*$")
_WIFI_PASSWORD = re.compile(r"^([\x20-\x7e]{8,63}|[0-9A-Fa-f]{64})$")  # WPA2 passphrase or raw PSK

# NVS page and entry format (ESP-IDF components/nvs_flash, "NVS internals").
NVS_PAGE_STATE_EMPTY = 0xFFFFFFFF
NVS_PAGE_STATE_ACTIVE = 0xFFFFFFFE
NVS_PAGE_STATE_FULL = 0xFFFFFFFC
NVS_PAGE_STATE_FREEING = 0xFFFFFFF8
NVS_ENTRIES_PER_PAGE = 126
NVS_ENTRY_BYTES = 32
NVS_FIRST_ENTRY_OFFSET = 64
NVS_BITMAP_OFFSET = 32
NVS_ENTRY_STATE_WRITTEN = 0b10
NVS_TYPE_INTS: dict[int, str] = {
    0x01: "<B",
    0x11: "<b",
    0x02: "<H",
    0x12: "<h",
    0x04: "<I",
    0x14: "<i",
    0x08: "<Q",
    0x18: "<q",
}
NVS_TYPE_SZ = 0x21
NVS_TYPE_BLOB = 0x41
NVS_TYPE_BLOB_DATA = 0x42
NVS_TYPE_BLOB_IDX = 0x48
NVS_CHUNK_ANY = 0xFF


@dataclass(frozen=True)
class ProvisionConfig:
    """What a device needs to find and trust its controller (the seed's ota_deployment_config_t)."""

    update_url: str
    version_check_url: str
    device_id: str
    auth_token: str
    check_interval_sec: int = DEFAULT_CHECK_INTERVAL_SEC
    auto_update_enabled: bool = True
    ca_cert: str | None = None  # PEM
    wifi_ssid: str | None = None
    wifi_password: str | None = None  # "" for an open network
    mqtt_uri: str | None = None
    data_url: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _string_limit(name: str, value: str) -> None:
    limit = PROVISION_FIELDS[name].max_bytes
    size = len(value.encode("utf-8")) + 1
    if size > limit:
        raise CsiOtaError(
            f"{name} is {size - 1} bytes; it must be shorter than {limit} bytes "
            f"(char {name}[{limit}] includes the terminator) — it is never truncated"
        )


def validate_config(config: ProvisionConfig) -> None:
    """Raise CsiOtaError (exit 2) naming the first field that a device could not use."""
    for name in ("update_url", "version_check_url"):
        value = getattr(config, name)
        if not _URL.match(value):
            raise CsiOtaError(f"{name} {value!r} must be an http:// or https:// URL without spaces")
        _string_limit(name, value)
    if not config.device_id or not _DEVICE_ID.match(config.device_id):
        raise CsiOtaError(f"device_id {config.device_id!r} may only use A-Z a-z 0-9 _ - (and not be empty)")
    _string_limit("device_id", config.device_id)
    if not _TOKEN.match(config.auth_token):
        raise CsiOtaError("auth_token must be non-empty printable ASCII without spaces")
    _string_limit("auth_token", config.auth_token)
    if not MIN_CHECK_INTERVAL_SEC <= config.check_interval_sec <= MAX_CHECK_INTERVAL_SEC:
        raise CsiOtaError(
            f"check_interval_sec {config.check_interval_sec} is outside "
            f"{MIN_CHECK_INTERVAL_SEC}..{MAX_CHECK_INTERVAL_SEC} (a minute to a week)"
        )
    if config.wifi_ssid is not None:
        if not config.wifi_ssid or any(ord(c) < 0x20 or ord(c) == 0x7F for c in config.wifi_ssid):
            raise CsiOtaError("wifi_ssid must be 1-32 bytes without control characters")
        _string_limit("wifi_ssid", config.wifi_ssid)
    if (
        config.wifi_password is not None
        and config.wifi_password
        and not _WIFI_PASSWORD.match(config.wifi_password)
    ):
        raise CsiOtaError(
            "wifi_password must be 8-63 printable ASCII characters or 64 hex digits ('' for open)"
        )
    if config.mqtt_uri is not None:
        if not _MQTT_URI.match(config.mqtt_uri):
            raise CsiOtaError(
                f"mqtt_uri {config.mqtt_uri!r} must be an mqtt://, mqtts://, ws:// or wss:// URI"
            )
        _string_limit("mqtt_uri", config.mqtt_uri)
    if config.data_url is not None:
        if not _URL.match(config.data_url):
            raise CsiOtaError(
                f"data_url {config.data_url!r} must be an http:// or https:// URL without spaces"
            )
        _string_limit("data_url", config.data_url)
    if config.ca_cert is not None:
        _string_limit("ca_cert", config.ca_cert)
        try:
            certs = x509.load_pem_x509_certificates(config.ca_cert.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise CsiOtaError("ca_cert is not a PEM certificate") from None
        if not certs:
            raise CsiOtaError("ca_cert holds no certificate")


def read_ca_cert(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CsiOtaError(f"--ca-cert {path}: cannot be read as a PEM file ({exc})") from None


def nvs_partition_of(layout_name_or_path: str) -> tuple[int, int]:
    """(offset, size) of the ``nvs`` partition of a layout (a shipped size, TOML spec, CSV or binary)."""
    from csi_ota.partitions import load_layout

    layout = load_layout(layout_name_or_path)
    try:
        entry = layout.find("nvs")
    except KeyError:
        raise CsiOtaError(f"layout {layout_name_or_path} has no partition named nvs") from None
    return entry.offset, entry.size


def check_partition_size(size_bytes: int) -> None:
    if size_bytes % NVS_PAGE_BYTES or size_bytes < NVS_MIN_PARTITION_BYTES:
        raise CsiOtaError(
            f"NVS partition size {size_bytes:#x} must be a multiple of 0x1000 and at least "
            f"{NVS_MIN_PARTITION_BYTES:#x} (the default layout's nvs is {DEFAULT_NVS_PARTITION_BYTES:#x})"
        )


def nvs_csv(config: ProvisionConfig, ca_cert_path: str | None = None) -> str:
    """The esp-idf-nvs-partition-gen CSV for ``config`` (the CA certificate as a file row)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["key", "type", "encoding", "value"])
    writer.writerow([NVS_NAMESPACE, "namespace", "", ""])
    for name, spec in PROVISION_FIELDS.items():
        value = getattr(config, name)
        if value is None and spec.optional:
            continue
        if name == "ca_cert":
            if ca_cert_path is None:
                raise ValueError("ca_cert_path is needed when the config has a CA certificate")
            writer.writerow([spec.nvs_key, "file", spec.encoding, ca_cert_path])
        elif isinstance(value, bool):
            writer.writerow([spec.nvs_key, "data", spec.encoding, "1" if value else "0"])
        else:
            writer.writerow([spec.nvs_key, "data", spec.encoding, str(value)])
    return out.getvalue()


def build_nvs_image(
    config: ProvisionConfig, size_bytes: int = DEFAULT_NVS_PARTITION_BYTES, *, hmac_key: bytes | None = None
) -> bytes:
    """The NVS partition image for ``config`` made by esp-idf-nvs-partition-gen.

    With ``hmac_key`` the image is encrypted for CONFIG_NVS_ENCRYPTION's HMAC scheme
    (csi_ota.nvs_encryption): the device reads it once that key is in its eFuse.
    """
    from esp_idf_nvs_partition_gen import nvs_partition_gen

    validate_config(config)
    check_partition_size(size_bytes)
    with tempfile.TemporaryDirectory(prefix="csi-ota-nvs-") as tmp:
        ca_path = None
        if config.ca_cert is not None:
            ca_path = os.path.join(tmp, "ca.pem")
            Path(ca_path).write_text(config.ca_cert, encoding="ascii")
        csv_path = os.path.join(tmp, "nvs.csv")
        Path(csv_path).write_text(nvs_csv(config, ca_path), encoding="utf-8")
        bin_path = os.path.join(tmp, "nvs.bin")
        if hmac_key is not None:
            data = nvs_encryption.encrypt_csv(csv_path, size_bytes, hmac_key, tmp)
            if len(data) != size_bytes:
                raise CsiOtaError(f"esp-idf-nvs-partition-gen wrote {len(data)} bytes, expected {size_bytes}")
            return data
        args = SimpleNamespace(input=[csv_path], output=bin_path, size=hex(size_bytes), version=2, outdir=tmp)
        try:
            with quiet_esp_tools() as log:
                nvs_partition_gen.generate(args)
        except SystemExit:
            raise CsiOtaError(f"esp-idf-nvs-partition-gen failed: {log.getvalue().strip()}") from None
        except Exception as exc:  # InsufficientSizeError, PageFullError, InputError
            raise CsiOtaError(f"esp-idf-nvs-partition-gen failed: {exc}") from None
        data = Path(bin_path).read_bytes()
    if len(data) != size_bytes:
        raise CsiOtaError(f"esp-idf-nvs-partition-gen wrote {len(data)} bytes, expected {size_bytes}")
    return data


def write_nvs_image(
    config: ProvisionConfig,
    out: str | os.PathLike[str],
    size_bytes: int = DEFAULT_NVS_PARTITION_BYTES,
    *,
    hmac_key: bytes | None = None,
) -> bytes:
    """Build the image and write it atomically to ``out``; returns the bytes."""
    data = build_nvs_image(config, size_bytes, hmac_key=hmac_key)
    write_image_file(out, data, encrypted=hmac_key is not None)
    return data


def write_image_file(out: str | os.PathLike[str], data: bytes, *, encrypted: bool) -> None:
    """Atomically; a plain image holds the device token in clear, so only its owner may read it."""
    write_atomic(out, data, mode=0o644 if encrypted else 0o600)


# ---------------------------------------------------------------------------
# Reading an NVS partition back
# ---------------------------------------------------------------------------


def _crc32(data: bytes) -> int:
    # ESP-IDF's crc32_le(0xffffffff, …) == zlib.crc32(…, 0xffffffff)
    return zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


def _entry_crc(entry: bytes) -> int:
    return _crc32(entry[0:4] + entry[8:32])


def _entry_state(bitmap: bytes, index: int) -> int:
    return (bitmap[index // 4] >> ((index % 4) * 2)) & 0b11


def read_nvs_image(data: bytes) -> dict[str, dict[str, int | str | bytes]]:
    """Parse an NVS partition: {namespace: {key: value}} (ints, str without NUL, bytes for blobs)."""
    if len(data) % NVS_PAGE_BYTES or not data:
        raise CsiOtaError(f"NVS image size {len(data)} is not a positive multiple of {NVS_PAGE_BYTES}")
    namespaces: dict[int, str] = {}
    raw: list[tuple[int, str, int | str | bytes]] = []
    blob_chunks: dict[tuple[int, str, int], bytes] = {}
    blob_index: list[tuple[int, str, int, int, int]] = []
    for page_no in range(len(data) // NVS_PAGE_BYTES):
        page = data[page_no * NVS_PAGE_BYTES : (page_no + 1) * NVS_PAGE_BYTES]
        state = struct.unpack_from("<I", page, 0)[0]
        if state == NVS_PAGE_STATE_EMPTY:
            continue
        if state not in (NVS_PAGE_STATE_ACTIVE, NVS_PAGE_STATE_FULL, NVS_PAGE_STATE_FREEING):
            raise CsiOtaError(f"NVS page {page_no}: unknown page state {state:#010x}")
        if struct.unpack_from("<I", page, 28)[0] != _crc32(page[4:28]):
            raise CsiOtaError(f"NVS page {page_no}: header CRC mismatch")
        bitmap = page[NVS_BITMAP_OFFSET : NVS_BITMAP_OFFSET + 32]
        index = 0
        while index < NVS_ENTRIES_PER_PAGE:
            if _entry_state(bitmap, index) != NVS_ENTRY_STATE_WRITTEN:
                index += 1
                continue
            offset = NVS_FIRST_ENTRY_OFFSET + index * NVS_ENTRY_BYTES
            entry = page[offset : offset + NVS_ENTRY_BYTES]
            ns, kind, span = entry[0], entry[1], entry[2]
            key = entry[8:24].split(b"\x00", 1)[0].decode("ascii", errors="replace")
            where = f"NVS page {page_no} entry {index} ({key})"
            if struct.unpack_from("<I", entry, 4)[0] != _entry_crc(entry):
                raise CsiOtaError(f"{where}: entry CRC mismatch")
            if span < 1 or index + span > NVS_ENTRIES_PER_PAGE:
                raise CsiOtaError(f"{where}: span {span} runs past the page")
            if kind in NVS_TYPE_INTS:
                value: int | str | bytes = struct.unpack_from(NVS_TYPE_INTS[kind], entry, 24)[0]
                if ns == 0:
                    assert isinstance(value, int)
                    namespaces[value] = key
                else:
                    raw.append((ns, key, value))
            elif kind in (NVS_TYPE_SZ, NVS_TYPE_BLOB, NVS_TYPE_BLOB_DATA):
                size, _, data_crc = struct.unpack_from("<HHI", entry, 24)
                payload = page[offset + NVS_ENTRY_BYTES : offset + NVS_ENTRY_BYTES + size]
                if len(payload) != size or size > (span - 1) * NVS_ENTRY_BYTES:
                    raise CsiOtaError(f"{where}: data size {size} does not fit span {span}")
                if _crc32(payload) != data_crc:
                    raise CsiOtaError(f"{where}: data CRC mismatch")
                if kind == NVS_TYPE_SZ:
                    if not payload.endswith(b"\x00"):
                        raise CsiOtaError(f"{where}: string is not NUL-terminated")
                    raw.append((ns, key, payload[:-1].decode("utf-8")))
                elif kind == NVS_TYPE_BLOB:
                    raw.append((ns, key, payload))
                else:
                    blob_chunks[(ns, key, entry[3])] = payload
            elif kind == NVS_TYPE_BLOB_IDX:
                total, count, start = struct.unpack_from("<IBB", entry, 24)
                blob_index.append((ns, key, total, count, start))
            else:
                raise CsiOtaError(f"{where}: unknown entry type {kind:#04x}")
            index += span
    for ns, key, total, count, start in blob_index:
        parts = [blob_chunks.get((ns, key, start + i)) for i in range(count)]
        if any(p is None for p in parts):
            raise CsiOtaError(f"NVS blob {key}: missing chunks")
        blob = b"".join(p for p in parts if p is not None)
        if len(blob) != total:
            raise CsiOtaError(f"NVS blob {key}: {len(blob)} bytes, index says {total}")
        raw.append((ns, key, blob))
    result: dict[str, dict[str, int | str | bytes]] = {name: {} for name in namespaces.values()}
    for ns, key, value in raw:
        if ns not in namespaces:
            raise CsiOtaError(f"NVS key {key}: namespace index {ns} has no namespace entry")
        result[namespaces[ns]][key] = value
    return result


def config_from_nvs(data: bytes, *, hmac_key: bytes | None = None) -> ProvisionConfig:
    """The ProvisionConfig stored in an NVS image made by :func:`build_nvs_image`."""
    if hmac_key is not None:
        data = nvs_encryption.decrypt_image(data, hmac_key)
    try:
        parsed = read_nvs_image(data)
    except CsiOtaError as exc:
        hint = "" if hmac_key is not None else " (an encrypted image? pass its HMAC key)"
        raise CsiOtaError(f"{exc.message}{hint}") from None
    entries = parsed.get(NVS_NAMESPACE)
    if entries is None:
        hint = "" if hmac_key is not None else " (an encrypted image? pass its HMAC key)"
        raise CsiOtaError(f"NVS image has no namespace {NVS_NAMESPACE!r}{hint}")
    values: dict[str, object] = {}
    for name, spec in PROVISION_FIELDS.items():
        if spec.nvs_key not in entries:
            if spec.optional:
                continue
            raise CsiOtaError(f"NVS image lacks key {spec.nvs_key} ({name})")
        value = entries[spec.nvs_key]
        values[name] = bool(value) if name == "auto_update_enabled" else value
    return ProvisionConfig(**values)  # type: ignore[arg-type]
