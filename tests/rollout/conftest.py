"""Fixtures for the rollout suite (engine on a real registry; fleets against a real controller)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine_world import EngineWorld  # noqa: E402


@pytest.fixture
def make_world(tmp_path):
    worlds = []

    def make(devices: int = 20, **kwargs) -> EngineWorld:
        world = EngineWorld(tmp_path / f"w{len(worlds)}", devices, **kwargs)
        worlds.append(world)
        return world

    (tmp_path / "w0").mkdir()
    for i in range(1, 4):
        (tmp_path / f"w{i}").mkdir()
    yield make
    for world in worlds:
        world.db.dispose()
