"""Where a version check's time goes: py-spy samples of `csi-ota serve` under version-check load (not a test).

Starts the controller of a given source tree (default: this checkout's host_tools; pass an
older tree — e.g. ``git archive <commit> host_tools | tar -x -C /tmp/before`` — for a
before/after comparison) on SQLite with DEVICES registered devices, drives it with the
closed-loop load generator (50 clients, random device tokens, half offered a release),
records it with py-spy (every process of the controller; only samples holding the GIL, i.e. Python
CPU time, not idle threads) and prints the functions with the
most samples: "self" (the function itself was running) and "total" (on the stack).

    python benchmarks/profile.py [--source host_tools] [--duration 10] [--out benchmarks/results/profile.json]
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import bulk_register, closed_loop, machine  # noqa: E402
from csi_ota.controller.db import default_sqlite_url  # noqa: E402
from serve import VERSION_CHECK_CONCURRENCY, VersionCheckRequests, make_release  # noqa: E402
from services import controller_server  # noqa: E402

DEVICES = 10_000
SAMPLE_RATE_HZ = 200
TOP = 15
# Frames on every stack (process start, event loop, thread bootstrap): left out of "total".
FRAMEWORK_ROOTS = (
    "click/",
    "<frozen runpy>",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "threading.py",
    "csi_ota/cli/",
    "controller/server.py",
    "asyncio/events.py",
    "uvicorn/server.py",
)


def top_functions(raw_path: Path) -> dict:
    """Self and total sample counts per function from py-spy's raw (collapsed-stack) output."""
    self_counts: collections.Counter = collections.Counter()
    total_counts: collections.Counter = collections.Counter()
    samples = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            if not any(root in frame for root in FRAMEWORK_ROOTS):
                total_counts[frame] += count

    def share(counter):
        return [
            {"function": f, "samples": n, "share": round(n / samples, 3)} for f, n in counter.most_common(TOP)
        ]

    return {"samples": samples, "self": share(self_counts), "total": share(total_counts)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=ROOT / "host_tools", help="host_tools tree to run")
    parser.add_argument("--label", default="after")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="--workers (ignored by trees without it)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "profile.json")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        parser.error("py-spy is not installed (pip install py-spy)")
    source = args.source.resolve()
    env = {"PYTHONPATH": str(source)}
    extra = ["--device-rate", "0", "--log-level", "error"]
    if (source / "csi_ota" / "controller" / "workers.py").exists():
        extra += ["--workers", str(args.workers)]
    with tempfile.TemporaryDirectory(prefix="csi-ota-profile-") as tmp_name:
        tmp = Path(tmp_name)
        public_key, image, manifest, _sha256 = make_release(tmp)
        data = tmp / "data"
        # The admin is made by the tree under test (its migrations, not this checkout's).
        admin = subprocess.run(
            [sys.executable, "-m", "csi_ota", "admin", "bootstrap", "--data-dir", str(data)],
            env={**os.environ, **env, "DEVICE_REGISTRY_DB": default_sqlite_url(data)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with (
            controller_server(
                data, trusted_keys=[public_key], extra_env=env, extra_args=extra, admin_token=admin
            ) as server,
            server.management_client() as mgmt,
        ):
            response = mgmt.post(
                "/api/releases",
                content=image,
                headers={"X-Release-Manifest": base64.b64encode(manifest).decode()},
            )
            response.raise_for_status()
            release_id = response.json()["id"]
        bulk_register(default_sqlite_url(data), 0, DEVICES, ("bench",), release_id)
        with controller_server(data, admin_token=admin, extra_env=env, extra_args=extra) as server:
            port = int(server.device_url.rsplit(":", 1)[1])
            make = VersionCheckRequests(port, DEVICES)
            requests = [make(i) for i in range(20_000)]
            raw_path = tmp / "py-spy.txt"
            record = [
                py_spy,
                "record",
                "--pid",
                str(server.process.pid),
                "--subprocesses",
                "--gil",
                "--format",
                "raw",
            ]
            record += [
                "--rate",
                str(SAMPLE_RATE_HZ),
                "--duration",
                str(int(args.duration)),
                "--output",
                str(raw_path),
            ]
            result: dict = {}
            load = threading.Thread(
                target=lambda: result.update(
                    closed_loop("127.0.0.1", port, requests, VERSION_CHECK_CONCURRENCY, args.duration + 2)
                )
            )
            load.start()
            subprocess.run(record, check=True, capture_output=True, timeout=args.duration + 60)
            load.join()
            profile = {"label": args.label, "source": str(source), "load": result, **top_functions(raw_path)}
    report = {"benchmark": "profile", "machine": machine(), "devices": DEVICES, "profile": profile}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.label}: {result.get('requests_per_s')} checks/s, p99 {result.get('p99_ms')} ms")
    for entry in profile["self"]:
        print(f"  self {entry['share']:6.1%}  {entry['function']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
