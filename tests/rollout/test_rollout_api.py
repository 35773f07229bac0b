"""`csi-ota rollout …` and /api/rollouts against a real controller: controls, roles, bad input."""

from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner
from rollout_harness import create_rollout, fleet_config, rollout_detail, start_world, stop_world

from csi_ota.cli import cli
from csi_ota.errors import CsiOtaError
from csi_ota.fleet.runner import Fleet

DEVICES = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = start_world(tmp_path_factory.mktemp("api"), devices=DEVICES, scale=1.0, prefix="api")
    yield world
    stop_world(world)


def main(world, *args: str) -> tuple[int, str]:
    """Runs `csi-ota ARGS` with CliRunner; a CsiOtaError maps to its exit code, as csi_ota.cli.main does."""
    env = {"CSI_OTA_SERVER": world.server.management_url, "CSI_OTA_TOKEN": world.server.admin_token}
    result = CliRunner().invoke(cli, list(args), env=env)
    if isinstance(result.exception, CsiOtaError):
        return result.exception.exit_code, result.output + result.exception.message
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def rollout_count(world) -> int:
    with world.management() as client:
        return len(client.get("/api/rollouts").json())


def test_cli_creates_shows_and_controls_a_rollout(world):
    ids = [f"--device=api{i:05d}" for i in range(4)]
    code, out = main(world, "rollout", "create", "--release", "2.0.0", *ids, "--stages", "50,100",
                     "--soak", "24h", "--batch-size", "1", "--window", "01:00-05:00", "--time-zone",
                     "America/New_York", "--previous-release", "1.0.0", "--json")  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    rollout_id = created["id"]
    assert created["devices"] == 4 and [s["percent"] for s in created["stages"]] == [50, 100]
    assert (
        created["policy"]["soak_s"] == 86400
        and created["policy"]["window"]["time_zone"] == "America/New_York"
    )
    code, out = main(world, "rollout", "list", "--json")
    assert code == 0 and rollout_id in [r["id"] for r in json.loads(out)]
    code, out = main(world, "rollout", "show", str(rollout_id))
    assert code == 0 and "gate decisions" in out and "stages" in out and "created" in out
    for action, state in (("pause", "paused"), ("resume", "active"), ("promote", "active")):
        code, out = main(world, "rollout", action, str(rollout_id), "--json")
        assert code == 0 and json.loads(out)["state"] == state, out
    assert rollout_detail(world, rollout_id)["current_stage"] == 2
    code, out = main(world, "rollout", "exclude", str(rollout_id), "api00001", "--json")
    assert code == 0 and json.loads(out)["state"] == "excluded"
    code, out = main(world, "rollout", "abort", str(rollout_id))
    assert code == 0 and "aborted" in out
    code, out = main(world, "rollout", "pause", str(rollout_id))
    assert code == 2 and "cannot pause" in out  # 409 from the server, shown with its reason
    kinds = [e["kind"] for e in rollout_detail(world, rollout_id)["events"]]
    assert kinds == [
        "created",
        "operator",
        "operator",
        "gate",
        "operator",
        "operator",
    ]  # pause resume promote exclude abort
    with world.management() as client:
        audit = client.get("/api/audit", params={"action": "rollout.abort"}).json()
    assert any(entry["target"] == f"rollout:{rollout_id}" for entry in audit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release", "2.0.0"], "exactly one of --all, --tag, --device"),
        (["--release", "9.9.9", "--all"], "no release"),
        (["--release", "2.0.0", "--all", "--soak", "3 weeks"], "not a duration"),
        (["--release", "2.0.0", "--all", "--stages", "10,fifty"], "comma-separated"),
        (["--release", "2.0.0", "--all", "--window", "late"], "01:00-05:00"),
        (["--release", "2.0.0", "--device", "nosuchdevice"], "unknown device"),
        (["--release", "2.0.0", "--device", "api00000"], "no previous release is known"),
    ],
)
def test_cli_refuses_bad_input_with_exit_code_2(world, args, message):
    before = rollout_count(world)
    code, out = main(world, "rollout", "create", *args)
    assert code == 2 and message in out, out
    assert rollout_count(world) == before


def test_http_api_answers_bad_requests_with_4xx_and_stores_nothing(world):
    before = rollout_count(world)
    with world.management() as client:
        assert client.post(
            "/api/rollouts", content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code in (400, 422)
        assert client.post("/api/rollouts", json={"release": "2.0.0"}).status_code == 422  # no selection
        assert (
            client.post(
                "/api/rollouts", json={"release": "2.0.0", "selection": {"all": True}, "surprise": 1}
            ).status_code
            == 422
        )
        bad_policy = client.post(
            "/api/rollouts", json={"release": "2.0.0", "selection": {"all": True}, "policy": {"stages": [10]}}
        )
        assert bad_policy.status_code == 422 and "100" in bad_policy.json()["detail"]
        assert (
            client.post("/api/rollouts", json={"release": "7.7.7", "selection": {"all": True}}).status_code
            == 404
        )
        assert (
            client.post(
                "/api/rollouts", json={"release": "2.0.0", "selection": {"all": True, "tag": "x"}}
            ).status_code
            == 422
        )
        assert client.get("/api/rollouts/999999").status_code == 404
        assert client.post("/api/rollouts/999999/pause").status_code == 404
        assert client.get("/api/rollouts", params={"state": "sleeping"}).status_code == 422
        viewer = client.post("/api/admin/users", json={"name": "watcher", "role": "viewer"}).json()["token"]
    import httpx

    url = world.server.management_url
    assert httpx.get(f"{url}/api/rollouts").status_code == 401
    assert httpx.get(f"{url}/api/rollouts", headers={"Authorization": "Bearer nope"}).status_code == 401
    device_token = world.credentials[0][1]  # the management port refuses device tokens
    assert (
        httpx.get(f"{url}/api/rollouts", headers={"Authorization": f"Bearer {device_token}"}).status_code
        == 401
    )
    viewer_headers = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(f"{url}/api/rollouts", headers=viewer_headers).status_code == 200
    forbidden = httpx.post(
        f"{url}/api/rollouts", headers=viewer_headers, json={"release": "2.0.0", "selection": {"all": True}}
    )
    assert forbidden.status_code == 403
    assert rollout_count(world) == before


def test_abort_stops_devices_that_are_downloading(world):
    """Slow links: the abort withdraws the offer and the devices give up at their next check."""
    targets = [f"api{i:05d}" for i in range(8, 12)]
    rollout = create_rollout(
        world, "2.0.0", {"stages": [100], "batch_size": 4}, selection={"devices": targets}
    )
    credentials = [c for c in world.credentials if c[0] in targets]
    config = fleet_config(
        world, credentials=credentials, behaviours="slow_link", check_interval_s=1, heartbeat_interval_s=5,
        duration_s=25, slow_link_bytes_per_s=2000,
    )  # fmt: skip
    fleet = Fleet(config)
    thread = threading.Thread(target=lambda: __import__("asyncio").run(fleet.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while fleet.stats.downloads_in_flight < len(targets) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.stats.downloads_in_flight == len(targets)
    code, out = main(world, "rollout", "abort", str(rollout["id"]))
    assert code == 0, out
    deadline = time.monotonic() + 10
    while fleet.stats.downloads_in_flight and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.stats.downloads_in_flight == 0  # stopped well before a 24 kB image at 2 kB/s finishes
    fleet.stop.set()
    thread.join(15)
    assert all(d.version == "1.0.0" and "failed:aborted" in d.history for d in fleet.devices)
