"""Where CSI data goes: a pluggable sink; the default keeps rotating files per device.

File format (``<data dir>/csi/<device_id>/csi.bin``): records of
``u64 received_at_ms, u32 length, payload`` (little-endian), so binary and JSON
frames are kept byte for byte. When a file passes ``max_file_bytes`` it becomes
``csi.bin.1`` (older ones shift up) and at most ``files_kept`` old files remain.
Per-device message and byte counts are kept in memory and flushed to the
registry (``devices show``) by the server about once a second.
"""

from __future__ import annotations

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
    def __init__(self, root: Path, *, max_file_bytes: int = 8 * 1024 * 1024, files_kept: int = 3) -> None:
        self.root = Path(root)
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
        record = RECORD_HEADER.pack(int(time.time() * 1000), len(payload)) + payload
        path = self.path_for(device_id)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(record) > self.max_file_bytes:
                self._rotate(path)
            with open(path, "ab") as out:
                out.write(record)

    def close(self) -> None:
        pass


def read_records(path: Path) -> list[tuple[int, bytes]]:
    """(received_at_ms, payload) records of one sink file."""
    data = Path(path).read_bytes()
    records, offset = [], 0
    while offset + RECORD_HEADER.size <= len(data):
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
