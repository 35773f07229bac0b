#!/usr/bin/env python3
"""Writes the binary fixtures of the sim_flash C tests into OUT_DIR.

    python3 firmware/sim/flash/tests/make_fixtures.py OUT_DIR

Run by CMake at build time (tests/CMakeLists.txt). Everything is made with the
project's own host tools: the partition table with csi_ota.partitions
(the shipped "4MB" layout), the app images with csi_ota.imagegen (real
ESP32-S3 images, deterministic bytes), the NVS provisioning image with
csi_ota.provision (esp-idf-nvs-partition-gen, ESP-IDF's own generator).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from csi_ota.certs import create_ca
from csi_ota.fileio import write_atomic
from csi_ota.imagegen import ImageSpec, build_app_image
from csi_ota.partitions import load_layout
from csi_ota.provision import ProvisionConfig, build_nvs_image

IMAGE_SIZE_BYTES = 70_000

# file name -> image spec
IMAGES = {
    "app_v1.bin": ImageSpec("1.0.0", target_size_bytes=IMAGE_SIZE_BYTES),
    "app_v2.bin": ImageSpec("2.0.0", target_size_bytes=IMAGE_SIZE_BYTES),
    "app_v3.bin": ImageSpec("3.0.0", target_size_bytes=IMAGE_SIZE_BYTES),
    "app_v2_crash.bin": ImageSpec("2.0.0", behaviour="crash_at_boot", target_size_bytes=IMAGE_SIZE_BYTES),
    "app_v2_selftest.bin": ImageSpec("2.0.0", behaviour="fail_selftest", target_size_bytes=IMAGE_SIZE_BYTES),
    "app_chip5.bin": ImageSpec("2.0.0", target_size_bytes=IMAGE_SIZE_BYTES),  # chip id patched below
    "app_minrev100.bin": ImageSpec("2.0.0", min_rev_full=100, target_size_bytes=IMAGE_SIZE_BYTES),
}


CHIP_ID_OFFSET = 12  # esp_image_header_t.chip_id (u16 little-endian)
DIGEST_SIZE_BYTES = 32


def with_chip_id(image: bytes, chip_id: int) -> bytes:
    """The image with another header chip id and a recomputed appended SHA-256.

    (esptool's image class writes its own chip id, so ImageSpec.chip_id cannot make this.)
    """
    body = bytearray(image[:-DIGEST_SIZE_BYTES])
    body[CHIP_ID_OFFSET : CHIP_ID_OFFSET + 2] = chip_id.to_bytes(2, "little")
    return bytes(body) + hashlib.sha256(body).digest()


# What the NVS engine tests (firmware/sim/idf/tests/test_nvs_engine.c) read back from
# nvs_provision.bin (plus a CA made by certs).
NVS_CONFIG = ProvisionConfig(
    update_url="https://ota.example:8080/api/ota/firmware",
    version_check_url="https://ota.example:8080/api/ota/version",
    device_id="csi_sensor_042",
    auth_token="dev_" + "t" * 43,
    check_interval_sec=7200,
    auto_update_enabled=False,
)
NVS_SIZE_BYTES = 0x6000
# The eFuse HMAC key of nvs_provision_enc.bin (`csi-ota provision --encrypt`: the generator's
# `encrypt` with the XTS keys nvs_sec_provider derives); test_nvs_engine.c has it too.
NVS_HMAC_KEY = bytes(range(32))


def nvs_fixture() -> bytes:
    with tempfile.TemporaryDirectory() as ca_dir:
        ca_pem = create_ca(ca_dir).cert.read_text()
    return build_nvs_image(replace(NVS_CONFIG, ca_cert=ca_pem), NVS_SIZE_BYTES)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "partitions_4MB.bin", load_layout("4MB").to_binary())
    for name, spec in IMAGES.items():
        image = build_app_image(spec)
        if name == "app_chip5.bin":
            image = with_chip_id(image, 5)
        write_atomic(out / name, image)
    write_atomic(out / "nvs_provision.bin", nvs_fixture())
    write_atomic(
        out / "nvs_provision_enc.bin", build_nvs_image(NVS_CONFIG, NVS_SIZE_BYTES, hmac_key=NVS_HMAC_KEY)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
