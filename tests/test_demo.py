"""The README's first Quick-start command: `csi-ota demo` end to end."""

from __future__ import annotations

import json

from csi_ota.cli import main
from csi_ota.sim.flashfile import read_otadata


def test_demo_updates_the_virtual_device_to_v2(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    steps = [s["step"] for s in result["steps"]]
    assert steps[:4] == ["partitions", "images", "budget", "release"]
    assert "update" in steps
    assert result["device"]["device_id"] == "csi_sensor_001"
    assert set(result["logs"]) == {"device", "controller"}
    assert "ota: report" in (out / "device.log").read_text()
    device = result["device"]  # the controller's view tells the truth: valid, healthy, on ota_1
    assert (device["version"], device["ota_state"], device["health"], device["slot"]) == (
        "2.0.0",
        "valid",
        "healthy",
        1,
    )
    states = [r["state"] for r in result["reports"]]
    assert states[0] == "success"
    assert {"downloading", "downloaded", "pending_verify"} <= set(states)
    # The flash file agrees with the controller: v2's slot is the active, VALID entry.
    entries = [e for e in read_otadata(out / "device-flash.bin") if e.crc_ok]
    active = max(entries, key=lambda e: e.seq)
    assert (active.seq, active.state_name) == (2, "valid")  # seq 2 → ota_1


def test_demo_names_its_logs_and_the_next_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "here", "--no-device"]) == 0
    out = capsys.readouterr().out
    assert "Everything the demo made is in here/" in out
    # No device and no controller ran: no logs to point at, and no flash file to inspect.
    assert "device.log" not in out and "sim otadata" not in out
    lines = out[out.index("Next:") :].splitlines()
    assert "csi-ota image info here/releases/csi_sensor-2.0.0.bin" in lines[1]
    assert (tmp_path / "here" / "releases" / "csi_sensor-2.0.0.bin").is_file()
    assert "./scripts/test.sh" in lines[2]


def test_demo_refuses_to_wipe_a_foreign_directory(tmp_path, capsys):
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(foreign), "--no-device"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert "not a csi-ota demo directory" in capsys.readouterr().err
