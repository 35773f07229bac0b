"""Judging devices on real time scales (issue 11), all in virtual time on the engine's explicit clock.

Each test here failed on the engine before the health clock started at take-up,
stages were cut by rank, silence was judged against a control group and the
device view was reconciled in order.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from virtual_fleet import VirtualFleet

from csi_ota.controller import registry
from csi_ota.controller.db import session_scope
from csi_ota.controller.models import Device
from csi_ota.controller.rollout.intake import record_stall
from csi_ota.controller.rollout.policy import assign_stages

HOUR_S = 3600
DAY_S = 24 * HOUR_S
# docs/rollout.md's Quick start, with the seed's defaults (ROLLBACK_TIMEOUT_MIN 30, check 3600 s,
# HEALTH_CHECK_INTERVAL_SEC 300, UPDATE_RETRY_COUNT 3).
DOCS_EXAMPLE = {
    "stages": [10, 50, 100],
    "soak_s": DAY_S,
    "batch_size": 5,
    "window": "01:00-05:00",
    "window_time_zone": "Europe/Berlin",
    "failure_percent": 10,
    "failure_min_count": 3,
    "health_timeout_s": 30 * 60,
    "max_retries": 3,
    "rollback": "auto",
}


def finished(world, rollout_id):
    return lambda: world.rollout(rollout_id).state in ("completed", "rolled_back", "halted", "rolling_back")


@pytest.mark.slow
def test_the_docs_example_with_seed_defaults_completes_a_healthy_100_device_fleet(make_world):
    """Item 1: hourly checks, 30 min health timeout: nobody fails for not having checked yet."""
    world = make_world(devices=100)
    fleet = VirtualFleet(world, {})
    rollout_id = world.create(DOCS_EXAMPLE)
    fleet.run_until(world.now + dt.timedelta(days=14), tick_s=600, stop=finished(world, rollout_id))
    detail = world.detail(rollout_id)
    assert detail["state"] == "completed", [e["message"] for e in detail["events"]]
    assert detail["counts"] == {"succeeded": 100}
    assert all(d.version == "2.0.0" for d in fleet.devices.values())


@pytest.mark.slow
def test_the_docs_example_with_seed_defaults_halts_a_30_percent_selftest_failure_in_stage_1(make_world):
    world = make_world(devices=100)
    bad = world.device_ids[::10] + world.device_ids[1::10] + world.device_ids[2::10]  # 30 %
    fleet = VirtualFleet(world, {d: "fail_selftest" for d in bad})
    rollout_id = world.create(DOCS_EXAMPLE)
    fleet.run_until(world.now + dt.timedelta(days=14), tick_s=600, stop=finished(world, rollout_id))
    detail = world.detail(rollout_id)
    halts = [e for e in detail["events"] if e["kind"] == "halt"]
    assert halts and "stage 1" in halts[0]["message"], [e["message"] for e in detail["events"]]
    assert detail["state"] in ("rolling_back", "rolled_back")
    states = world.states(rollout_id)
    assert all(rd.first_offered_vt is None for rd in states.values() if rd.stage > 0)
    failed = [d for d, rd in states.items() if rd.state == "failed"]
    assert failed and set(failed) <= set(bad)
    assert all(states[d].reason == "rolled_back:selftest" for d in failed)


def test_health_clock_starts_when_the_device_takes_the_offer(make_world):
    """Offered at 0, checks at 50 min (timeout is 30 min): not failed. Alive but never checking: not reached."""
    world = make_world(devices=3)
    late, never, _ = world.device_ids
    rollout_id = world.create(
        {"stages": [100], "batch_size": 3, "health_timeout_s": 1800, "soak_s": 0, "max_retries": 0}
    )
    world.tick()
    assert len(world.in_state(rollout_id, "offered")) == 3
    world.advance(50 * 60)
    for device in world.device_ids:
        world.heartbeat(device, "1.0.0")
    world.tick()
    assert world.in_state(rollout_id, "failed") == []
    assert world.check(late, "1.0.0", slot=0)
    world.install(late)
    world.install(world.device_ids[2])
    world.tick()
    assert world.states(rollout_id)[late].state == "succeeded"
    for _ in range(6):  # two hourly check intervals pass; `never` heart-beats but never checks
        world.advance(20 * 60)
        world.heartbeat(never, "1.0.0")
        for device in (late, world.device_ids[2]):
            world.heartbeat(device, "2.0.0")
        world.tick()
    rd = world.states(rollout_id)[never]
    assert (rd.state, rd.reason) == ("not_reached", "not_reached")
    assert world.assigned(never) is None  # the offer is withdrawn, nothing counted against the release
    assert world.rollout(rollout_id).state == "completed"


def test_a_device_never_heard_from_since_the_offer_is_not_reached_and_cannot_halt_the_rollout(make_world):
    """An offline device (and one that never checked in) has no silence to judge: not reached, not failed."""
    world = make_world(devices=5)
    *healthy, offline = world.device_ids
    with session_scope(world.sessions) as session:  # registered, never checked in, never heart-beat
        registry.register_device(session, "never", actor="test")
    rollout_id = world.create(
        {"stages": [100], "batch_size": 6, "soak_s": 600, "failure_min_count": 1, "failure_percent": 10}
    )
    world.tick()
    assert len(world.in_state(rollout_id, "offered")) == 6
    for device in healthy:
        world.check(device, "1.0.0")
        world.install(device)
    for _ in range(30):  # 2.5 h: past two hourly check intervals; `offline` is not heard again
        world.advance(300)
        for device in healthy:
            world.heartbeat(device, "2.0.0")
        world.tick()
    states = world.states(rollout_id)
    assert {d: (states[d].state, states[d].reason) for d in (offline, "never")} == {
        offline: ("not_reached", "not_heard"),
        "never": ("not_reached", "not_heard"),
    }
    detail = world.detail(rollout_id)
    assert detail["state"] == "completed", [e["message"] for e in detail["events"]]
    assert detail["counts"] == {"succeeded": 4, "not_reached": 2}
    assert any("2 not reached" in e["message"] for e in detail["events"] if e["kind"] == "soak")
    assert world.assigned(offline) is None and world.assigned("never") is None


def test_a_not_reached_device_heard_from_again_is_offered_again_and_the_gate_waits_for_it(make_world):
    world = make_world(devices=3)
    *healthy, offline = world.device_ids
    rollout_id = world.create({"stages": [100], "batch_size": 3, "soak_s": HOUR_S, "failure_min_count": 1})
    world.tick()
    for device in healthy:
        world.check(device, "1.0.0")
        world.install(device)
    for _ in range(10):  # 2.5 h: `offline` is not reached
        world.advance(900)
        for device in healthy:
            world.heartbeat(device, "2.0.0")
        world.tick()
    assert world.states(rollout_id)[offline].state == "not_reached"
    assert world.detail(rollout_id)["stages"][0]["state"] == "soaking"
    world.heartbeat(offline, "1.0.0")  # powered up again during the soak
    world.tick()
    assert world.in_state(rollout_id, "offered") == [offline]
    assert world.assigned(offline) == world.releases["2.0.0"]
    world.advance(3000)  # the soak is over, but the gate waits for the device offered again
    for device in healthy:
        world.heartbeat(device, "2.0.0")
    world.tick()
    assert world.rollout(rollout_id).state == "active"
    assert world.check(offline, "1.0.0")
    world.install(offline)
    world.tick()
    detail = world.detail(rollout_id)
    assert detail["state"] == "completed", [e["message"] for e in detail["events"]]
    assert detail["counts"] == {"succeeded": 3}
    assert any(e["kind"] == "revised" and offline in e["message"] for e in detail["events"])


def test_stages_are_cut_by_rank_and_empty_stages_are_skipped_without_a_soak(make_world):
    """Item 2: 20 devices at 10/50/100 split 2/8/10; one device is offered at once, no empty-stage soak."""
    world = make_world(devices=20)
    rollout_id = world.create({"stages": [10, 50, 100], "batch_size": 20})
    assert [s["members"] for s in world.detail(rollout_id)["stages"]] == [2, 8, 10]
    for other_id in range(1, 200):  # whatever the hash does, the canary stage holds exactly 2
        stages = assign_stages(other_id, world.device_ids, (10, 50, 100))
        assert sorted(Counter(stage for stage, _bucket in stages.values()).values()) == [2, 8, 10]

    lone = make_world(devices=1)
    rollout_id = lone.create({"stages": [10, 50, 100], "soak_s": DAY_S, "batch_size": 5})
    lone.tick()
    assert lone.in_state(rollout_id, "offered") == lone.device_ids  # offered at once
    lone.install(lone.device_ids[0])
    lone.tick()
    for _ in range(25):  # one soak (its own stage's), not three; the device keeps heart-beating
        lone.advance(HOUR_S)
        lone.heartbeat(lone.device_ids[0], "2.0.0")
        lone.tick()
    detail = lone.detail(rollout_id)
    assert detail["state"] == "completed", [e["message"] for e in detail["events"]]
    messages = [e["message"] for e in detail["events"]]
    assert sum("soaking" in m for m in messages) == 1
    assert sum("no devices; skipped without a soak" in m for m in messages) == 2


def test_a_gate_never_passes_on_fewer_than_success_min_count_decided_devices(make_world):
    world = make_world(devices=6)
    rollout_id = world.create(
        {"stages": [50, 100], "batch_size": 6, "soak_s": 60, "success_min_count": 3, "health_timeout_s": 600}
    )
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    assert len(offered) == 3  # the first stage holds at least success_min_count devices
    for device in offered:
        world.heartbeat(device, "1.0.0")
    world.install(offered[0])
    world.tick()
    for _ in range(10):  # the other two stay alive but never take the offer: not reached
        world.advance(1000)
        for device in world.device_ids:
            world.heartbeat(device, "2.0.0" if device == offered[0] else "1.0.0")
        world.tick()
    rollout = world.rollout(rollout_id)
    assert rollout.state in ("halted", "rolling_back") and "1 of 1 decided" in rollout.halt_reason
    assert world.rollout(rollout_id).current_stage == 0


def test_silence_shared_by_devices_outside_the_update_pauses_instead_of_failing(make_world):
    """Item 3: when the control group goes silent too, it is the controller or the network."""
    world = make_world(devices=20)
    rollout_id = world.create(
        {"stages": [20, 100], "batch_size": 4, "health_timeout_s": 600, "max_retries": 0, "soak_s": 60}
    )
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    assert len(offered) == 4
    for device in offered:
        world.check(device, "1.0.0")  # took the offer
    world.advance(3600)  # ... and then nothing is heard from anyone for an hour
    world.tick()
    rollout = world.rollout(rollout_id)
    assert rollout.state == "paused" and "outside the update went silent too" in rollout.hold_reason
    assert world.in_state(rollout_id, "failed") == []
    for device in world.device_ids:  # everyone is back
        world.heartbeat(device, "1.0.0")
    for device in offered:
        world.install(device)
    world.tick()
    assert world.rollout(rollout_id).state == "active"
    assert sorted(world.in_state(rollout_id, "succeeded")) == sorted(offered)
    kinds = [e["kind"] for e in world.detail(rollout_id)["events"]]
    assert "hold" in kinds and "resumed" in kinds


@pytest.mark.parametrize(
    ("outside_silent", "inside_silent", "expected"),
    [
        (3, 3, "paused"),  # 30 % outside and 30 % inside: the same silence, not the release's
        (0, 3, "halted"),  # everyone outside is heard: the updated devices' silence is theirs
        (2, 7, "halted"),  # 20 % outside cannot explain 70 % inside
    ],
)
def test_silence_inside_the_update_is_judged_against_the_rate_outside_it(
    make_world, outside_silent, inside_silent, expected
):
    """Item 2: the engine compares silence rates inside and outside the update over the same window."""
    world = make_world(devices=20)
    rollout_id = world.create(
        {
            "stages": [50, 100],
            "batch_size": 10,
            "soak_s": DAY_S,
            "health_timeout_s": 1800,
            "max_retries": 0,
            "failure_min_count": 3,
            "rollback": "none",
        }
    )
    world.tick()
    inside = world.in_state(rollout_id, "offered")
    outside = sorted(set(world.device_ids) - set(inside))
    assert len(inside) == len(outside) == 10
    for device in inside:
        world.check(device, "1.0.0")
        world.install(device)
    world.tick()
    assert sorted(world.in_state(rollout_id, "succeeded")) == inside
    heard = inside[inside_silent:] + outside[outside_silent:]
    for _ in range(7):  # 35 min: the silent ones pass both the silence bound and the health timeout
        world.advance(300)
        for device in heard:
            world.heartbeat(device, "2.0.0" if device in inside else "1.0.0")
        world.tick()
    rollout = world.rollout(rollout_id)
    failed = world.in_state(rollout_id, "failed")
    assert rollout.state == expected, [e["message"] for e in world.detail(rollout_id)["events"]]
    if expected == "paused":
        assert failed == []
        assert rollout.hold_reason.startswith(
            f"{outside_silent} of 10 devices outside the update went silent too"
        )
        assert f"inside it {inside_silent} of 10" in rollout.hold_reason
    else:
        assert failed == sorted(inside[:inside_silent])
        assert {world.states(rollout_id)[d].reason for d in failed} == {"silent_after_update"}


def test_a_span_in_which_the_controller_was_stalled_never_counts_as_silence(make_world):
    world = make_world(devices=4)
    rollout_id = world.create(
        {"stages": [100], "batch_size": 4, "health_timeout_s": 600, "max_retries": 0, "rollback": "none"}
    )
    world.tick()
    for device in world.device_ids:
        world.check(device, "1.0.0")  # took the offer
    start = world.now
    world.advance(900)
    with session_scope(world.sessions) as session:  # the controller took nothing in for 500 s
        record_stall(
            session, "test", start + dt.timedelta(seconds=100), world.now - dt.timedelta(seconds=300), 500
        )
    world.tick()  # 900 s since take-up, 400 s of them counted: not timed out
    assert world.in_state(rollout_id, "failed") == []
    world.advance(250)
    world.tick()
    assert len(world.in_state(rollout_id, "failed")) == 4


def test_the_device_view_follows_reports_and_heartbeats_in_order(make_world):
    """Item 4: what `csi-ota demo` does: pending_verify heartbeat, then success: valid, healthy, slot 1."""
    world = make_world(devices=1)
    device = world.device_ids[0]
    world.report(device, "downloading", version="1.0.0")
    world.report(device, "downloaded", version="1.0.0")
    world.report(device, "pending_verify", version="2.0.0")
    world.heartbeat(device, "2.0.0", ota_state="pending_verify")
    with world.sessions() as session:
        shown = session.get(Device, device)
        assert (shown.ota_state, shown.health, shown.slot) == ("pending_verify", "degraded", 1)
    world.report(device, "success", version="2.0.0")
    world.heartbeat(device, "2.0.0", ota_state="pending_verify")  # sent before the confirm, arrives after
    with world.sessions() as session:
        shown = session.get(Device, device)
        view = registry.device_to_dict(shown, world.now, 300)
    assert (view["version"], view["ota_state"], view["health"], view["slot"]) == (
        "2.0.0",
        "valid",
        "healthy",
        1,
    )
    world.check(device, "2.0.0", slot=1)  # the device's own word on its slot wins
    world.report(device, "rolled_back", "selftest", version="1.0.0")  # a later failed update: back on 0
    with world.sessions() as session:
        shown = session.get(Device, device)
        assert (shown.version, shown.slot, shown.ota_state) == ("1.0.0", 0, "valid")
