"""The rollout engine's decisions, tick by tick, on a real SQLite registry with explicit times."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, update

from csi_ota import keys
from csi_ota.controller.models import Device, Release
from csi_ota.controller.problems import Conflict
from csi_ota.controller.rollout import engine as engine_module
from csi_ota.controller.rollout import lease, service
from csi_ota.controller.rollout.models import EngineLease, RolloutAlert, RolloutMembership
from csi_ota.controller.rollout.policy import assign_stages
from csi_ota.errors import CsiOtaError
from csi_ota.fleet.behaviours import BehaviourMix
from csi_ota.manifest import verify_manifest

FAST = {"soak_s": 3600, "health_timeout_s": 600, "max_retries": 0, "failure_min_count": 3}


def test_stage_membership_is_stable_and_exactly_the_percentages(make_world):
    world = make_world(devices=400)
    rollout_id = world.create({"stages": [10, 50, 100], "batch_size": 5})
    states = world.states(rollout_id)
    sizes = [sum(1 for rd in states.values() if rd.stage == s) for s in range(3)]
    assert sizes == [40, 160, 200]
    recomputed = assign_stages(rollout_id, list(states), (10, 50, 100))
    assert {d: stage for d, (stage, _bucket) in recomputed.items()} == {
        d: rd.stage for d, rd in states.items()
    }
    other = assign_stages(rollout_id + 1, list(states), (10, 50, 100))
    assert {d: s for d, (s, _b) in other.items()} != {d: rd.stage for d, rd in states.items()}


def test_batch_size_and_update_window_limit_offers(make_world):
    world = make_world(devices=30, start=dt.datetime(2026, 11, 28, 23, 30, tzinfo=dt.UTC))  # 00:30 in Berlin
    policy = {
        **FAST,
        "stages": [100],
        "batch_size": 5,
        "health_timeout_s": 6 * 3600,
        "window": "01:00-05:00",
        "window_time_zone": "Europe/Berlin",
    }
    rollout_id = world.create(policy)
    assert world.tick()
    assert world.in_state(rollout_id, "offered") == []  # window closed
    world.advance(45 * 60)  # 01:15 Berlin
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    assert len(offered) == 5
    assert all(world.assigned(d) == world.releases["2.0.0"] for d in offered)
    world.tick()
    assert len(world.in_state(rollout_id, "offered")) == 5  # still at most the batch size in flight
    for device_id in offered[:2]:
        world.install(device_id)
    world.tick()
    assert len(world.in_state(rollout_id, "succeeded")) == 2
    assert len(world.in_state(rollout_id, "offered")) == 5
    world.advance(4 * 3600)  # 05:15 Berlin: closed again
    for device_id in world.in_state(rollout_id, "offered"):
        world.install(device_id)
    world.tick()
    assert len(world.in_state(rollout_id, "succeeded")) == 7
    assert world.in_state(rollout_id, "offered") == []  # no offers outside the window


def test_success_needs_a_healthy_heartbeat_after_the_update(make_world):
    world = make_world(devices=3)
    rollout_id = world.create({**FAST, "stages": [100], "batch_size": 3})
    world.tick()
    device = world.in_state(rollout_id, "offered")[0]
    world.install(device, heartbeat=False)
    world.tick()
    assert world.states(rollout_id)[device].state == "offered"
    # A heartbeat taken during pending_verify but received after the success report is stale:
    # it neither makes the device degraded again nor counts as the healthy heartbeat after the update.
    world.heartbeat(device, "2.0.0", ota_state="pending_verify")
    world.tick()
    assert world.states(rollout_id)[device].state == "offered"
    with world.sessions() as session:
        shown = session.get(Device, device)
        assert (shown.ota_state, shown.health, shown.slot) == ("valid", "healthy", 1)
    world.heartbeat(device, "2.0.0")
    world.tick()
    assert world.states(rollout_id)[device].state == "succeeded"


def test_failed_attempts_are_retried_then_the_device_fails(make_world):
    world = make_world(devices=10)
    rollout_id = world.create(
        {**FAST, "stages": [100], "batch_size": 10, "max_retries": 2, "failure_min_count": 5}
    )
    world.tick()
    device = world.in_state(rollout_id, "offered")[0]
    for attempt in range(1, 3):
        world.fail_selftest(device)
        world.tick()
        rd = world.states(rollout_id)[device]
        assert (rd.state, rd.attempts, rd.reason) == ("offered", attempt, "rolled_back:selftest")
        assert world.assigned(device) == world.releases["2.0.0"]  # the retry keeps the offer
    world.fail_selftest(device)
    world.tick()
    rd = world.states(rollout_id)[device]
    assert (rd.state, rd.attempts) == ("failed", 3)
    assert world.assigned(device) is None  # the offer is withdrawn (nothing was assigned before)


def test_silence_after_taking_the_offer_trips_the_health_timeout_and_counts_as_failure(make_world):
    """The health clock starts when a device takes the offer; silence from then on is failure."""
    world = make_world(devices=4)
    for device in world.device_ids:  # they check every 5 min and heart-beat every minute
        world.heartbeat(device, "1.0.0", check_interval_sec=300, heartbeat_interval_sec=60)
    policy = {
        **FAST,
        "stages": [100],
        "batch_size": 4,
        "max_retries": 1,
        "failure_min_count": 4,
        "rollback": "none",
    }
    rollout_id = world.create(policy)
    world.tick()
    world.advance(250)  # nobody has checked yet: no clock is running
    world.tick()
    assert len(world.in_state(rollout_id, "offered")) == 4
    for device in world.device_ids:
        assert world.check(device, "1.0.0")  # took the offer ... and goes silent
    world.advance(599)
    world.tick()
    assert len(world.in_state(rollout_id, "offered")) == 4
    assert all(rd.attempts == 0 for rd in world.states(rollout_id).values())
    world.advance(2)
    world.tick()
    states = world.states(rollout_id)
    assert {(rd.state, rd.attempts, rd.reason) for rd in states.values()} == {("offered", 1, "timeout")}
    world.advance(601)  # the retry: never taken within two check intervals, and silent
    world.tick()
    assert world.rollout(rollout_id).state == "halted"  # 4 of 4 failed: silence is not success
    assert {rd.reason for rd in world.states(rollout_id).values()} == {"silent"}


def test_coming_back_on_the_old_version_is_a_failure(make_world):
    world = make_world(devices=5)
    rollout_id = world.create({**FAST, "stages": [100], "batch_size": 5, "failure_min_count": 5})
    world.tick()
    device = world.in_state(rollout_id, "offered")[0]
    world.report(device, "downloading", version="1.0.0")
    world.report(device, "downloaded", version="1.0.0")
    world.tick()
    assert world.states(rollout_id)[device].state == "offered"
    world.check(device, "1.0.0")  # rebooted, still (again) on the old version, no report
    world.tick()
    rd = world.states(rollout_id)[device]
    assert (rd.state, rd.reason) == ("failed", "old_version")


def test_gate_waits_for_the_soak_then_opens_the_next_stage(make_world):
    world = make_world(devices=40)
    rollout_id = world.create({**FAST, "stages": [50, 100], "batch_size": 40, "soak_s": 24 * 3600})
    world.tick()
    first = world.in_state(rollout_id, "offered")
    assert first and all(world.states(rollout_id)[d].stage == 0 for d in first)
    for device in first:
        world.install(device)
    world.tick()
    world.tick()
    assert world.detail(rollout_id)["stages"][0]["state"] == "soaking"
    world.advance(23 * 3600)
    world.heartbeat(first[0], "2.0.0")
    for device in first:
        world.check(device, "2.0.0")
    world.tick()
    assert world.rollout(rollout_id).current_stage == 0
    world.advance(3600)
    for device in first:
        world.check(device, "2.0.0")
    world.tick()
    assert world.rollout(rollout_id).current_stage == 1
    events = [e["kind"] for e in world.detail(rollout_id)["events"]]
    assert events[:3] == ["created", "soak", "gate"]
    world.tick()
    second = world.in_state(rollout_id, "offered")
    assert len(second) == 40 - len(first)
    for device in second:
        world.install(device)
    world.tick()
    world.advance(24 * 3600)
    for device in world.device_ids:
        world.check(device, "2.0.0")
    world.tick()
    assert world.rollout(rollout_id).state == "completed"
    with world.sessions() as session:  # a completed rollout frees its devices
        assert session.scalars(select(RolloutMembership)).all() == []


def test_a_device_that_goes_silent_during_the_soak_fails(make_world):
    world = make_world(devices=10)
    rollout_id = world.create({**FAST, "stages": [100], "batch_size": 10, "failure_min_count": 5})
    world.tick()
    for device in world.device_ids:
        world.install(device)
    world.tick()
    world.advance(500)
    for device in world.device_ids[1:]:
        world.heartbeat(device, "2.0.0")
    world.advance(200)
    world.tick()
    rd = world.states(rollout_id)[world.device_ids[0]]
    assert (rd.state, rd.reason) == ("failed", "silent_after_update")
    assert len(world.in_state(rollout_id, "succeeded")) == 9


def test_failure_threshold_halts_alerts_and_rolls_back_with_a_signed_manifest(make_world):
    world = make_world(devices=30)
    policy = {
        **FAST,
        "stages": [100],
        "batch_size": 30,
        "failure_percent": 20,
        "failure_min_count": 3,
        "alert_webhook": "http://127.0.0.1:9/hook",
    }
    rollout_id = world.create(policy)
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    good, bad = offered[:7], offered[7:10]
    world.settle(good, bad)
    rollout = world.rollout(rollout_id)
    assert rollout.state == "rolling_back"
    assert "3 of 10 decided devices failed" in rollout.halt_reason
    assert world.in_state(rollout_id, "offered") == []  # undecided offers were withdrawn
    with world.sessions() as session:
        alert = session.scalars(select(RolloutAlert)).one()
        assert alert.url == "http://127.0.0.1:9/hook" and alert.state == "pending"
        assert alert.payload["event"] == "rollout_halted" and alert.payload["failed"] == 3
        json.dumps(alert.payload)
        rollback = session.get(Release, rollout.rollback_release_id)
        v1 = session.get(Release, world.releases["1.0.0"])
        v2 = session.get(Release, world.releases["2.0.0"])
        manifest = verify_manifest(bytes(rollback.manifest), [keys.load_public_key(world.key_path)])
    assert manifest.rollback and manifest.version == "1.0.0" and manifest.sha256 == v1.sha256
    assert manifest.sequence > v2.sequence > v1.sequence
    assert sorted(world.in_state(rollout_id, "rolling_back")) == sorted(good)
    assert all(world.assigned(d) == rollback.id for d in good)
    for device in good:
        world.install(device, old="2.0.0", new="1.0.0")
    world.tick()
    assert world.rollout(rollout_id).state == "rolled_back"
    assert sorted(world.in_state(rollout_id, "rolled_back")) == sorted(good)


def offer_ten_at_once(make_world):
    """10 devices, one 100 % stage, halt at 2 failures (20 %): (world, rollout id, the offered devices)."""
    world = make_world(devices=10)
    policy = {**FAST, "stages": [100], "batch_size": 10, "failure_percent": 20, "failure_min_count": 2}
    rollout_id = world.create(policy)
    world.tick()
    return world, rollout_id, world.in_state(rollout_id, "offered")


def test_a_device_still_verifying_at_the_halt_may_come_back_by_itself(make_world):
    """The halt offers the rollback to a device verifying 2.0.0; its self-test takes it back first."""
    world, rollout_id, offered = offer_ten_at_once(make_world)
    good, late, bad = offered[:3], offered[3], offered[4:6]
    for device in good:
        world.install(device)
    for device in bad:
        world.fail_selftest(device)
    for state in ("downloading", "downloaded"):
        world.report(late, state, version="1.0.0")
    world.report(late, "pending_verify", version="2.0.0")
    world.tick()
    assert world.rollout(rollout_id).state == "rolling_back"
    assert sorted(world.in_state(rollout_id, "rolling_back")) == sorted([*good, late])
    world.report(late, "rolled_back", "selftest", version="1.0.0")
    world.heartbeat(late, "1.0.0")
    # Between a rollback's pending_verify and success reports the device already names 1.0.0
    # while its last heartbeat (valid, after the offer) is stale: not judged yet.
    midway = good[0]
    world.heartbeat(midway, "2.0.0")  # a periodic heartbeat after the offer, still on 2.0.0
    for state in ("downloading", "downloaded"):
        world.report(midway, state, version="2.0.0", target="1.0.0")
    world.report(midway, "pending_verify", version="1.0.0", target="1.0.0")
    world.tick()
    assert world.states(rollout_id)[midway].state == "rolling_back"
    world.report(midway, "success", version="1.0.0", target="1.0.0")
    world.heartbeat(midway, "1.0.0")
    for device in good[1:]:
        world.install(device, old="2.0.0", new="1.0.0")
    world.tick()
    assert world.rollout(rollout_id).state == "rolled_back"
    states = world.states(rollout_id)
    assert {d: states[d].reason for d in [*good, late]} == {
        **{d: "rollback_installed" for d in good},
        late: "returned_by_itself",
    }


def test_devices_that_come_back_after_the_rollback_finished_are_revised_to_rolled_back(make_world):
    """Late returners: counted as rollback_failed, back on 1.0.0 and healthy later: verdicts and counts revised."""
    world, rollout_id, offered = offer_ten_at_once(make_world)
    good, bad = offered[:3], offered[3:5]
    world.settle(good, bad)
    assert sorted(world.in_state(rollout_id, "rolling_back")) == sorted(good)
    world.advance(7300)  # two hourly check intervals: none of them took the rollback, all silent
    world.tick()
    rollout = world.rollout(rollout_id)
    assert rollout.state == "rolled_back" and sorted(world.in_state(rollout_id, "rollback_failed")) == good
    assert "3 did not come back" in world.detail(rollout_id)["events"][-1]["message"]
    for device in good[:2]:  # ... and then they come back: two install the rollback, one returns by itself
        world.install(device, old="2.0.0", new="1.0.0")
    world.heartbeat(good[2], "1.0.0")
    world.tick()
    world.tick()  # nothing more to revise
    detail = world.detail(rollout_id)
    assert detail["state"] == "rolled_back"
    assert detail["counts"] == {"rolled_back": 3, "failed": 2, "pending": 5}
    states = world.states(rollout_id)
    assert {d: states[d].reason for d in good} == {
        good[0]: "late_rollback_installed",
        good[1]: "late_rollback_installed",
        good[2]: "late_returned_by_itself",
    }
    revised = [e for e in detail["events"] if e["kind"] == "revised"]
    assert len(revised) == 1 and sorted(revised[0]["details"]["devices"]) == good
    message = revised[0]["message"]
    assert message.startswith("3 devices: ") and "came back: back on 1.0.0, healthy" in message
    assert "after being counted as rollback_failed (rollback_silent)" in message
    assert "counts now: 2 failed, 3 rolled_back" in message and "the halt and the rollback stand" in message


def test_a_device_failed_for_silence_that_reports_success_later_is_revised_and_the_halt_stands(make_world):
    world = make_world(devices=10)
    policy = {**FAST, "stages": [100], "batch_size": 10, "failure_percent": 20, "rollback": "none"}
    rollout_id = world.create(policy)
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    good, quiet, rest = offered[:3], offered[3:6], offered[6:]
    for device in good:
        world.install(device)
    for device in quiet:
        assert world.check(device, "1.0.0")  # took the offer ... and is not heard again for a while
    world.advance(700)
    for device in [*good, *rest]:
        world.heartbeat(device, "2.0.0" if device in good else "1.0.0")
    world.tick()
    rollout = world.rollout(rollout_id)
    assert rollout.state == "halted" and "3 of 6 decided devices failed" in rollout.halt_reason
    assert {world.states(rollout_id)[d].reason for d in quiet} == {"timeout"}
    for device in quiet:  # it was installing all along
        world.install(device)
    world.tick()
    detail = world.detail(rollout_id)
    assert detail["state"] == "halted"  # a halt is not undone by itself
    assert detail["counts"] == {"succeeded": 6, "pending": 4}
    assert {world.states(rollout_id)[d].reason for d in quiet} == {"late_success"}
    message = [e for e in detail["events"] if e["kind"] == "revised"][0]["message"]
    assert "came back: runs 2.0.0, healthy, after being counted as failed (timeout)" in message
    assert "the failure threshold no longer holds (0 of 6 decided devices failed)" in message
    assert "the halt stands until an operator resumes" in message


def test_devices_offered_before_their_first_check_in_still_get_the_rollback(make_world):
    """Registered devices not yet heard from: the old version is learnt from their reports."""
    world = make_world(devices=10, checked_in=False)
    policy = {**FAST, "stages": [100], "batch_size": 10, "failure_percent": 20, "failure_min_count": 2}
    with pytest.raises(CsiOtaError, match="no previous release is known"):
        world.create(policy)  # rollback=auto with nothing to roll back to: refused unless accepted
    rollout_id = world.create(policy, allow_no_rollback_target=True)
    assert world.rollout(rollout_id).previous_release_id is None  # nobody had checked in
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    assert len(offered) == 10
    good, bad = offered[:5], offered[5:8]
    world.settle(good, bad)
    rollout = world.rollout(rollout_id)
    assert rollout.state == "rolling_back", [e["message"] for e in world.detail(rollout_id)["events"]]
    assert rollout.previous_release_id == world.releases["1.0.0"]
    states = world.states(rollout_id)
    assert {states[d].from_version for d in [*good, *bad]} == {"1.0.0"}
    assert sorted(world.in_state(rollout_id, "rolling_back")) == sorted(good)


def test_one_engine_holds_the_lease_and_another_takes_over_when_it_dies(make_world):
    world = make_world(devices=20)
    rollout_id = world.create({**FAST, "stages": [100], "batch_size": 4})
    a, b = world.new_engine("a", ttl_s=5), world.new_engine("b", ttl_s=5)
    assert world.tick(a) and not world.tick(b)
    offered_by_a = world.in_state(rollout_id, "offered")
    assert len(offered_by_a) == 4
    world.advance(4)
    assert not world.tick(b)  # a's lease still runs
    world.advance(2)  # a died: its lease expired
    assert world.tick(b)
    assert world.in_state(rollout_id, "offered") == offered_by_a  # same state, same decisions
    assert not world.tick(a)  # the old holder must not decide any more
    with world.sessions() as session:
        lease = session.scalars(select(EngineLease)).one()
        assert lease.holder == "b" and lease.generation == 2
    for device in offered_by_a:
        world.install(device)
    world.tick(b)
    assert len(world.in_state(rollout_id, "succeeded")) == 4
    assert len(world.in_state(rollout_id, "offered")) == 4


def test_a_tick_slower_than_the_lease_keeps_it_and_the_lease_view_is_the_committed_row(
    make_world, monkeypatch
):
    """The claim runs from the end of a tick: a 7 s tick on a 5 s lease does not hand the lease over."""
    world = make_world(devices=20)
    world.create({**FAST, "stages": [100], "batch_size": 4})
    a, b = world.new_engine("a", ttl_s=5), world.new_engine("b", ttl_s=5)
    start = world.now
    wall = [start]  # the wall clock the engine reads: the tick starts at `start`, ends 7 s later

    def slow_wall_clock() -> dt.datetime:
        now = wall[-1]
        wall.append(start + dt.timedelta(seconds=7))
        return now

    monkeypatch.setattr(engine_module, "utcnow", slow_wall_clock)
    assert a.tick() and a.active and a.generation == 1
    at = start + dt.timedelta(seconds=7.5)
    assert not b.tick(now_real=at)  # a's claim runs from the end of its slow tick (old code: b took it)
    with world.sessions() as session:
        seen_a, seen_b = lease.view(session, "a", at), lease.view(session, "b", at)
    assert seen_a.this_process_holds and seen_a.generation == 1 and seen_a.holder == "a"
    assert not seen_b.this_process_holds and seen_b.holder == "a"
    # a stops ticking (dies): once its claim from the end of its last tick ran out, b takes over.
    assert not b.tick(now_real=start + dt.timedelta(seconds=11.9))
    later = start + dt.timedelta(seconds=12.1)
    assert b.tick(now_real=later) and b.generation == 2
    with world.sessions() as session:
        seen_a = lease.view(session, "a", later)
    assert not seen_a.this_process_holds and (seen_a.holder, seen_a.generation) == ("b", 2)
    assert seen_a.acquired_real == later


def test_a_tick_whose_lease_changed_hands_rolls_back(make_world, monkeypatch):
    """The fence: a tick commits only if the lease still names its holder and generation at its end."""
    world = make_world(devices=20)
    a = world.new_engine("a", ttl_s=5)
    assert world.tick(a) and a.generation == 1
    rollout_id = world.create({**FAST, "stages": [100], "batch_size": 4})
    confirm = lease.confirm

    def stolen_meanwhile(session, holder, generation, ttl_s, now_real):
        session.execute(update(EngineLease).values(holder="b", generation=generation + 1))
        return confirm(session, holder, generation, ttl_s, now_real)

    monkeypatch.setattr(lease, "confirm", stolen_meanwhile)
    assert not world.tick(a) and not a.active and a.generation == 0
    assert world.in_state(rollout_id, "offered") == []  # nothing the fenced tick decided was committed
    monkeypatch.setattr(lease, "confirm", confirm)
    assert world.tick(a) and a.generation == 1  # the row was never changed: a still holds generation 1
    assert len(world.in_state(rollout_id, "offered")) == 4


def test_operator_controls(make_world):
    world = make_world(devices=20)
    rollout_id = world.create({**FAST, "stages": [50, 100], "batch_size": 3})
    with world.sessions.begin() as session:
        service.pause(session, rollout_id, actor="op", clock=world.clock)
    world.tick()
    assert world.in_state(rollout_id, "offered") == []
    with world.sessions.begin() as session:
        service.resume(session, rollout_id, actor="op", clock=world.clock)
    world.tick()
    offered = world.in_state(rollout_id, "offered")
    assert len(offered) == 3
    with world.sessions.begin() as session:
        service.exclude(session, rollout_id, offered[0], actor="op", clock=world.clock)
    assert world.states(rollout_id)[offered[0]].state == "excluded" and world.assigned(offered[0]) is None
    with world.sessions.begin() as session:
        service.promote(session, rollout_id, actor="op", clock=world.clock)
    assert world.rollout(rollout_id).current_stage == 1
    with world.sessions.begin() as session, pytest.raises(Conflict):
        service.promote(session, rollout_id, actor="op", clock=world.clock)
    # A device belongs to at most one open rollout.
    with world.sessions.begin() as session, pytest.raises(Conflict, match="already belong"):
        service.create_rollout(
            session, release="2.0.0", selection={"all": True}, actor="op", clock=world.clock
        )
    with world.sessions.begin() as session:  # the excluded device is free again
        other = service.create_rollout(
            session, release="2.0.0", selection={"devices": [offered[0]]}, actor="op", clock=world.clock
        )
        other_id = other.id
    world.tick()
    with world.sessions.begin() as session:
        service.abort(session, rollout_id, actor="op", clock=world.clock)
    assert world.rollout(rollout_id).state == "aborted"
    assert all(world.assigned(d) is None for d in offered[1:])  # downloading devices stop at their next check
    with world.sessions.begin() as session, pytest.raises(Conflict):
        service.resume(session, rollout_id, actor="op", clock=world.clock)
    assert world.rollout(other_id).state == "active"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"stages": [50, 10, 100]}, "increasing"),
        ({"stages": [10, 50]}, "last stage must be 100"),
        ({"batch_size": 0}, "batch size"),
        ({"window": "1am-5am"}, "01:00-05:00"),
        ({"window": "01:00-05:00", "window_time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"failure_percent": 150}, "failure percent"),
        ({"rollback": "maybe"}, "rollback policy"),
        ({"soak_hours": 3}, "unknown rollout policy field"),
        ({"batch_size": "many"}, "batch_size"),
    ],
)
def test_bad_policies_are_refused_and_nothing_is_stored(make_world, policy, message):
    from csi_ota.errors import CsiOtaError

    world = make_world(devices=2)
    with pytest.raises(CsiOtaError, match=message), world.sessions.begin() as session:
        service.create_rollout(session, release="2.0.0", selection={"all": True}, policy=policy, actor="t")
    with world.sessions() as session:
        assert session.scalars(select(RolloutMembership)).all() == []


def test_behaviour_mix_is_exact_and_deterministic():
    mix = BehaviourMix.parse("healthy=70,fail_selftest=30")
    first = mix.assign(1000, seed="s")
    assert first.count("fail_selftest") == 300 and first.count("healthy") == 700
    assert first == mix.assign(1000, seed="s") and first != mix.assign(1000, seed="t")


def test_a_device_installing_the_release_when_the_halt_cancels_its_offer_is_rolled_back_too(make_world):
    """It took the offer, the halt cancelled it, and it installed 2.0.0 after: the rollback waits for it."""
    world, rollout_id, offered = offer_ten_at_once(make_world)
    installing, bad = offered[0], offered[1:3]
    world.report(installing, "downloading", version="1.0.0")  # took the offer: still on 1.0.0
    for device in bad:
        world.fail_selftest(device)
    world.tick()
    assert world.rollout(rollout_id).state == "rolling_back", "the rollback waits for the installing device"
    assert world.states(rollout_id)[installing].state == "rolling_back"
    rollback_release = world.rollout(rollout_id).rollback_release_id
    assert world.assigned(installing) == rollback_release
    world.install(installing)  # the cancelled offer's 2.0.0 lands after the halt
    world.tick()
    assert world.rollout(rollout_id).state == "rolling_back"
    world.install(installing, old="2.0.0", new="1.0.0")  # then the signed rollback
    world.tick()
    assert world.rollout(rollout_id).state == "rolled_back"
    assert world.states(rollout_id)[installing].state == "rolled_back"
