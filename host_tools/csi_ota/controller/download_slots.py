"""At most N firmware downloads in flight per device (issue 12 H4); the newest one wins.

One device token held 399 stalled downloads (RSS 257 -> 447 MB). A device really downloads one
image at a time, so when a download starts while the device already has ``per_device`` in flight,
the oldest is evicted: its response task is cancelled and uvicorn closes that connection. A
device that dropped its link and resumes with Range is never refused, and a token cannot hold
more than ``per_device`` connections' worth of buffers.

With ``serve --workers N`` the kernel hands a device's connections to any of the N processes, so
the count is host-wide: a :class:`SharedDownloadTable` in shared memory (made before the workers
fork) holds every download in flight. The process that starts a download evicts the device's
oldest entries there, whichever process serves them; each process notices within
``POLL_INTERVAL_S`` that one of its downloads lost its entry and cancels it. When the table
cannot be used (a bucket full, its lock not free in time) a download is counted in its own
process only, as with one worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import multiprocessing
import os
import threading
from collections.abc import Callable

POLL_INTERVAL_S = 0.2
TABLE_BUCKETS = 4096
ENTRIES_PER_BUCKET = 16
LOCK_TIMEOUT_S = 0.25


class SharedDownloadTable:
    """Host-wide downloads in flight: (device key, start number) entries in shared memory.

    A device's entries live in one bucket (a keyed hash of its id, so nobody can aim at another
    device's bucket). Entries are freed by their owner when a download ends, or by the process
    that evicts them; an owner finds its download evicted when its entry no longer holds its
    start number.
    """

    def __init__(self, buckets: int = TABLE_BUCKETS, entries_per_bucket: int = ENTRIES_PER_BUCKET) -> None:
        self.buckets = buckets
        self.entries_per_bucket = entries_per_bucket
        size = buckets * entries_per_bucket
        self._keys = multiprocessing.RawArray(ctypes.c_uint64, size)  # 0 = free
        self._starts = multiprocessing.RawArray(ctypes.c_uint64, size)  # unique, increasing
        self._next_start = multiprocessing.RawValue(ctypes.c_uint64, 0)
        self._lock = multiprocessing.Lock()
        self._secret = os.urandom(16)  # inherited by the forked workers

    def _key(self, device_id: str) -> int:
        digest = hashlib.blake2b(device_id.encode(), key=self._secret, digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1

    def acquire(self, device_id: str, per_device: int) -> tuple[int, int] | None:
        """An entry (index, start) for a new download, after freeing the device's oldest beyond
        ``per_device``; None when the table cannot take it (count it locally then)."""
        key = self._key(device_id)
        first = (key % self.buckets) * self.entries_per_bucket
        indices = range(first, first + self.entries_per_bucket)
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            return None
        try:
            mine = sorted((self._starts[i], i) for i in indices if self._keys[i] == key)
            for _start, index in mine[: max(0, len(mine) - per_device + 1)]:
                self._keys[index] = 0
                self._starts[index] = 0
            free = next((i for i in indices if self._keys[i] == 0), None)
            if free is None:
                return None
            self._next_start.value += 1
            start = self._next_start.value
            self._keys[free] = key
            self._starts[free] = start
            return free, start
        finally:
            self._lock.release()

    def holds(self, entry: tuple[int, int]) -> bool:
        """Whether the download that got ``entry`` still has it (not evicted)."""
        index, start = entry
        return self._starts[index] == start

    def release(self, entry: tuple[int, int]) -> None:
        index, start = entry
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            return  # left behind: evicted harmlessly by the device's next downloads
        try:
            if self._starts[index] == start:
                self._keys[index] = 0
                self._starts[index] = 0
        finally:
            self._lock.release()

    def in_flight(self, device_id: str) -> int:
        key = self._key(device_id)
        first = (key % self.buckets) * self.entries_per_bucket
        return sum(1 for i in range(first, first + self.entries_per_bucket) if self._keys[i] == key)


class DownloadSlot:
    """One download in flight; ``bind`` is called from its response task once it runs."""

    def __init__(self) -> None:
        self.evicted = False
        self.entry: tuple[int, int] | None = None  # in the SharedDownloadTable, if any
        self._cancel: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def bind(self) -> None:
        """Remembers how to cancel the current task (call inside the response's task)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        with self._lock:
            self._cancel = lambda: loop.call_soon_threadsafe(task.cancel)
            evicted = self.evicted
        if evicted and task is not None:
            task.cancel()

    def evict(self) -> None:
        with self._lock:
            if self.evicted:
                return
            self.evicted = True
            cancel = self._cancel
        if cancel is not None:
            cancel()


class DownloadSlots:
    """The downloads of one process; host-wide through ``shared`` (``serve --workers N``)."""

    def __init__(self, per_device: int, shared: SharedDownloadTable | None = None) -> None:
        self.per_device = per_device
        self.shared = shared
        self.evictions = 0
        self._lock = threading.Lock()
        self._active: dict[str, list[DownloadSlot]] = {}
        self._watch = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None

    def acquire(self, device_id: str) -> DownloadSlot:
        """A slot for a new download, evicting the device's oldest ones beyond ``per_device``."""
        slot = DownloadSlot()
        if self.shared is not None:
            slot.entry = self.shared.acquire(device_id, self.per_device)
        with self._lock:
            active = self._active.setdefault(device_id, [])
            if slot.entry is not None:  # the shared table chose what to evict, host-wide
                evicted = [
                    old for old in active if old.entry is not None and not self.shared.holds(old.entry)
                ]
            else:
                evicted = active[: max(0, len(active) - self.per_device + 1)]
            for old in evicted:
                active.remove(old)
            active.append(slot)
            self.evictions += len(evicted)
            if slot.entry is not None:
                self._start_watcher()
        for old in evicted:
            old.evict()
        return slot

    def release(self, device_id: str, slot: DownloadSlot) -> None:
        with self._lock:
            active = self._active.get(device_id, [])
            if slot in active:
                active.remove(slot)
            if not active:
                self._active.pop(device_id, None)
        if slot.entry is not None:
            self.shared.release(slot.entry)

    def in_flight(self, device_id: str) -> int:
        with self._lock:
            return len(self._active.get(device_id, []))

    def poll_evictions(self) -> int:
        """Evicts this process's downloads that another process took the entry of; returns how many."""
        with self._lock:
            evicted = []
            for device_id, active in list(self._active.items()):
                lost = [s for s in active if s.entry is not None and not self.shared.holds(s.entry)]
                for slot in lost:
                    active.remove(slot)
                if not active:
                    del self._active[device_id]
                evicted += lost
            self.evictions += len(evicted)
        for slot in evicted:
            slot.evict()
        return len(evicted)

    def _start_watcher(self) -> None:  # with self._lock held
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch_loop, name="download-slots", daemon=True)
            self._watcher.start()
        self._watch.notify()

    def _watch_loop(self) -> None:
        while True:
            with self._lock:
                while not any(s.entry is not None for a in self._active.values() for s in a):
                    self._watch.wait()  # nothing shared in flight: sleep until a download starts
            self.poll_evictions()
            with self._lock:
                self._watch.wait(POLL_INTERVAL_S)
