"""Complete rollouts on simulated fleets against the real controller process (uvicorn on loopback).

Time is virtual: the controller and the fleet share a clock running SCALE
times faster than the wall clock, so 24 h soaks take 12 s. Devices check for
updates every CHECK_REAL_S wall-clock seconds and heart-beat every
HEARTBEAT_REAL_S: about 13 requests/s for the 200-device fleet. That load is
chosen to be answered within a fraction of an interval even by the share of a
2-core machine that the niced suite gets beside two CPU hogs (stress-ng), so
every verdict keeps its margin: the engine gives a device two of its check
intervals to take an offer and three heartbeat intervals before it calls it
silent, and a controller stall never counts (intake.py). Fleet scale itself
(1,000 and more devices, and the requests/s one controller sustains) is
measured by benchmarks/, and the engine's decisions on large fleets are
tested in virtual time (test_rollout_judging.py), both independent of the
machine's speed. Every wait is bounded.

The policies name the fleet's intervals (as an operator does for a fleet
configured so): the engine judges reach and silence against them until a
device's heartbeat reports its own (each simulated device heart-beats once at
boot, as the firmware does).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from rollout_harness import (
    DAY_S,
    create_rollout,
    fleet_config,
    rollout_detail,
    rollout_devices,
    start_world,
    stop_world,
)

from csi_ota.fleet.runner import Fleet, run_fleet
from services import postgres_server, start_controller

# Issue 11: these run beside `stress-ng --cpu 2` (the causes found under load are fixed: the device
# cache skipping changes committed out of order, the fleet's own httpx pool, unknown intervals
# before the first heartbeat, and an engine lease that ran from the start of a slow tick).
pytestmark = pytest.mark.slow

SCALE = 7_200.0  # 24 h of virtual time = 12 s
CHECK_REAL_S = 20.0
HEARTBEAT_REAL_S = 60.0  # 5 virtual days: within the device API's 7-day bound on intervals
FLEET_SIZE = int(os.environ.get("ROLLOUT_TEST_FLEET_SIZE", "200"))  # larger on a quiet machine
RUN_BOUND_S = 480.0
SILENT_FLEET_SIZE = 100
STAGE_2_BOUND_S = 300.0
KILL_MARGIN_S = 1.0  # the fail-over test kills the holder only while its claim has this much left


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def real_to_virtual_s(real_s: float) -> int:
    return int(real_s * SCALE)


def base_policy(**overrides) -> dict:
    policy = {
        "stages": [10, 50, 100],
        "soak_s": DAY_S,
        "batch_size": 150,
        "health_timeout_s": real_to_virtual_s(120),
        "max_retries": 1,
        "success_percent": 95,
        "failure_percent": 10,
        "failure_min_count": 5,
        "check_interval_s": real_to_virtual_s(CHECK_REAL_S),
        "heartbeat_interval_s": real_to_virtual_s(HEARTBEAT_REAL_S),
    }
    policy.update(overrides)
    return policy


def fleet_timing() -> dict:
    return {
        "check_interval_s": real_to_virtual_s(CHECK_REAL_S),
        "heartbeat_interval_s": real_to_virtual_s(HEARTBEAT_REAL_S),
        "duration_s": RUN_BOUND_S,
    }


class WebhookReceiver:
    """A small HTTP server on loopback that records every JSON POST."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FleetThread:
    """Runs a fleet in a background thread so the test can kill controllers meanwhile."""

    def __init__(self, config) -> None:
        self.fleet = Fleet(config)
        self.summary = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        try:
            self.summary = asyncio.run(self.fleet.run())
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout_s: float) -> dict:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the fleet did not finish in time"
        if self.error is not None:
            raise self.error
        return self.summary


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def test_healthy_release_reaches_the_whole_fleet_within_batch_and_window_across_a_restart(tmp_path, postgres):
    """10/50/100 % with 24 h soaks, 50 at a time, only 19:00-09:00 Berlin; kill -9 of the controller mid-way."""
    world = start_world(
        tmp_path, devices=FLEET_SIZE, scale=SCALE, database_url=postgres.create_database("healthy")
    )
    try:
        policy = base_policy(batch_size=50, window="19:00-09:00", window_time_zone="Europe/Berlin")
        rollout = create_rollout(world, "2.0.0", policy)
        mix = "healthy=94,slow_link=2,flaky_link=2,power_cut_mid_download=2"
        runner = FleetThread(fleet_config(world, behaviours=mix, rollout_id=rollout["id"], **fleet_timing()))
        wait_for(
            lambda: rollout_detail(world, rollout["id"])["current_stage"] >= 2,
            STAGE_2_BOUND_S,
            "stage 2 to open",
        )
        old = world.server
        old.kill9()  # as a power cut would: no shutdown code runs
        world.servers[0] = start_controller(
            old.data_dir,
            database_url=old.database_url,
            trusted_keys=[world.public_key_path],
            extra_env=world.controller_env(),
            admin_token=old.admin_token,
            device_port=int(old.device_url.rsplit(":", 1)[1]),
            management_port=int(old.management_url.rsplit(":", 1)[1]),
        )
        summary = runner.join(RUN_BOUND_S + 30)
        detail = rollout_detail(world, rollout["id"])
        devices = rollout_devices(world, rollout["id"])
    finally:
        stop_world(world)
    assert detail["state"] == "completed", detail["halt_reason"]
    assert summary["versions"] == {"2.0.0": FLEET_SIZE}
    assert detail["counts"] == {"succeeded": FLEET_SIZE}
    assert summary["max_concurrent_downloads"] <= policy["batch_size"]
    assert summary["power_cuts"] > 0 and summary["link_drops"] > 0 and summary["range_resumes"] > 0
    # Every offer was made inside the update window, and never before its stage opened.
    berlin = ZoneInfo("Europe/Berlin")
    opened = [dt.datetime.fromisoformat(s["opened_vt"].replace("Z", "+00:00")) for s in detail["stages"]]
    for device in devices:
        offered = dt.datetime.fromisoformat(device["first_offered_vt"].replace("Z", "+00:00"))
        local = offered.astimezone(berlin)
        assert local.hour >= 19 or local.hour < 9, (device, local)
        assert offered >= opened[device["stage"] - 1]
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds.count("gate") == 2 and kinds[-1] == "completed"


