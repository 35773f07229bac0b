"""Where CSI data goes: a pluggable sink; the default keeps rotating files per device.

File format (``<data dir>/csi/<device_id>/csi.bin``): records of
``u64 received_at_ms, u32 length, payload`` (little-endian), so binary and JSON
frames are kept byte for byte. When a file passes ``max_file_bytes`` it becomes
``csi.bin.1`` (older ones shift up) and at most ``files_kept`` old files remain.
An append is atomic as far as readers and later appends can tell: one
``write`` of the whole record, ``fsync``, and on any error (disk full, file
size limit) the file is truncated back to where the record began, so a torn
record never swallows the next, acknowledged one (issue 12 L1). A torn tail
left by a crash (kill -9 mid-write) is cut off before a process first appends
to that file, and :func:`read_records` ignores one.
Per-device message and byte counts are kept in memory and flushed to the
registry (``devices show``) by the server about once a second.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Protocol

RECORD_HEADER = struct.Struct("<QI")
CSI_FILE_NAME = "csi.bin"


class CsiSink(Protocol):
    def write(self, device_id: str, payload: bytes) -> None: ...

    def close(self) -> None: ...


class RotatingFileSink:
    def __init__(
        self, root: Path, *, max_file_bytes: int = 8 * 1024 * 1024, files_kept: int = 3, fsync: bool = True
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._checked: set[Path] = set()
        self.max_file_bytes = max_file_bytes
        self.files_kept = files_kept
        self._lock = threading.Lock()

    def path_for(self, device_id: str) -> Path:
        return self.root / device_id / CSI_FILE_NAME

    def _rotate(self, path: Path) -> None:
        for index in range(self.files_kept, 0, -1):
            older = path.with_name(f"{CSI_FILE_NAME}.{index}")
            newer = path if index == 1 else path.with_name(f"{CSI_FILE_NAME}.{index - 1}")
            if newer.exists():
                if index == self.files_kept:
                    older.unlink(missing_ok=True)
                newer.replace(older)

    def write(self, device_id: str, payload: bytes) -> None:
        """Appends one record; raises OSError (nothing appended) if it cannot be stored whole."""
        record = RECORD_HEADER.pack(int(time.time() * 1000), len(payload)) + payload
        path = self.path_for(device_id)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path not in self._checked:
                cut_torn_tail(path)
                self._checked.add(path)
            if path.exists() and path.stat().st_size + len(record) > self.max_file_bytes:
                self._rotate(path)
            append_record(path, record, fsync=self.fsync)

    def close(self) -> None:
        pass


def append_record(path: Path, record: bytes, *, fsync: bool = True) -> None:
    """Appends ``record`` whole or not at all (truncates back on a short or failed write)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(record)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if fsync:
                os.fsync(fd)
        except OSError:
            # If even this fails, the torn tail is cut off before the next append (cut_torn_tail).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _complete_length(data: bytes) -> int:
    """Bytes of ``data`` made of whole records."""
    offset = 0
    while offset + RECORD_HEADER.size <= len(data):
        _, length = RECORD_HEADER.unpack_from(data, offset)
        if offset + RECORD_HEADER.size + length > len(data):
            break
        offset += RECORD_HEADER.size + length
    return offset


def cut_torn_tail(path: Path) -> int:
    """Truncates a sink file to its whole records; returns the bytes removed."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return 0
    complete = _complete_length(data)
    if complete < len(data):
        os.truncate(path, complete)
    return len(data) - complete


def read_records(path: Path) -> list[tuple[int, bytes]]:
    """(received_at_ms, payload) records of one sink file (a torn last record is left out)."""
    data = Path(path).read_bytes()
    records, offset = [], 0
    end = _complete_length(data)
    while offset < end:
        at_ms, length = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER.size
        records.append((at_ms, data[offset : offset + length]))
        offset += length
    return records


class CsiCounters:
    """Per-device CSI message/byte counts waiting to be added to the registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, device_id: str, payload_bytes: int) -> None:
        with self._lock:
            entry = self._pending[device_id]
            entry[0] += 1
            entry[1] += payload_bytes

    def take(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            pending = {k: (v[0], v[1]) for k, v in self._pending.items()}
            self._pending.clear()
        return pending
