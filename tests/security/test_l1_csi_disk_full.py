"""L1: a CSI append that fails (disk full) leaves no torn record, so the next acknowledged one survives.

Before: a short write left a record header promising more bytes than followed; the next record
was appended behind it and read back as part of the torn one (lost although acknowledged).
Disk full is simulated with a file-size limit (RLIMIT_FSIZE, set on the running controller with
prlimit): writes past it fail with EFBIG after writing what fits, as on a full disk.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from controller_helpers import new_device

from csi_ota.controller.csi_sink import RECORD_HEADER, read_records

pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")


def _controller_pids(pid: int) -> list[int]:
    """`serve` and its forked device workers (any of them may take the request)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def _set_file_size_limit(pid: int, limit: str) -> None:
    for process in _controller_pids(pid):
        subprocess.run(
            ["prlimit", "--pid", str(process), f"--fsize={limit}:unlimited"], check=True, timeout=10
        )


def test_disk_full_does_not_swallow_the_next_record(pg_controller):
    device_id, token = new_device(pg_controller)
    first, torn, last = b"\x01first-frame", b"\x02" * 100_000, b"\x03last-frame"
    path = pg_controller.data_dir / "csi" / device_id / "csi.bin"
    with pg_controller.device_client(token) as device:
        assert device.post("/api/csi/data", content=first).status_code == 200
        size = path.stat().st_size
        _set_file_size_limit(pg_controller.process.pid, str(size + RECORD_HEADER.size + 1000))
        try:
            refused = device.post("/api/csi/data", content=torn)
        finally:
            _set_file_size_limit(pg_controller.process.pid, "unlimited")
        assert refused.status_code == 507, refused.text  # not acknowledged: the device keeps it
        assert path.stat().st_size == size, "the failed append must leave nothing behind"
        assert device.post("/api/csi/data", content=last).status_code == 200
    assert [payload for _, payload in read_records(path)] == [first, last]


def test_a_torn_tail_from_a_crash_is_cut_before_the_next_append(tmp_path):
    from csi_ota.controller.csi_sink import RotatingFileSink

    sink = RotatingFileSink(tmp_path)
    sink.write("dev", b"one")
    path = sink.path_for("dev")
    with open(path, "ab") as out:  # a crash in the middle of an append
        out.write(RECORD_HEADER.pack(0, 1000) + b"partial")
    assert [p for _, p in read_records(path)] == [b"one"]
    restarted = RotatingFileSink(tmp_path)
    restarted.write("dev", b"two")
    assert [p for _, p in read_records(path)] == [b"one", b"two"]