def test_bad_release_halts_in_its_first_stage_and_rolls_back_with_an_alert(tmp_path, postgres):
    """30 % of devices fail the self-test: halt in stage 1, webhook alert, signed rollback of the rest."""
    hook = WebhookReceiver()
    world = start_world(
        tmp_path, devices=FLEET_SIZE, scale=SCALE, database_url=postgres.create_database("bad")
    )
    try:
        policy = base_policy(max_retries=0, failure_min_count=3, alert_webhook=hook.url)
        rollout = create_rollout(world, "2.0.0", policy)
        config = fleet_config(
            world,
            behaviours="healthy=70,fail_selftest=30",
            rollout_id=rollout["id"],
            settle_s=2,
            **fleet_timing(),
        )
        fleet, summary = run_fleet(config)
        detail = rollout_detail(world, rollout["id"])
        devices = rollout_devices(world, rollout["id"])
        wait_for(lambda: hook.received, 10, "the webhook alert")
        with world.management() as client:
            metrics = client.get("/metrics").text
    finally:
        stop_world(world)
        hook.close()
    assert detail["state"] == "rolled_back", [e["message"] for e in detail["events"]]
    halt = next(e for e in detail["events"] if e["kind"] == "halt")
    assert "stage 1" in halt["message"]
    assert all(d["first_offered_vt"] is None for d in devices if d["stage"] > 1)  # never got past stage 1
    path, content_type, alert = hook.received[0]
    assert path == "/alerts" and content_type == "application/json"
    assert alert["event"] == "rollout_halted" and alert["rollout_id"] == rollout["id"] and alert["stage"] == 1
    assert f'csi_ota_rollout_halts_total{{rollout="{rollout["id"]}"}} 1.0' in metrics
    # Every device that kept 2.0.0 was rolled back with the signed rollback manifest; a
    # self-test failer still verifying 2.0.0 at the halt came back on its own.
    assert summary["versions"] == {"1.0.0": FLEET_SIZE}
    rolled_back = [d for d in devices if d["state"] == "rolled_back"]
    installed = [d for d in rolled_back if d["reason"] == "rollback_installed"]
    by_id = {d.device_id: d for d in fleet.devices}
    assert {d["reason"] for d in rolled_back} <= {"rollback_installed", "returned_by_itself"}
    assert installed and summary["outcomes"]["rollback_installed"] == len(installed)
    v2 = world.releases["2.0.0"]
    for entry in rolled_back:
        device = by_id[entry["device_id"]]
        if entry["reason"] == "returned_by_itself":
            assert device.behaviour == "fail_selftest" and device.highest_sequence < v2.sequence
            continue
        assert device.behaviour == "healthy" and device.highest_sequence > v2.sequence
        _, refusal = device.evaluate(v2.manifest)  # a replay of the bad release's manifest
        assert refusal == "manifest_replay"


