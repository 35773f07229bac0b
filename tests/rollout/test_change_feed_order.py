"""The hot path's device cache sees every committed registry change, in whatever order they commit.

Change ids are taken when a row is inserted but become visible when its transaction commits.
A rollout engine tick is a long transaction (it assigns devices, signs a rollback release): on
PostgreSQL a short transaction started later commits a higher id first. A cache that only reads
ids above the highest it has seen skipped the tick's changes for good, and devices were never
offered the signed rollback (issue 11: "984 of 1,000 devices back, 16 stay on 2.0.0").
The same holds for a cache loaded while such a transaction is in flight (a controller starting
beside a running engine).
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from csi_ota.controller import registry
from csi_ota.controller.change_feed import install_triggers
from csi_ota.controller.db import make_engine, session_factory, session_scope, upgrade_database
from csi_ota.controller.device_cache import DeviceCache
from csi_ota.controller.models import Device
from services import postgres_server


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def registry_with_two_devices(url: str):
    """A migrated registry with change triggers and the devices "early" and "late"."""
    upgrade_database(url)
    engine = make_engine(url, pool_size=4)
    install_triggers(engine)
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        for device_id in ("early", "late"):
            registry.register_device(session, device_id, tags=[], actor="test")
    return engine, sessions


def test_a_change_that_commits_after_a_later_one_still_reaches_the_cache(tmp_path, postgres):
    url = postgres.create_database("holes")
    engine, sessions = registry_with_two_devices(url)
    try:
        cache = DeviceCache(engine, tmp_path / "firmware")
        cache.load()
        long_tick = engine.connect()  # the engine's tick: takes its change id first ...
        transaction = long_tick.begin()
        long_tick.execute(
            update(Device).where(Device.id == "early").values(assigned_release_id=None, tags=["a"])
        )
        with session_scope(sessions) as session:  # ... a short transaction commits a later id
            session.execute(update(Device).where(Device.id == "late").values(tags=["b"]))
        cache.catch_up()
        assert cache.by_id["late"].tags == ["b"]
        assert cache.by_id["early"].tags == []  # not committed yet
        transaction.commit()  # ... and the tick commits after it
        long_tick.close()
        cache.catch_up()
        assert cache.by_id["early"].tags == ["a"]  # not skipped
    finally:
        engine.dispose()


def test_a_change_in_flight_while_the_cache_loads_still_reaches_it(tmp_path, postgres):
    url = postgres.create_database("load_holes")
    engine, sessions = registry_with_two_devices(url)
    try:
        long_tick = engine.connect()  # an engine tick in flight takes its change id ...
        transaction = long_tick.begin()
        long_tick.execute(update(Device).where(Device.id == "early").values(tags=["a"]))
        with session_scope(sessions) as session:  # ... a later id commits first ...
            session.execute(update(Device).where(Device.id == "late").values(tags=["b"]))
        cache = DeviceCache(engine, tmp_path / "firmware")
        cache.load()  # ... and a controller starts now
        assert cache.by_id["late"].tags == ["b"] and cache.by_id["early"].tags == []
        transaction.commit()
        long_tick.close()
        cache.catch_up()
        assert cache.by_id["early"].tags == ["a"]  # not skipped (old code: [] for good)
        assert not cache.change_holes  # found: no longer looked for
    finally:
        engine.dispose()
