"""L2: the controller's MQTT user names cannot be registered as devices.
L5: the CLI reads an admin token from a file (never needs argv); docs/operations.md never puts one in argv.

Before: registering ``ota-controller`` succeeded and made `csi-ota mqtt-acl` fail for the whole fleet;
the CLI took the admin token only from --token (visible in ps) or the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services import start_controller

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", ["ota-controller", "OTA-Controller"])
def test_default_controller_user_is_reserved(sqlite_controller, name):
    with sqlite_controller.management_client() as mgmt:
        response = mgmt.post("/api/devices", json={"device_id": name})
        assert response.status_code == 422, response.text
        assert "reserved" in response.json()["detail"]
        assert mgmt.get(f"/api/devices/{name}").status_code == 404


def test_configured_mqtt_user_is_reserved(tmp_path):
    # serve --mqtt-username names the controller's broker account: that name is reserved too.
    server = start_controller(
        tmp_path / "data", mqtt=("127.0.0.1", 1), mqtt_username="fleet-ctl", mqtt_password="x"
    )
    try:
        with server.management_client() as mgmt:
            assert mgmt.post("/api/devices", json={"device_id": "fleet-ctl"}).status_code == 422
            assert mgmt.post("/api/devices", json={"device_id": "fleet-ctl-2"}).status_code == 201
    finally:
        server.stop()


def test_cli_reads_the_admin_token_from_a_file(sqlite_controller, tmp_path):
    token_file = tmp_path / "admin.token"
    token_file.write_text(sqlite_controller.admin_token + "\n")
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSI_OTA_")}
    argv = [sys.executable, "-m", "csi_ota", "admin", "whoami", "--server", sqlite_controller.management_url]
    by_option = subprocess.run(
        [*argv, "--token-file", str(token_file)], capture_output=True, text=True, env=env, timeout=60
    )
    assert by_option.returncode == 0, by_option.stderr
    assert "admin" in by_option.stdout
    by_env = subprocess.run(
        argv, capture_output=True, text=True, env=dict(env, CSI_OTA_TOKEN_FILE=str(token_file)), timeout=60
    )
    assert by_env.returncode == 0, by_env.stderr
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    refused = subprocess.run(
        [*argv, "--token-file", str(empty)], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 2 and "empty token file" in refused.stderr


def test_operations_doc_never_puts_a_token_in_argv():
    text = (DOCS / "operations.md").read_text()
    assert not re.search(r"--token[ =]", text), "pass admin tokens via CSI_OTA_TOKEN or --token-file"
    assert "--token-file" in text