def test_silent_devices_trip_the_health_timeout(tmp_path):
    """Devices that go quiet once offered fail after the timeout (and a retry); the rest completes."""
    world = start_world(tmp_path, devices=SILENT_FLEET_SIZE, scale=SCALE)
    try:
        policy = base_policy(
            stages=[100],
            batch_size=200,
            health_timeout_s=real_to_virtual_s(40),
            failure_percent=15,
            success_percent=85,
            check_interval_s=real_to_virtual_s(10),
            heartbeat_interval_s=real_to_virtual_s(20),
        )
        rollout = create_rollout(world, "2.0.0", policy)
        config = fleet_config(
            world,
            behaviours="healthy=90,silent=10",
            rollout_id=rollout["id"],
            check_interval_s=real_to_virtual_s(10),
            heartbeat_interval_s=real_to_virtual_s(20),
            duration_s=240,
        )
        fleet, summary = run_fleet(config)
        detail = rollout_detail(world, rollout["id"])
        devices = {d["device_id"]: d for d in rollout_devices(world, rollout["id"])}
    finally:
        stop_world(world)
    assert detail["state"] == "completed", detail["halt_reason"]
    silent = {d.device_id for d in fleet.devices if d.behaviour == "silent"}
    assert len(silent) == SILENT_FLEET_SIZE // 10 and summary["silent_devices"] == len(silent)
    failed = {d for d, row in devices.items() if row["state"] == "failed"}
    assert failed == silent
    # The first attempt times out after the take-up; the retry is never taken and the device is silent.
    assert all(devices[d]["reason"] in ("timeout", "silent") and devices[d]["attempts"] == 2 for d in silent)


