"""M3: what a device sends is shown literally by the CLI: no Rich markup, no terminal escape sequences.

Before: a heartbeat with ``version: "[/]"`` crashed `csi-ota devices list` and `devices show`
(Rich MarkupError), and `devices reports` printed a device's escape sequences raw.
"""

from __future__ import annotations

import os
import subprocess
import sys

from controller_helpers import new_device
from rich.console import Console

from csi_ota.cli.management_common import kv_table, rows_table

MARKUP_VERSIONS = ["[/]", "[bold]x[/bold]", "[link=http://evil]y"]


def _cli(controller, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CSI_OTA_TOKEN=controller.admin_token, COLUMNS="250", TERM="xterm-256color")
    return subprocess.run(
        [sys.executable, "-m", "csi_ota", *args, "--server", controller.management_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_markup_in_a_heartbeat_version_is_printed_literally(sqlite_controller):
    devices = []
    for version in MARKUP_VERSIONS:
        device_id, token = new_device(sqlite_controller, tags=["m3"])
        with sqlite_controller.device_client(token) as client:
            response = client.post(f"/api/devices/{device_id}/heartbeat", json={"version": version})
            assert response.status_code == 200, response.text
        devices.append((device_id, version))
    listed = _cli(sqlite_controller, "devices", "list", "--tag", "m3")
    assert listed.returncode == 0, listed.stderr
    for device_id, version in devices:
        assert version in listed.stdout, (version, listed.stdout)
        shown = _cli(sqlite_controller, "devices", "show", device_id)
        assert shown.returncode == 0, shown.stderr
        assert version in shown.stdout


def test_escape_sequences_never_reach_the_terminal(sqlite_controller):
    device_id, token = new_device(sqlite_controller)
    hostile = "\x1b[2J\x1b]0;pwned\x07"
    with sqlite_controller.device_client(token) as client:
        ok = client.post(
            "/api/ota/status",
            json={"device_id": device_id, "seq": 1, "state": "downloading", "version": "1.0.0"},
        )
        assert ok.status_code == 200, ok.text
        client.post(
            "/api/ota/status",
            json={"device_id": device_id, "seq": 2, "state": "failed", "version": hostile},
        )
        client.post(f"/api/devices/{device_id}/heartbeat", json={"version": hostile})
    for command in (("devices", "reports", device_id), ("devices", "show", device_id)):
        result = _cli(sqlite_controller, *command)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, repr(result.stdout)


def test_tables_show_control_characters_as_escapes():
    console = Console(record=True, width=200, force_terminal=False)
    console.print(rows_table("t", [{"version": "a\x1b[31mb\x9b", "state": "[/]"}], ["version", "state"]))
    console.print(kv_table("k", {"version": "\x00x\x7f"}))
    text = console.export_text()
    assert "a\\x1b[31mb\\x9b" in text and "[/]" in text and "\\x00x\\x7f" in text
    assert "\x1b" not in text
