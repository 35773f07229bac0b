"""A rollout over simulated devices and virtual ESP32-S3 processes (csi-ota-sim) together.

The virtual devices run the real OTA core: they download the release, reboot,
pass the self-test, mark it valid and heart-beat (firmware/main/heartbeat.c on the virtual board),
so the rollout engine counts them like every other device.
"""

from __future__ import annotations

from rollout_harness import create_rollout, fleet_config, rollout_detail, start_world, stop_world

from csi_ota.fleet.runner import run_fleet

SCALE = 1800.0  # 30 min virtual per real second
SIMULATED = 20
VIRTUAL = 2
# Real seconds between checks and heartbeats: a device has two check intervals to take an offer,
# so they must be long against request latency on a busy machine.
CHECK_REAL_S = 3
HEARTBEAT_REAL_S = 6


def test_rollout_completes_over_simulated_and_virtual_esp32_devices(tmp_path):
    world = start_world(tmp_path, devices=SIMULATED + VIRTUAL, scale=SCALE, prefix="mix")
    try:
        policy = {
            "stages": [50, 100],
            "soak_s": 3600,
            "batch_size": SIMULATED + VIRTUAL,
            "health_timeout_s": int(30 * SCALE),
            "max_retries": 1,
            # The fleet's intervals, for devices that have not reported theirs in a heartbeat yet.
            "check_interval_s": int(CHECK_REAL_S * SCALE),
            "heartbeat_interval_s": int(HEARTBEAT_REAL_S * SCALE),
        }
        rollout = create_rollout(world, "2.0.0", policy)
        config = fleet_config(
            world,
            rollout_id=rollout["id"],
            virtual_esp32=VIRTUAL,
            check_interval_s=CHECK_REAL_S * SCALE,
            heartbeat_interval_s=HEARTBEAT_REAL_S * SCALE,
            duration_s=120,
        )
        _, summary = run_fleet(config)
        detail = rollout_detail(world, rollout["id"])
        virtual_ids = [device_id for device_id, _ in world.credentials[-VIRTUAL:]]
        reports = {}
        with world.management() as client:
            for device_id in virtual_ids:
                response = client.get(f"/api/devices/{device_id}/reports")
                assert response.status_code == 200, response.text
                reports[device_id] = response.json()
    finally:
        stop_world(world)
    assert detail["state"] == "completed", (detail["halt_reason"], summary)
    assert detail["counts"] == {"succeeded": SIMULATED + VIRTUAL}
    assert summary["versions"] == {"2.0.0": SIMULATED}
    virtual = summary["virtual_esp32"]
    assert [v["device_id"] for v in virtual] == virtual_ids
    for entry in virtual:
        assert (entry["version"], entry["outcome"]) == ("2.0.0", "success"), entry
        assert not entry["running"], "stopped at the end of the run"
    for device_id, device_reports in reports.items():
        assert any((r["state"], r["target_version"]) == ("success", "2.0.0") for r in device_reports), (
            device_id,
            device_reports,
        )
