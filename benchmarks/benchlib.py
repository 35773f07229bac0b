"""What benchmarks/serve.py and benchmarks/fleet.py share: a raw HTTP/1.1 load generator and a bulk registry fill.

The load generator speaks keep-alive HTTP/1.1 over asyncio streams (plain or TLS) with
no client library in the way, so the servers, not the generator, are measured:

* closed loop (:func:`closed_loop`): N clients, each sends its next request when the
  previous answer arrived — throughput at a concurrency;
* open loop (:func:`open_loop`): requests start at a fixed rate whatever the answers do,
  as a fleet of devices polling on their own clocks would; latency is counted from the
  moment a request was due (no coordinated omission), and a request that finds all
  MAX_CONNECTIONS busy counts as an error.

Devices are written straight into the registry (COPY on PostgreSQL) with tokens derived
from their index (:func:`token_for`), so a million need neither a million HTTP calls nor a
million tokens shipped to the load generator. They get no MQTT password (not used here).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import platform
import random
import ssl
import statistics
import subprocess
import time
from pathlib import Path

READ_CHUNK_BYTES = 256 * 1024
MAX_CONNECTIONS = 512
TOKEN_SEED = "csi-ota-benchmark"


# --------------------------------------------------------------------------- devices


def device_id_for(index: int) -> str:
    return f"b{index:07d}"


def token_for(index: int) -> str:
    return "dev_" + hashlib.sha256(f"{TOKEN_SEED}:{index}".encode()).hexdigest()[:43]


def running_version_for(index: int) -> str:
    """Half the fleet already runs the benchmark release (204), half runs an older one (200 + manifest)."""
    return "9.0.0" if index % 2 else "8.0.0"


def _offer_taken(index: int, assigned_release_id: int | None, now) -> tuple:
    """(offer_release_id, offer_taken_at): devices offered the assigned release took the offer before."""
    if assigned_release_id is None or running_version_for(index) != "8.0.0":
        return (None, None)
    return (assigned_release_id, now)


def bulk_register(
    database_url: str,
    start: int,
    count: int,
    tags: tuple[str, ...] = (),
    assigned_release_id: int | None = None,
) -> float:
    """Inserts devices start..start+count-1 (ids device_id_for, tokens token_for); returns seconds taken.

    Each device is in the steady state of a polling fleet: it has checked in before (running
    version running_version_for(i), slot 0, otadata state valid) and, when it does not run the
    assigned release, has already taken its offer (``offer_taken_at``), so a check with those
    values changes nothing but ``last_seen``. On PostgreSQL the rows are copied with triggers off (``session_replication_role =
    replica``): a benchmark's bulk load, read whole by the controller's cache at its next start.
    """
    from sqlalchemy import insert

    from csi_ota.controller.db import make_engine
    from csi_ota.controller.models import Device

    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    tags_json = json.dumps(list(tags))
    engine = make_engine(database_url, pool_size=1)
    try:
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("SET session_replication_role = replica")
                copy_sql = (
                    "COPY devices (id, token_hash, tags, created, decommissioned, health, csi_messages_received, "
                    "csi_bytes_received, config_revision, assigned_release_id, version, secure_version, slot, "
                    "ota_state, last_seen, offer_release_id, offer_taken_at) FROM STDIN"
                )
                with cursor.copy(copy_sql) as copy:
                    for index in range(start, start + count):
                        token_hash = hashlib.sha256(token_for(index).encode()).hexdigest()
                        copy.write_row(
                            (
                                device_id_for(index),
                                token_hash,
                                tags_json,
                                now,
                                False,
                                "unknown",
                                0,
                                0,
                                0,
                                assigned_release_id,
                                running_version_for(index),
                                0,
                                0,
                                "valid",
                                now,
                                *_offer_taken(index, assigned_release_id, now),
                            )
                        )
                raw.commit()
            finally:
                raw.close()
        else:
            rows = []
            with engine.begin() as conn:
                for index in range(start, start + count):
                    token_hash = hashlib.sha256(token_for(index).encode()).hexdigest()
                    rows.append(
                        {
                            "id": device_id_for(index),
                            "token_hash": token_hash,
                            "tags": list(tags),
                            "created": now.replace(tzinfo=dt.UTC),
                            "decommissioned": False,
                            "health": "unknown",
                            "csi_messages_received": 0,
                            "csi_bytes_received": 0,
                            "config_revision": 0,
                            "assigned_release_id": assigned_release_id,
                            "version": running_version_for(index),
                            "secure_version": 0,
                            "slot": 0,
                            "ota_state": "valid",
                            "last_seen": now.replace(tzinfo=dt.UTC),
                            **dict(
                                zip(
                                    ("offer_release_id", "offer_taken_at"),
                                    _offer_taken(index, assigned_release_id, now.replace(tzinfo=dt.UTC)),
                                    strict=True,
                                )
                            ),
                        }
                    )
                    if len(rows) == 20_000:
                        conn.execute(insert(Device), rows)
                        rows = []
                if rows:
                    conn.execute(insert(Device), rows)
    finally:
        engine.dispose()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- HTTP


def get_request(host: str, port: int, path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Connection: keep-alive\r\n\r\n".encode()


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """(status, body bytes) of one response; the body is read and discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    remaining = length
    while remaining:
        chunk = await reader.read(min(READ_CHUNK_BYTES, remaining))
        if not chunk:
            raise ConnectionError("body ended early")
        remaining -= len(chunk)
    return status, length


