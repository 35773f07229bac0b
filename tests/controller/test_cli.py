"""The `csi-ota` controller commands, in-process through CliRunner, against a running server."""

from __future__ import annotations

import json
import socket
import uuid

from click.testing import CliRunner

from csi_ota.cli import main
from services import free_port


def run_cli(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    runner = CliRunner(env=env)
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


def _auth(controller) -> list[str]:
    return ["--server", controller.management_url, "--token", controller.admin_token]


def test_device_lifecycle_through_the_cli(controller, make_release, tmp_path):
    auth = _auth(controller)
    device_id = f"cli{uuid.uuid4().hex[:8]}"
    code, out, _ = run_cli("devices", "register", device_id, "--tag", "clitag", *auth, "--json")
    assert code == 0
    token = json.loads(out)["token"]
    assert token.startswith("dev_")

    release = make_release()
    (tmp_path / "app.bin").write_bytes(release.image)
    (tmp_path / "app.manifest").write_bytes(release.manifest)
    code, out, _ = run_cli(
        "releases", "upload", tmp_path / "app.bin", tmp_path / "app.manifest", *auth, "--json"
    )
    assert code == 0 and json.loads(out)["sha256"] == release.sha256

    assert run_cli("devices", "assign", device_id, release.version, *auth)[0] == 0
    assert run_cli("devices", "config", device_id, "--set", "check_interval_sec=300", *auth)[0] == 0
    assert run_cli("devices", "tag", device_id, "--add", "second", *auth)[0] == 0
    with controller.device_client(token) as device:
        offer = device.get("/api/ota/version", params={"device_id": device_id, "version": "0.0.1"})
        assert offer.content == release.manifest
        assert offer.headers["x-device-config"] == "check_interval_sec=300"
        device.post(
            "/api/ota/status",
            json={"device_id": device_id, "seq": 4, "state": "success", "version": release.version},
        )

    code, out, _ = run_cli("devices", "show", device_id, *auth, "--json")
    shown = json.loads(out)
    assert (shown["tags"], shown["assigned_version"], shown["last_ota_state"]) == (
        ["clitag", "second"],
        release.version,
        "success",
    )
    code, out, _ = run_cli("devices", "list", "--tag", "clitag", *auth, "--json")
    assert [d["device_id"] for d in json.loads(out)] == [device_id]
    code, out, _ = run_cli("devices", "list", "--tag", "clitag", *auth)
    assert code == 0 and device_id in out  # the table
    code, out, _ = run_cli("devices", "reports", device_id, *auth, "--json")
    assert [r["seq"] for r in json.loads(out)] == [4]
    code, out, _ = run_cli("releases", "list", *auth, "--json")
    assert release.version in [r["version"] for r in json.loads(out)]
    code, out, _ = run_cli("releases", "show", release.version, *auth, "--json")
    assert json.loads(out)["manifest"].encode() == release.manifest
    code, out, _ = run_cli(
        "devices", "batch", "config", "--tag", "clitag", "--set", "auto_update_enabled=0", *auth, "--json"
    )
    assert json.loads(out)["matched"] == 1

    code, out, _ = run_cli("devices", "rotate-token", device_id, *auth, "--json")
    new_token = json.loads(out)["token"]
    assert new_token != token
    assert run_cli("devices", "revoke", device_id, *auth)[0] == 0
    with controller.device_client(new_token) as device:
        assert device.get("/api/ota/version").status_code == 401
    assert run_cli("devices", "decommission", device_id, *auth)[0] == 0
    assert run_cli("releases", "retire", release.version, *auth)[0] == 0

    out_file = tmp_path / "audit.jsonl"
    code, _, _ = run_cli("audit", "export", "--target", f"device:{device_id}", "--out", out_file, *auth)
    actions = [json.loads(line)["action"] for line in out_file.read_text().splitlines()]
    assert code == 0
    assert (
        actions[0] == "device.register"
        and "device.ota_state" in actions
        and actions[-1] == "device.decommission"
    )
    code, out, _ = run_cli("audit", "list", "--action", "release.retire", *auth, "--json")
    assert any(e["details"]["version"] == release.version for e in json.loads(out))


def test_admin_commands(controller):
    auth = _auth(controller)
    name = f"ops{uuid.uuid4().hex[:6]}"
    code, out, _ = run_cli("admin", "create", name, "--role", "operator", *auth, "--json")
    token = json.loads(out)["token"]
    code, out, _ = run_cli("admin", "whoami", "--server", controller.management_url, "--token", token)
    assert code == 0 and f"{name} (operator)" in out
    code, out, _ = run_cli("admin", "list", *auth, "--json")
    assert {"name": name, "role": "operator", "disabled": False} in json.loads(out)
    assert run_cli("admin", "revoke", name, *auth)[0] == 0
    code, _, err = run_cli("admin", "whoami", "--server", controller.management_url, "--token", token)
    assert code == 1 and "401" in err


def test_cli_errors_and_exit_codes(controller, make_release, tmp_path):
    auth = _auth(controller)
    code, _, err = run_cli("devices", "register", "../bad", *auth)
    assert code == 2 and "422" in err
    code, _, err = run_cli("devices", "show", "nobody-here", *auth)
    assert code == 2 and "no device" in err
    code, _, err = run_cli(
        "devices", "list", "--server", controller.management_url, env={"CSI_OTA_TOKEN": ""}
    )
    assert code == 2 and "no admin token" in err
    release = make_release()
    (tmp_path / "app.bin").write_bytes(release.image[:-1])
    (tmp_path / "app.manifest").write_bytes(release.manifest)
    code, _, err = run_cli("releases", "upload", tmp_path / "app.bin", tmp_path / "app.manifest", *auth)
    assert code == 1 and "differs from the manifest" in err  # a verification that ran and failed
    code, _, err = run_cli("devices", "list", "--server", "http://127.0.0.1:9", "--token", "x")
    assert code == 1 and "cannot reach" in err
    code, _, err = run_cli("devices", "config", "x", "--tag", "y", "--set", "a=b", *auth)
    assert code == 2 and "not both" in err


def test_serve_validates_configuration_before_listening(tmp_path):
    base = ["serve", "--data-dir", tmp_path, "--insecure-http"]
    cases = [
        ({"FIRMWARE_MAX_SIZE": "big"}, "FIRMWARE_MAX_SIZE='big': not an integer"),
        ({"FIRMWARE_MAX_SIZE": "10"}, "FIRMWARE_MAX_SIZE=10: must be between"),
        ({"UPDATE_STRATEGY": "yolo"}, "UPDATE_STRATEGY='yolo': must be one of"),
        ({"HEALTH_CHECK_INTERVAL_SEC": "0"}, "HEALTH_CHECK_INTERVAL_SEC=0"),
        ({"DEVICE_REGISTRY_DB": "mysql://x/y"}, "unsupported database 'mysql'"),
        ({"DEVICE_REGISTRY_DB": "sqlite://"}, "SQLite needs a file path"),
        ({"TRUSTED_KEYS_DIR": str(tmp_path / "missing")}, "not a directory"),
    ]
    for env, message in cases:
        code, _, err = run_cli(*base, env=env)
        assert code == 2, (env, err)
        assert message in err, (env, err)
    code, _, err = run_cli("serve", "--data-dir", tmp_path)
    assert code == 2 and "--insecure-http" in err
    code, _, err = run_cli(*base, "--device-port", "9000", "--management-port", "9000")
    assert code == 2 and "must differ" in err
    assert not (tmp_path / "registry.db").exists()  # nothing created before the configuration passed
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run_cli(
            *base, "--device-port", taken.getsockname()[1], "--management-port", free_port()
        )
    assert code == 1 and "cannot listen on" in err


def test_openapi_command_prints_the_spec(tmp_path):
    code, _, _ = run_cli("openapi", "--out", tmp_path / "spec.json")
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert code == 0
    assert spec["paths"]["/api/ota/status"]["servers"][0]["url"].endswith(":8080")
    assert "/api/releases" in spec["paths"]
