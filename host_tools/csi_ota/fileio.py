"""Atomic file writes: the one way csi_ota writes a file a user keeps."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from csi_ota.errors import CsiOtaError


def write_atomic(path: str | os.PathLike[str], data: bytes | bytearray, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, then os.replace.

    Readers see the old file or the new one, never a half-written one; a failed
    write leaves no temp file behind. The temp file is created with ``mode``
    from the start, so a 0600 secret is never readable by others, not even for
    a moment. A missing directory or an OS error is a CsiOtaError naming the path.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise CsiOtaError(f"directory {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed it
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CsiOtaError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
    return target
