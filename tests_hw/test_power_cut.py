"""Scenario 9: power cuts — at every flash operation on the simulator, at random points on hardware.

Whatever instant the power goes, the next boot must start a valid image (v1 or v2) and the
update must then complete or be retried until it does.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from csi_ota.partitions import default_layout
from csi_ota_hw.device import DeviceSession
from csi_ota_hw.power_cut import PowerCutSweep
from csi_ota_hw.releases import ReleaseKit, version_of
from csi_ota_hw.sim_env import SIM_TOKEN

SWEEP_BUDGET_S = 300.0


@pytest.mark.sim
def test_s9_power_cut_at_every_flash_operation(
    sim_binary: Path,
    release_kit: ReleaseKit,
    tmp_path: Path,
    pytestconfig: pytest.Config,
    record_property,
) -> None:
    started = time.monotonic()
    v1_image, v2_image = release_kit.image("v1"), release_kit.image("v2")
    sweep = PowerCutSweep(
        workdir=tmp_path / "sweep",
        binary=sim_binary,
        kit=release_kit,
        token=SIM_TOKEN,
        v1_image=v1_image,
        v2_image=v2_image,
    )
    total = sweep.count_ops()
    results = sweep.run_all(range(1, total + 1), workers=pytestconfig.getoption("sweep_workers"))
    elapsed = time.monotonic() - started
    summary = {
        "flash_ops_in_full_update": total,
        "cut_points_run": len(results),
        "failed": [r.__dict__ for r in results if not r.ok],
        "booted_after_cut": dict(Counter(r.booted_after_cut for r in results)),
        "outcomes": dict(Counter(r.outcome for r in results)),
        "elapsed_s": round(elapsed, 1),
    }
    (tmp_path / "power_cut_summary.json").write_text(json.dumps(summary, indent=2))
    record_property("flash_ops_in_full_update", total)
    record_property("cut_points_passed", sum(r.ok for r in results))

    assert not summary["failed"], json.dumps(summary["failed"][:5], indent=2)
    assert [r.cut_at for r in results] == list(range(1, total + 1))  # 100 % of the cut points
    ops = [r.cut_op for r in results]
    layout = default_layout()
    otadata = layout.find("otadata")
    ota_1 = layout.ota_slots()[1]
    otadata_sectors = {f"0x{otadata.offset + i * 0x1000:06x}" for i in (0, 1)}
    assert any(op.split()[1] in otadata_sectors for op in ops if op.startswith(("erase", "write")))
    assert any(op.startswith("write") and int(op.split()[1], 16) >= ota_1.offset for op in ops)
    # NVS writes (the OTA client's records) are cut points too: named nvs_set / nvs_erase by
    # the side-file store, or flash writes and erases inside the nvs partition.
    nvs = layout.find("nvs")

    def touches_nvs(op: str) -> bool:
        kind, address = op.split()[:2]
        if kind.startswith(("nvs_", "kv_")):
            return True
        return kind in ("write", "erase") and nvs.offset <= int(address, 16) < nvs.offset + nvs.size

    assert any(touches_nvs(op) for op in ops)
    # Cuts early in the update leave v1 booting, late ones v2: both must have happened.
    assert {r.booted_after_cut for r in results} == {version_of(v1_image), version_of(v2_image)}
    assert elapsed < SWEEP_BUDGET_S


@pytest.mark.sim
@pytest.mark.esp32s3
def test_s9_resets_at_random_points_always_boot_a_valid_image(session: DeviceSession) -> None:
    kit = session.kit
    v1, v2_image = version_of(kit.image("v1")), kit.image("v2")
    v2 = version_of(v2_image)
    assert session.wait_ready(v1)["version"] == v1
    session.server.behaviour.delay_per_chunk_s = 0.02
    session.offer(v2_image)
    rng = random.Random(9)
    for _ in range(4):
        session.check()
        time.sleep(rng.uniform(0.05, 0.6) * session.timeout_scale)
        session.device.reset()
        status = session.wait_ready()
        assert status["version"] in (v1, v2)
        if status["version"] == v2 and status["img_state"] == "valid":
            break
    for _ in range(3):  # then the update completes (or was already done)
        status = session.settle()
        if status["version"] == v2 and status["img_state"] == "valid":
            break
        if status["last_report"]["state"] == "rolled_back":
            session.offer(v2_image)  # the controller's answer to a reported rollback: a new release
        session.check()
        time.sleep(0.5 * session.timeout_scale)
    status = session.settle()
    assert (status["version"], status["img_state"]) == (v2, "valid")
    assert any(r["version"] == v2 and r["state"] == "success" for r in session.server.status_reports) or any(
        r.query.get("version") == v2 and r.query.get("state") == "valid" for r in session.server.requests
    )
