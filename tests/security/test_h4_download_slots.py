"""H4: the per-device download cap counts host-wide with `serve --workers N`.

Before: every worker process had its own DownloadSlots, so a device whose connections the kernel
spread over the workers held ``per_device`` downloads in each of them and none was ever evicted
(tests/security/test_h4_connection_limits.py shows it end to end). Here, without a server, the
shared table's rules: the newest download evicts the device's oldest wherever it runs, other
devices are never touched (even in the same bucket), and a forked worker notices in time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

import pytest

from csi_ota.controller.download_slots import POLL_INTERVAL_S, DownloadSlots, SharedDownloadTable

NOTICE_BOUND_S = 5.0  # the watcher polls every POLL_INTERVAL_S; margin for a busy machine


def _wait_for(condition) -> None:
    deadline = time.monotonic() + NOTICE_BOUND_S
    while not condition():
        assert time.monotonic() < deadline, "an eviction was not noticed in time"
        time.sleep(POLL_INTERVAL_S / 4)


def test_oldest_download_of_a_device_is_evicted_in_the_other_worker():
    table = SharedDownloadTable()
    worker_a, worker_b = DownloadSlots(3, table), DownloadSlots(3, table)
    a1 = worker_a.acquire("dev")
    b1 = worker_b.acquire("dev")
    a2 = worker_a.acquire("dev")
    assert table.in_flight("dev") == 3 and not (a1.evicted or b1.evicted or a2.evicted)

    b2 = worker_b.acquire("dev")  # the fourth: a1 (worker A's) is the oldest host-wide
    assert table.in_flight("dev") == 3
    # Worker A's watcher thread notices and evicts it; worker B keeps its downloads.
    _wait_for(lambda: a1.evicted)
    assert not (b1.evicted or a2.evicted or b2.evicted)

    a3 = worker_a.acquire("dev")  # b1 is now the oldest
    _wait_for(lambda: b1.evicted)
    assert not (a2.evicted or b2.evicted or a3.evicted)
    assert worker_a.evictions == worker_b.evictions == 1
    for worker, slot in ((worker_a, a2), (worker_b, b2), (worker_a, a3)):
        worker.release("dev", slot)
    worker_a.release("dev", a1)  # an evicted download ending later frees nothing of the others
    assert table.in_flight("dev") == 0
    assert worker_a.in_flight("dev") == worker_b.in_flight("dev") == 0


def test_devices_sharing_a_bucket_do_not_evict_each_other():
    table = SharedDownloadTable(buckets=1, entries_per_bucket=7)  # every device in one bucket
    slots = DownloadSlots(3, table)
    first = [slots.acquire("alpha") for _ in range(3)] + [slots.acquire("beta") for _ in range(3)]
    assert not any(s.evicted for s in first)
    assert table.in_flight("alpha") == table.in_flight("beta") == 3
    newest = slots.acquire("beta")
    assert [s.evicted for s in first] == [False, False, False, True, False, False]
    assert not newest.evicted and table.in_flight("alpha") == 3


def test_a_full_bucket_falls_back_to_the_process_count():
    table = SharedDownloadTable(buckets=1, entries_per_bucket=2)
    slots = DownloadSlots(2, table)
    tracked = [slots.acquire(f"dev{i}") for i in range(2)]
    assert all(s.entry is not None for s in tracked)
    local = [slots.acquire("dev9") for _ in range(3)]  # no room in the table: counted here
    assert [s.entry for s in local] == [None, None, None]
    assert [s.evicted for s in local] == [True, False, False]
    assert not any(s.evicted for s in tracked)


def test_eviction_cancels_the_download_task():
    slots = DownloadSlots(1)

    async def main() -> bool:
        slot = slots.acquire("dev")

        async def download() -> None:
            slot.bind()
            await asyncio.sleep(30)

        task = asyncio.create_task(download())
        await asyncio.sleep(0)
        # The newer download may start in a route's thread: eviction crosses threads.
        threading.Thread(target=slots.acquire, args=("dev",)).start()
        try:
            await asyncio.wait_for(task, NOTICE_BOUND_S)
        except asyncio.CancelledError:
            return slot.evicted
        return False

    assert asyncio.run(main())


def _worker(table: SharedDownloadTable, ready, go, result) -> None:
    slots = DownloadSlots(2, table)
    held = [slots.acquire("dev") for _ in range(2)]
    ready.set()
    go.wait(NOTICE_BOUND_S)
    deadline = time.monotonic() + NOTICE_BOUND_S
    while not held[0].evicted and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S / 4)
    result.value = int(held[0].evicted) + 2 * int(held[1].evicted)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="serve forks its workers")
def test_a_forked_worker_notices_its_download_was_evicted():
    fork = multiprocessing.get_context("fork")
    table = SharedDownloadTable()  # made before the fork, as `serve --workers N` does
    ready, go, result = fork.Event(), fork.Event(), fork.Value("i", -1)
    child = fork.Process(target=_worker, args=(table, ready, go, result))
    child.start()
    try:
        assert ready.wait(NOTICE_BOUND_S * 2)
        mine = DownloadSlots(2, table).acquire("dev")  # this process: the third download
        go.set()
        child.join(NOTICE_BOUND_S * 3)
        assert child.exitcode == 0
        assert result.value == 1, "the worker's oldest download was not evicted (or the wrong one was)"
        assert not mine.evicted and table.in_flight("dev") == 2
    finally:
        if child.is_alive():
            child.kill()
