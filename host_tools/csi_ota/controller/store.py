"""The firmware store: ``<FIRMWARE_STORAGE_PATH>/<sha256>.bin``, written only whole.

Uploads stream into ``.incoming/<host>-<pid>-<random>.part`` while being
hashed; a file is moved into place (fsync, ``os.replace``, fsync of the
directory) only after its digest and size matched the verified manifest. A
crash leaves at most a ``.part`` file, which :meth:`FirmwareStore.clean_incoming`
removes at the next start: this host's parts whose process is gone, and any
part untouched for STALE_PART_S (another host's crash, on a shared store).
Parts of live controller processes sharing the store are left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from pathlib import Path

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
INCOMING_DIR_NAME = ".incoming"
PART_SUFFIX = ".part"
STALE_PART_S = 3600


def is_sha256_hex(value: str) -> bool:
    return SHA256_PATTERN.match(value) is not None


_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"


def _owner_is_gone(part_name: str) -> bool:
    """True when the part was written on this host by a process that no longer runs.

    Called at start-up, before this process accepts uploads: a part bearing this process's
    own pid comes from an earlier process that had the same pid (containers restart at pid 1).
    """
    match = re.match(r"^(.*)-(\d+)-[0-9a-f]+" + re.escape(PART_SUFFIX) + "$", part_name)
    if match is None:
        return True  # not ours: an old-format or foreign leftover
    host, pid = match.group(1), int(match.group(2))
    if host != _HOST:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IncomingFile:
    """A ``.part`` file being written and hashed; :meth:`discard` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - closed by finish()/discard()
        self._hash = hashlib.sha256()
        self.size_bytes = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size_bytes += len(chunk)

    def finish(self) -> str:
        """Flushes and fsyncs; returns the SHA-256 hex of what was written."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class FirmwareStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / INCOMING_DIR_NAME

    def prepare(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)

    def clean_incoming(self, *, now: float | None = None) -> int:
        """Removes half-written uploads left by crashed processes; returns how many."""
        removed = 0
        now = time.time() if now is None else now
        if self.incoming.is_dir():
            for part in self.incoming.glob(f"*{PART_SUFFIX}"):
                if _owner_is_gone(part.name) or now - part.stat().st_mtime > STALE_PART_S:
                    part.unlink(missing_ok=True)
                    removed += 1
        return removed

    def new_incoming(self) -> IncomingFile:
        self.prepare()
        name = f"{_HOST}-{os.getpid()}-{secrets.token_hex(8)}{PART_SUFFIX}"
        return IncomingFile(self.incoming / name)

    def path_for(self, sha256: str) -> Path:
        if not is_sha256_hex(sha256):
            raise ValueError("not a lowercase SHA-256 hex digest")
        return self.root / f"{sha256}.bin"

    def has(self, sha256: str) -> bool:
        return is_sha256_hex(sha256) and self.path_for(sha256).is_file()

    def commit(self, incoming: IncomingFile, sha256: str) -> Path:
        """Moves a finished, verified upload into place atomically (no-op if already stored)."""
        target = self.path_for(sha256)
        if target.is_file():
            incoming.discard()
            return target
        os.replace(incoming.path, target)
        _fsync_dir(self.root)
        return target

    def stored_digests(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.bin") if is_sha256_hex(p.stem))
