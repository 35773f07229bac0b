"""NVS encryption with the ESP32-S3's HMAC-based key protection scheme (docs/security.md).

ESP-IDF's nvs_sec_provider (CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC) derives the two XTS-AES
keys of the NVS partition from a 256-bit HMAC key burnt into an eFuse key block with purpose
HMAC_UP: ``e_key = HMAC-SHA256(hmac_key, 0xAEBE5A5A x 8)``, ``t_key = HMAC-SHA256(hmac_key,
0xCEDEA5A5 x 8)`` (words little-endian: components/nvs_sec_provider). The key never leaves the
chip's HMAC peripheral; no nvs_keys partition and no flash encryption are needed.

Here: a fresh HMAC key (``secrets``, not esp-idf-nvs-partition-gen's ``random.choice``), the
encrypted image made by esp-idf-nvs-partition-gen's own ``encrypt`` with ``--key_protect_hmac
--kp_hmac_inputkey`` (so the derivation and the XTS layout are the tool's), and decryption
with its ``decrypt`` for ``csi-ota provision show``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from types import SimpleNamespace

from cryptography.hazmat.primitives import hashes, hmac

from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.secure_boot import quiet_esp_tools

HMAC_KEY_BYTES = 32
XTS_KEYS_BYTES = 64  # e_key || t_key, as in the nvs_keys partition format
# nvs_sec_provider_private.h: EKEY_SEED / TKEY_SEED, eight little-endian words each.
EKEY_SEED = (0xAEBE5A5A).to_bytes(4, "little") * 8
TKEY_SEED = (0xCEDEA5A5).to_bytes(4, "little") * 8
# ESP32-S3 eFuse key blocks BLOCK_KEY0..5 (CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID).
EFUSE_KEY_IDS = range(6)


def new_hmac_key() -> bytes:
    return secrets.token_bytes(HMAC_KEY_BYTES)


def read_hmac_key(path: str | os.PathLike[str]) -> bytes:
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise CsiOtaError(f"cannot read HMAC key {path}: {exc.strerror}") from None
    if len(key) != HMAC_KEY_BYTES:
        raise CsiOtaError(f"HMAC key {path}: {len(key)} bytes, expected {HMAC_KEY_BYTES} (raw binary)")
    return key


def write_hmac_key(path: str | os.PathLike[str], key: bytes) -> None:
    """Raw 32 bytes, mode 0600 - what `espefuse burn-key BLOCK_KEYn FILE HMAC_UP` reads."""
    write_atomic(path, key, mode=0o600)


def xts_keys(hmac_key: bytes) -> bytes:
    """e_key || t_key as nvs_sec_provider derives them on the chip."""
    out = b""
    for seed in (EKEY_SEED, TKEY_SEED):
        h = hmac.HMAC(hmac_key, hashes.SHA256())
        h.update(seed)
        out += h.finalize()
    return out


def _run(function_name: str, args: SimpleNamespace) -> None:
    from esp_idf_nvs_partition_gen import nvs_partition_gen

    try:
        with quiet_esp_tools() as log:
            getattr(nvs_partition_gen, function_name)(args)
    except SystemExit:
        raise CsiOtaError(
            f"esp-idf-nvs-partition-gen {function_name} failed: {log.getvalue().strip()}"
        ) from None
    except Exception as exc:  # InsufficientSizeError, PageFullError, InputError
        raise CsiOtaError(f"esp-idf-nvs-partition-gen {function_name} failed: {exc}") from None


def encrypt_csv(csv_path: str, size_bytes: int, hmac_key: bytes, workdir: str) -> bytes:
    """The encrypted image of ``csv_path`` (esp-idf-nvs-partition-gen encrypt, HMAC scheme).

    Every file the tool writes (image, keys/) stays in ``workdir``: the output name is
    relative, as an absolute one makes the tool put keys/ in the current directory.
    """
    key_path = os.path.join(workdir, "hmac_key.bin")
    Path(key_path).write_bytes(hmac_key)
    args = SimpleNamespace(
        input=[csv_path],
        output="nvs_encrypted.bin",
        size=hex(size_bytes),
        version=2,
        outdir=workdir,
        keygen=True,
        inputkey=None,
        keyfile="nvs_keys.bin",
        key_protect_hmac=True,
        kp_hmac_keygen=False,
        kp_hmac_keyfile=None,
        kp_hmac_inputkey=key_path,
    )
    _run("encrypt", args)
    derived = Path(workdir, "keys", "nvs_keys.bin").read_bytes()[:XTS_KEYS_BYTES]
    if derived != xts_keys(hmac_key):
        raise CsiOtaError("esp-idf-nvs-partition-gen derived other XTS keys than nvs_sec_provider does")
    return Path(workdir, "nvs_encrypted.bin").read_bytes()


def decrypt_image(data: bytes, hmac_key: bytes) -> bytes:
    """The plain NVS image of an encrypted one (esp-idf-nvs-partition-gen decrypt)."""
    with tempfile.TemporaryDirectory(prefix="csi-ota-nvs-dec-") as tmp:
        encrypted = os.path.join(tmp, "in.bin")
        keys = os.path.join(tmp, "keys.bin")
        Path(encrypted).write_bytes(data)
        Path(keys).write_bytes(xts_keys(hmac_key))
        _run("decrypt", SimpleNamespace(input=encrypted, key=keys, output="out.bin", outdir=tmp))
        return Path(tmp, "out.bin").read_bytes()


def burn_command(key_path: str | os.PathLike[str], efuse_key_id: int) -> str:
    return f"espefuse --chip esp32s3 burn-key BLOCK_KEY{efuse_key_id} {key_path} HMAC_UP"


SDKCONFIG_LINES = (
    "CONFIG_NVS_ENCRYPTION=y",
    "CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y",
    "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID={key_id}",
)
