"""At most N firmware downloads in flight per device (issue 12 H4); the newest one wins.

One device token held 399 stalled downloads (RSS 257 -> 447 MB). A device really downloads one
image at a time, so when a download starts while the device already has ``per_device`` in flight,
the oldest is evicted: its response task is cancelled and uvicorn closes that connection. A
device that dropped its link and resumes with Range is never refused, and a token cannot hold
more than ``per_device`` connections' worth of buffers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class DownloadSlot:
    """One download in flight; ``bind`` is called from its response task once it runs."""

    def __init__(self) -> None:
        self.evicted = False
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
            self.evicted = True
            cancel = self._cancel
        if cancel is not None:
            cancel()


class DownloadSlots:
    def __init__(self, per_device: int) -> None:
        self.per_device = per_device
        self.evictions = 0
        self._lock = threading.Lock()
        self._active: dict[str, list[DownloadSlot]] = {}

    def acquire(self, device_id: str) -> DownloadSlot:
        """A slot for a new download, evicting the device's oldest ones beyond ``per_device``."""
        slot = DownloadSlot()
        with self._lock:
            active = self._active.setdefault(device_id, [])
            evicted = active[: max(0, len(active) - self.per_device + 1)]
            del active[: len(evicted)]
            active.append(slot)
            self.evictions += len(evicted)
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

    def in_flight(self, device_id: str) -> int:
        with self._lock:
            return len(self._active.get(device_id, []))