def test_fail_over_between_two_controllers_keeps_the_rollout_going(tmp_path, postgres):
    """Two controller processes on one PostgreSQL: one engine at a time; kill -9 the holder mid-rollout."""
    url = postgres.create_database("failover")
    world = start_world(tmp_path / "a", devices=FLEET_SIZE, scale=SCALE, database_url=url)
    try:
        second = start_controller(
            tmp_path / "b",
            database_url=url,
            trusted_keys=[world.public_key_path],
            extra_env={**world.controller_env(), "FIRMWARE_STORAGE_PATH": str(world.server.firmware_dir)},
        )
        world.servers.append(second)

        def engine(index: int) -> dict:
            """The lease as process ``index`` reads it: holder, generation, expiry from one committed row."""
            with world.management(index) as client:
                return client.get("/api/rollouts/engine").json()

        def both() -> list[dict] | None:
            views = [engine(0), engine(1)]
            return views if views[0]["generation"] == views[1]["generation"] else None

        views = wait_for(both, 15, "two reads of one lease generation")
        assert sorted(v["this_process_active"] for v in views) == [False, True]  # exactly one engine decides
        assert views[0]["holder"] == views[1]["holder"] in {v["this_process"] for v in views}
        rollout = create_rollout(world, "2.0.0", base_policy(stages=[10, 100], batch_size=100))
        # Half the devices use controller 0 first, half controller 1 (each with the other as its
        # fail-over URL): whichever process holds the lease when it is killed, devices lose theirs.
        urls = [server.device_url for server in world.servers]
        runners = [
            FleetThread(
                fleet_config(
                    world,
                    rollout_id=rollout["id"],
                    credentials=world.credentials[first::2],
                    device_urls=[urls[first], urls[1 - first]],
                    seed=first,
                    **fleet_timing(),
                )
            )
            for first in (0, 1)
        ]
        wait_for(
            lambda: rollout_detail(world, rollout["id"], 1)["current_stage"] >= 2,
            STAGE_2_BOUND_S,
            "stage 2",
        )

        def holder_with_time_left() -> tuple[int, dict] | None:
            """The holder, read when its claim has at least KILL_MARGIN_S left."""
            for index in (0, 1):
                view = engine(index)
                left = (parse_time(view["expires"]) - dt.datetime.now(dt.UTC)).total_seconds()
                if view["this_process_active"] and left >= KILL_MARGIN_S:
                    return index, view
            return None

        # The lease may have changed hands since the start (a process stalled between two ticks for
        # longer than the lease loses it; harmless, since every tick is fenced by its generation):
        # kill whichever process holds it now, while its claim still has KILL_MARGIN_S to run.
        holder, before = wait_for(holder_with_time_left, 30, "the lease holder", interval_s=0.05)
        kill_sent = dt.datetime.now(dt.UTC)
        world.servers[holder].kill9()  # returns once the process is gone
        claim_ended = parse_time(before["expires"])
        survivor = 1 - holder
        after = wait_for(
            lambda: (view := engine(survivor))["this_process_active"] and view,
            30,
            "the other controller to take over",
        )
        # The killed process was the holder when it died: the only change of hands since it was
        # read as the holder is the survivor's take-over, which started after the kill and only
        # once the dead holder's claim had run out.
        assert after["holder"] == after["this_process"] != before["this_process"]
        assert after["generation"] == before["generation"] + 1
        assert parse_time(after["acquired"]) >= max(kill_sent, claim_ended)
        # The fleets follow the rollout on the survivor (their management URL may be the dead one).
        for runner in runners:
            runner.fleet.config.management_url = world.servers[survivor].management_url
            runner.fleet.config.admin_token = world.servers[survivor].admin_token
        try:
            wait_for(
                lambda: rollout_detail(world, rollout["id"], survivor)["state"] == "completed",
                RUN_BOUND_S,
                "completion",
            )
        except AssertionError:
            detail = rollout_detail(world, rollout["id"], survivor)
            raise AssertionError(
                f"{detail['state']} {detail['counts']} {[e['message'] for e in detail['events']]} "
                f"{[r.fleet.stats.errors for r in runners]} {world.servers[survivor].log()[-2000:]}"
            ) from None
        summaries = [runner.join(60) for runner in runners]
        detail = rollout_detail(world, rollout["id"], survivor)
    finally:
        stop_world(world)
    assert detail["counts"] == {"succeeded": FLEET_SIZE}
    assert [s["versions"] for s in summaries] == [{"2.0.0": len(world.credentials[i::2])} for i in (0, 1)]
    # The devices whose first controller was killed really failed over to the survivor.
    errors = summaries[holder]["errors"]
    assert sum(n for kind, n in errors.items() if kind.endswith(":unreachable")) > 0, errors