def _percentiles(latencies: list[float]) -> dict:
    latencies.sort()

    def pick(p: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)
            if latencies
            else None
        )

    return {
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": round(latencies[-1] * 1000, 3) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
    }


async def _open(host: str, port: int, tls: bool):
    return await asyncio.open_connection(
        host, port, limit=READ_CHUNK_BYTES * 4, ssl=_client_tls() if tls else None
    )


async def _closed_client(connection, requests, deadline, stats, latencies) -> None:
    reader, writer = connection
    try:
        while time.monotonic() < deadline:
            request = random.choice(requests)
            started = time.perf_counter()
            writer.write(request)
            status, length = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            stats["bytes"] += length
            stats["responses"] += 1
            stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
    finally:
        writer.close()


async def _closed_loop(host, port, tls, requests, concurrency, duration_s) -> dict:
    stats = {"bytes": 0, "responses": 0, "statuses": {}}
    latencies: list[float] = []
    # Connect (and shake hands) first: the clock runs while requests flow, not during TLS set-up.
    connections = await asyncio.gather(
        *[_open(host, port, tls) for _ in range(concurrency)], return_exceptions=True
    )
    results = [c for c in connections if isinstance(c, BaseException)]
    started = time.monotonic()
    results += await asyncio.gather(
        *[
            _closed_client(c, requests, started + duration_s, stats, latencies)
            for c in connections
            if not isinstance(c, BaseException)
        ],
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    cpu = os.times()
    return {
        "mode": "closed",
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "responses": stats["responses"],
        "statuses": {str(k): v for k, v in stats["statuses"].items()},
        "requests_per_s": round(stats["responses"] / elapsed, 1),
        "mbytes_per_s": round(stats["bytes"] / elapsed / 1e6, 1),
        **_percentiles(latencies),
        "client_errors": [repr(r) for r in results if isinstance(r, BaseException)][:5],
        "load_generator_cpu_s": round(cpu.user + cpu.system, 2),
    }


async def _open_loop(host, port, tls, make_request, rate_per_s, duration_s, warmup_s) -> dict:
    """Requests due at t0 + i/rate; latency from the due time; all connections busy = an error."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = {"busy": 0, "failed": 0}
    in_flight: set[asyncio.Task] = set()
    t0 = time.perf_counter()
    measure_from = t0 + warmup_s

    async def one(due: float, request: bytes) -> None:
        nonlocal opened
        if idle:
            reader, writer = idle.pop()
        else:
            opened += 1
            try:
                reader, writer = await _open(host, port, tls)
            except OSError:
                opened -= 1
                errors["failed"] += due >= measure_from
                return
        try:
            writer.write(request)
            status, _ = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()
            opened -= 1
            errors["failed"] += due >= measure_from
            return
        if due >= measure_from:
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
        idle.append((reader, writer))

    sent = 0
    cpu0 = os.times()
    while (now := time.perf_counter()) - t0 < warmup_s + duration_s:
        due_count = int((now - t0) * rate_per_s) + 1  # request i is due at t0 + i / rate: send it then
        while sent < due_count:
            due = t0 + sent / rate_per_s
            if len(in_flight) >= MAX_CONNECTIONS:
                errors["busy"] += due >= measure_from
            else:
                task = asyncio.create_task(one(due, make_request(sent)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            sent += 1
        await asyncio.sleep(0.001)
    cpu1 = os.times()
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)
    for _reader, writer in idle:
        writer.close()
    measured = sum(statuses.values())
    return {
        "mode": "open",
        "target_per_s": round(rate_per_s, 1),
        "achieved_per_s": round(measured / duration_s, 1),
        "seconds": duration_s,
        "responses": measured,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors["busy"] + errors["failed"],
        "errors_busy": errors["busy"],
        "errors_failed": errors["failed"],
        "connections": opened,
        **_percentiles(latencies),
        "load_generator_cpu_share": round(
            (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (warmup_s + duration_s), 2
        ),
    }


def _in_process(target, args, queue) -> None:
    queue.put(asyncio.run(target(*args)))


def _run(target, args, timeout_s: float) -> dict:
    """Runs a load coroutine in its own process (its CPU is not the caller's)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_in_process, args=(target, args, queue))
    process.start()
    try:
        result = queue.get(timeout=timeout_s)
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]  # 1/5/15 min, at the row's end
        return result
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def closed_loop(host, port, requests, concurrency, duration_s, *, tls=False) -> dict:
    return _run(_closed_loop, (host, port, tls, requests, concurrency, duration_s), duration_s + 120)


def open_loop(host, port, make_request, rate_per_s, duration_s, *, warmup_s=2.0, tls=False) -> dict:
    """``make_request(i)`` -> bytes of the i-th request (runs in a forked child)."""
    return _run(
        _open_loop,
        (host, port, tls, make_request, rate_per_s, duration_s, warmup_s),
        warmup_s + duration_s + 120,
    )


# --------------------------------------------------------------------------- the machine


def tree_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds so far of these processes and their children (servers under test)."""
    tick = os.sysconf("SC_CLK_TCK")
    seen: set[int] = set()
    todo = list(pids)
    total = 0.0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            todo += [int(c) for c in children]
    return total


def machine() -> dict:
    info = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu_model"] = next(
            (x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), None
        )
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["memory_kb"] = next((int(x.split()[1]) for x in meminfo if x.startswith("MemTotal")), None)
    with contextlib.suppress(OSError):
        info["nginx"] = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return info
