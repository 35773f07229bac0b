"""Signed releases for the scenarios — the good ones and each deliberately bad one.

Bad images and manifests come from `csi-ota corrupt`'s library (csi_ota.corrupt.corrupt_file,
the very code QA runs by hand), applied to a good image's bytes — so the same code works on
the simulator's generated images and on the hardware builds of scripts/build_test_images.sh.
For image kinds the manifest is signed over the bad bytes, so the device's own image checks,
not the manifest digest, have to catch the defect; the expected reason is the kind's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from csi_ota.app_desc import APP_DESC_IMAGE_OFFSET
from csi_ota.corrupt import CORRUPT_KINDS, corrupt_file
from csi_ota.imagegen import ImageSpec, build_app_image, load_image
from csi_ota.keys import generate_key, key_id_for, load_private_key, public_key_raw
from csi_ota.manifest import manifest_for_image, sign_manifest
from csi_ota.release import describe_image

SHA256_BYTES = 32


@dataclass(frozen=True)
class BadRelease:
    """One deliberately bad release and what the device must report for it."""

    kind: str
    manifest: bytes
    image: bytes
    reason: str


# The images every scenario starts from (scripts/build_test_images.sh builds them for hardware).
BASE_IMAGES = ("v1", "v2", "v2_fail_selftest", "v2_crash_at_boot")
SIM_BASE_SPECS = {
    "v1": ImageSpec(version="1.0.0"),
    "v2": ImageSpec(version="2.0.0"),
    "v2_fail_selftest": ImageSpec(version="2.0.0", behaviour="fail_selftest"),
    "v2_crash_at_boot": ImageSpec(version="2.0.0", behaviour="crash_at_boot"),
}
# esp_app_desc_t fields inside an app image: secure_version (u32) and version (char[32]).
APP_DESC_SECURE_VERSION_OFFSET = APP_DESC_IMAGE_OFFSET + 4
APP_DESC_VERSION_OFFSET = APP_DESC_IMAGE_OFFSET + 16
APP_DESC_VERSION_BYTES = 32


def version_of(image: bytes) -> str:
    return describe_image(image).version


def with_app_desc(image: bytes, *, version: str | None = None, secure_version: int | None = None) -> bytes:
    """``image`` with esp_app_desc_t's version / secure_version changed, still a valid image.

    The app description sits in the first segment, so the XOR checksum is adjusted by the
    bytes that changed and the appended SHA-256 recomputed. Works on generated images and on
    real builds alike (a real ESP32-S3 reports the patched version: it reads esp_app_desc_t
    from flash).
    """
    parsed = load_image(image)
    if not parsed.append_digest or parsed.data_length is None:
        raise ValueError("image has no appended SHA-256")
    end = parsed.data_length  # the checksum byte is the last byte before the digest
    out = bytearray(image)
    if version is not None:
        raw = version.encode()
        if len(raw) >= APP_DESC_VERSION_BYTES:
            raise ValueError(f"version {version!r} does not fit esp_app_desc_t.version")
        out[APP_DESC_VERSION_OFFSET : APP_DESC_VERSION_OFFSET + APP_DESC_VERSION_BYTES] = raw.ljust(
            APP_DESC_VERSION_BYTES, b"\x00"
        )
    if secure_version is not None:
        struct.pack_into("<I", out, APP_DESC_SECURE_VERSION_OFFSET, secure_version)
    delta = 0
    for old, new in zip(image[:end], out[:end], strict=True):
        delta ^= old ^ new
    out[end - 1] ^= delta
    out[end : end + SHA256_BYTES] = hashlib.sha256(out[:end]).digest()
    return bytes(out)


class ReleaseKit:
    """A signing key, images and signed manifests for the scenarios.

    On the simulator the key is fresh (its public half is handed to the virtual device) and the
    base images are made by csi_ota.imagegen. On hardware the key is the one whose public half
    the test images were built with (``key_path``), and ``image_files`` maps the base image
    names (:data:`BASE_IMAGES`) to the .bin files of scripts/build_test_images.sh. Every other
    version a scenario needs is derived from a base image with :func:`with_app_desc`.

    Sequence numbers start at the current Unix time, so they keep increasing across runs on a
    board whose NVS remembers the highest sequence it accepted.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        key_path: Path | None = None,
        image_size_bytes: int = 70_000,
        image_files: dict[str, Path] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image_size_bytes = image_size_bytes
        self.image_files = image_files
        self.key_path = Path(key_path) if key_path else generate_key(self.workdir / "release.pem")
        self.private_key = load_private_key(self.key_path)
        self.key_id = key_id_for(self.private_key.public_key())
        self._next_sequence = int(time.time())
        self._images: dict[str, bytes] = {}

    @property
    def public_key_raw(self) -> bytes:
        return public_key_raw(self.private_key.public_key())

    def next_sequence(self) -> int:
        self._next_sequence += 1
        return self._next_sequence

    def image(self, name: str) -> bytes:
        """One of :data:`BASE_IMAGES`."""
        if name not in BASE_IMAGES:
            raise KeyError(f"unknown base image {name!r}; one of {', '.join(BASE_IMAGES)}")
        if name not in self._images:
            if self.image_files is not None:
                path = self.image_files[name]
                if not path.is_file():
                    raise FileNotFoundError(f"{path} missing: run scripts/build_test_images.sh")
                self._images[name] = path.read_bytes()
            else:
                spec = dataclasses.replace(SIM_BASE_SPECS[name], target_size_bytes=self.image_size_bytes)
                self._images[name] = build_app_image(spec)
        return self._images[name]

    def manifest_for(self, image: bytes, *, sequence: int | None = None, rollback: bool = False) -> bytes:
        """A correctly signed manifest describing ``image``."""
        m = manifest_for_image(
            image,
            sequence=sequence if sequence is not None else self.next_sequence(),
            key_id=self.key_id,
            rollback=rollback,
            notes="tests_hw",
        )
        return sign_manifest(m, self.private_key)

    def bad_release(self, kind: str, good_image: bytes) -> BadRelease:
        """``good_image`` released with exactly one defect of ``kind`` (`csi-ota corrupt --list`)."""
        corrupt_kind = CORRUPT_KINDS[kind]
        sequence = self.next_sequence()
        work = self.workdir / f"corrupt-{kind}-{sequence}"
        work.mkdir()
        good_path = work / "good.bin"
        good_path.write_bytes(good_image)
        if corrupt_kind.target == "image":
            bad_path = work / "bad.bin"
            result = corrupt_file(
                kind, good_path, bad_path, key_path=self.key_path, sequence=sequence, seed=7
            )
            assert result.manifest_path is not None
            return BadRelease(
                kind, result.manifest_path.read_bytes(), bad_path.read_bytes(), corrupt_kind.reason
            )
        good_manifest = work / "good.manifest"
        good_manifest.write_bytes(self.manifest_for(good_image, sequence=sequence))
        bad_manifest = work / "bad.manifest"
        corrupt_file(kind, good_manifest, bad_manifest, key_path=self.key_path)
        return BadRelease(kind, bad_manifest.read_bytes(), good_image, corrupt_kind.reason)
