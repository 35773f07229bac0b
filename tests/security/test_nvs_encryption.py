"""NVS encryption from the seed (issue 12): `csi-ota provision --encrypt`.

The device token and CA sat in plain NVS. With CONFIG_NVS_ENCRYPTION and the ESP32-S3's HMAC
scheme (nvs_sec_provider), the XTS-AES keys are derived on the chip from an HMAC key in eFuse;
`csi-ota provision --encrypt` makes that key (secrets, 0600), encrypts the image with
esp-idf-nvs-partition-gen, and says how to burn the key and which options to set. The virtual
ESP32-S3 reads such an image when its config holds the key (``nvs_hmac_key``: the eFuse).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csi_ota import nvs_encryption, provision  # noqa: E402
from csi_ota.cli import main  # noqa: E402
from csi_ota.sim.flashfile import create_flash_file  # noqa: E402
from csi_ota.sim.runner import SimConfig, SimProcess, build_sim  # noqa: E402
from sim_support import OtaTestServer, ReleaseSigner, app_image  # noqa: E402

ARGS = [
    "provision",
    "--device-id",
    "csi_enc_001",
    "--auth-token",
    "tok-secret-4242",
    "--update-url",
    "https://ota.local:8080/firmware/latest",
    "--version-check-url",
    "https://ota.local:8080/api/ota/version",
    "--wifi-password",
    "wifi-pass-1234",
]


def run(*args: object) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


def test_encrypted_image_hides_the_token_and_reads_back_with_the_key(tmp_path: Path) -> None:
    image = tmp_path / "nvs.bin"
    code, out, err = run(*ARGS, "--out", image, "--encrypt", "--efuse-key-id", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    key_path = Path(report["encryption"]["hmac_key"])
    assert key_path == tmp_path / "nvs.bin.hmac_key.bin"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and len(key_path.read_bytes()) == 32
    assert report["encryption"]["burn"] == f"espefuse --chip esp32s3 burn-key BLOCK_KEY2 {key_path} HMAC_UP"
    assert "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=2" in report["encryption"]["sdkconfig"]
    data = image.read_bytes()
    assert len(data) == 0x14000
    for secret in (b"tok-secret-4242", b"wifi-pass-1234", b"csi_enc_001", b"ota.local"):
        assert secret not in data
    plain = provision.build_nvs_image(provision.config_from_nvs(data, hmac_key=key_path.read_bytes()))
    assert b"tok-secret-4242" in plain  # the same settings, in clear without --encrypt
    # Without the key: a clear error, exit 2; with it: the settings.
    code, _, err = run("provision", "show", image)
    assert code == 2 and "encrypted image? pass its HMAC key" in err
    code, out, err = run("provision", "show", image, "--hmac-key", key_path, "--json")
    assert code == 0, err
    shown = json.loads(out)["config"]
    assert shown["auth_token"] == "tok-secret-4242" and shown["device_id"] == "csi_enc_001"


def test_the_keys_are_the_ones_the_chip_derives(tmp_path: Path) -> None:
    """nvs_sec_provider.c: HMAC-SHA256(key, EKEY_SEED x 8) || HMAC-SHA256(key, TKEY_SEED x 8)."""
    key = os.urandom(32)
    ekey_seed = (0xAEBE5A5A).to_bytes(4, "little") * 8
    tkey_seed = (0xCEDEA5A5).to_bytes(4, "little") * 8
    expected = (
        hmac.new(key, ekey_seed, hashlib.sha256).digest() + hmac.new(key, tkey_seed, hashlib.sha256).digest()
    )
    assert nvs_encryption.xts_keys(key) == expected
    # esp-idf-nvs-partition-gen's own derivation is checked against it on every encryption.
    config = provision.ProvisionConfig("https://a/fw", "https://a/v", "dev", "tok")
    first = provision.build_nvs_image(config, hmac_key=key)
    again = provision.build_nvs_image(config, hmac_key=key)
    other = provision.build_nvs_image(config, hmac_key=os.urandom(32))
    assert first == again != other  # XTS: deterministic per key and address


def test_a_key_file_is_never_overwritten_and_can_be_reused(tmp_path: Path) -> None:
    image = tmp_path / "nvs.bin"
    assert run(*ARGS, "--out", image, "--encrypt")[0] == 0
    key_path = tmp_path / "nvs.bin.hmac_key.bin"
    key = key_path.read_bytes()
    before = image.read_bytes()
    code, _, err = run(*ARGS, "--out", image, "--encrypt")
    assert code == 2 and "never overwritten" in err
    assert key_path.read_bytes() == key and image.read_bytes() == before  # nothing lost
    # Re-provisioning a device whose eFuse already holds the key:
    code, _, err = run(*ARGS, "--out", tmp_path / "again.bin", "--encrypt", "--hmac-key", key_path)
    assert code == 0, err
    assert (
        provision.config_from_nvs((tmp_path / "again.bin").read_bytes(), hmac_key=key).device_id
        == "csi_enc_001"
    )
    # Usage errors: key options without --encrypt, a key of the wrong size.
    assert run(*ARGS, "--out", tmp_path / "x.bin", "--hmac-key", key_path)[0] == 2
    short = tmp_path / "short.bin"
    short.write_bytes(b"\x01" * 16)
    code, _, err = run(*ARGS, "--out", tmp_path / "y.bin", "--encrypt", "--hmac-key", short)
    assert code == 2 and "expected 32" in err
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "y.bin").exists()


def test_plain_images_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    image = tmp_path / "plain.bin"
    assert run(*ARGS, "--out", image)[0] == 0
    assert stat.S_IMODE(image.stat().st_mode) == 0o600  # it holds the token in clear


@pytest.mark.sim
def test_the_virtual_device_reads_an_encrypted_image_with_its_efuse_key(tmp_path: Path) -> None:
    """The host NVS engine decrypts with the board's eFuse HMAC key (config nvs_hmac_key)."""
    binary = build_sim()
    key = nvs_encryption.new_hmac_key()
    with OtaTestServer(token="tok-enc") as server:
        nvs = provision.build_nvs_image(
            provision.ProvisionConfig(
                update_url=server.version_url.replace("/version", "/firmware"),
                version_check_url=server.version_url,
                device_id="csi_enc_sim",
                auth_token="tok-enc",
            ),
            hmac_key=key,
        )
        flash = create_flash_file(
            tmp_path / "flash.bin", images={0: app_image("1.0.0", size_bytes=150_000)}, nvs=nvs
        )
        # The chips without the key boot copies of the same flash (NVS drops what it cannot read).
        flash_nokey, flash_other = tmp_path / "nokey.bin", tmp_path / "other.bin"
        shutil.copyfile(flash, flash_nokey)
        shutil.copyfile(flash, flash_other)
        base = {
            "device_id": "from_the_file",
            "version_check_url": "http://127.0.0.1:9/api/ota/version",  # discard port: nothing listens
            "trusted_keys": ReleaseSigner().trusted_keys,
        }
        with_key = SimConfig(**base, extra={"nvs_hmac_key": key.hex()}).write(tmp_path / "efuse.conf")
        with SimProcess(flash, with_key, binary=binary).start() as sim:
            sim.expect(r"provisioning: device csi_enc_sim, check http://127\.0\.0\.1:\d+/api/ota/version ")
            sim.send("ota check")
            sim.expect(r"ota: up to date \(running 1\.0\.0\)")
            assert sim.stop() == 0
        assert server.records.checks and {c["device_id"] for c in server.records.checks} == {"csi_enc_sim"}
        raw = Path(flash).read_bytes()  # what the firmware wrote to NVS is encrypted too
        assert b"csi_enc_sim" not in raw and b"tok-enc" not in raw and b"csi_ota\x00" not in raw
        # Another chip (no key, or another key in eFuse) cannot read it: the file's settings stay.
        other = SimConfig(**base, extra={"nvs_hmac_key": os.urandom(32).hex()}).write(tmp_path / "other.conf")
        nokey = SimConfig(**base).write(tmp_path / "nokey.conf")
        for image, config in ((flash_nokey, nokey), (flash_other, other)):
            before = len(server.records.checks)
            with SimProcess(image, config, binary=binary).start() as sim:
                sim.expect(r"provisioning: no provisioning image \(NVS namespace csi_ota\): Kconfig defaults")
                sim.send("ota check")
                sim.expect(r"ota: check failed: http_connect")  # the file's URL, not the image's
                assert sim.stop() == 0
            assert len(server.records.checks) == before
