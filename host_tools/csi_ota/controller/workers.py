"""`csi-ota serve --workers N`: N processes sharing the device port, the registry and the counters.

The first process (the one `serve` started) binds both ports, migrates the registry and
forks N-1 device workers before it starts any thread. Every process then accepts device
connections on the same pre-bound listening socket (the kernel hands each connection to
one of them). The first process alone serves the management port, runs the rollout engine
(whose database lease keeps it single across hosts anyway), the MQTT bridge and /metrics.

Device workers count their work (version checks, downloads, status reports, ...) in a
shared-memory array; the first process adds those counts to its Prometheus counters at
every scrape, so /metrics shows the whole host. A worker dies with the first process
(PR_SET_PDEATHSIG): kill -9 of `serve` leaves nothing listening and nothing writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable

from csi_ota.controller import registry

log = logging.getLogger("csi_ota.workers")

PR_SET_PDEATHSIG = 1
MAX_WORKERS = 64

# (counter attribute of ControllerMetrics, label name, label values) a device worker may count.
SHARED_COUNTERS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("version_checks", "result", ("none", "offer")),
    ("downloads", "status", ("started",)),
    ("bytes_served", None, ("",)),
    ("bytes_zero_copy", None, ("",)),
    ("status_reports", "state", registry.OTA_STATES),
    ("heartbeats", "transport", ("http", "mqtt")),
    ("csi_messages", "transport", ("http", "mqtt")),
)
_SLOTS = [(name, label, value) for name, label, values in SHARED_COUNTERS for value in values]
_SLOT_INDEX = {(name, value): index for index, (name, _label, value) in enumerate(_SLOTS)}


def default_worker_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class SharedCounts:
    """Per-worker counter slots in shared memory (created before the workers fork)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.array = multiprocessing.RawArray(ctypes.c_double, workers * len(_SLOTS))
        self._absorbed = [0.0] * len(_SLOTS)

    def add(self, worker: int, slot: int, amount: float) -> None:
        self.array[worker * len(_SLOTS) + slot] += amount

    def absorb_into(self, metrics) -> None:
        """Adds what the other workers counted since the last scrape to ``metrics`` (first process)."""
        width = len(_SLOTS)
        for slot, (name, label, value) in enumerate(_SLOTS):
            total = sum(self.array[w * width + slot] for w in range(1, self.workers))
            delta = total - self._absorbed[slot]
            if delta > 0:
                counter = getattr(metrics, name)
                (counter.labels(**{label: value}) if label else counter).inc(delta)
                self._absorbed[slot] = total


class _SharedCounter:
    def __init__(self, counts: SharedCounts, worker: int, name: str, value: str = "") -> None:
        self._counts, self._worker, self._name = counts, worker, name
        self._slot = _SLOT_INDEX.get((name, value))

    def labels(self, *args, **kwargs) -> _SharedCounter:
        (value,) = list(args) + list(kwargs.values())
        return _SharedCounter(self._counts, self._worker, self._name, value)

    def inc(self, amount: float = 1.0) -> None:
        if self._slot is not None:
            self._counts.add(self._worker, self._slot, amount)


class WorkerMetrics:
    """What a device worker's code increments, written to its shared-memory slots."""

    def __init__(self, counts: SharedCounts, worker: int) -> None:
        for name, _label, _values in SHARED_COUNTERS:
            setattr(self, name, _SharedCounter(counts, worker, name))
        self.releases_rejected = _SharedCounter(counts, worker, "releases_rejected")
        self.registry = None

    def before_scrape(self, hook: Callable[[], None]) -> None:
        pass

    def add_fleet_collector(self, collector) -> None:
        pass


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def fork_worker(run: Callable[[], None]) -> int:
    """Forks a process that runs ``run()`` and exits; returns its pid (in the parent)."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _die_with_parent()
        if os.getppid() != parent:  # the parent died before prctl: do not linger
            os._exit(1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def stop_workers(pids: list[int], timeout_s: float = 10.0) -> None:
    """SIGTERM to every worker, then wait (SIGKILL after ``timeout_s``)."""
    import time

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        for pid in list(remaining):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            remaining.discard(pid)
        if remaining:
            time.sleep(0.05)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
