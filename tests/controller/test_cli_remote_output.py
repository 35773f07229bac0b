"""What the controller commands print when piped or captured (CI logs): whole values, paging hints,
`remote` vs the old names, and the server's environment variable in --help."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from csi_ota.cli import main


def run_cli(*args: object) -> tuple[int, str, str]:
    runner = CliRunner()  # not a terminal, as in a pipe or a CI log
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), err.getvalue().decode()


def _auth(controller) -> list[str]:
    return ["--server", controller.management_url, "--token", controller.admin_token]


@pytest.mark.parametrize("controller", ["sqlite"], indirect=True)
def test_releases_table_shows_whole_values_and_remote_is_the_same_command(controller, make_release, tmp_path):
    release = make_release()
    (tmp_path / "app.bin").write_bytes(release.image)
    (tmp_path / "app.manifest").write_bytes(release.manifest)
    code, out, err = run_cli(
        "remote", "releases", "upload", tmp_path / "app.bin", tmp_path / "app.manifest", *_auth(controller)
    )
    assert code == 0, err
    assert release.sha256 in out  # the full 64 hex digits on one line

    code, table, err = run_cli("remote", "releases", "list", *_auth(controller))
    assert code == 0, err
    assert "…" not in table
    row = next(line for line in table.splitlines() if f" {release.version} " in line)
    assert "csi_sensor" in row  # was "proje…" at 80 columns
    code, shown, _ = run_cli("remote", "releases", "show", release.version, *_auth(controller))
    assert code == 0 and "…" not in shown
    assert any(release.sha256 in line for line in shown.splitlines())
    # The old name is a (hidden) alias with the same output.
    code, old, _ = run_cli("releases", "list", *_auth(controller))
    assert code == 0 and old == table
    code, old_json, _ = run_cli("releases", "list", *_auth(controller), "--json")
    assert release.version in [r["version"] for r in json.loads(old_json)]


@pytest.mark.parametrize("controller", ["sqlite"], indirect=True)
def test_devices_list_says_when_it_shows_only_a_page(controller):
    tag = f"page{uuid.uuid4().hex[:8]}"
    ids = sorted(f"pg{uuid.uuid4().hex[:10]}" for _ in range(5))
    for device_id in ids:
        assert run_cli("remote", "devices", "register", device_id, "--tag", tag, *_auth(controller))[0] == 0

    code, out, err = run_cli("devices", "list", "--tag", tag, "--limit", 2, *_auth(controller))
    assert code == 0
    assert "2 of 5 devices" in out
    assert "showing 2 of 5 devices (1-2); use --limit/--offset" in err and "--offset 2 --limit 2" in err
    code, out, err = run_cli("devices", "list", "--tag", tag, "--limit", 2, "--offset", 4, *_auth(controller))
    assert code == 0 and ids[4] in out and ids[0] not in out
    assert "showing 1 of 5 devices (5-5)" in " ".join(err.split()) and "next page" not in err
    code, out, err = run_cli("devices", "list", "--tag", tag, *_auth(controller), "--json")
    assert [d["device_id"] for d in json.loads(out)] == ids and err == ""  # whole list: no hint
    code, out, err = run_cli("devices", "list", "--tag", tag, "--limit", 3, *_auth(controller), "--json")
    assert len(json.loads(out)) == 3 and "showing 3 of 5" in err  # stdout stays JSON


@pytest.mark.parametrize("controller", ["sqlite"], indirect=True)
def test_audit_list_hints_at_the_next_page(controller):
    code, out, err = run_cli("audit", "list", "--limit", 1, *_auth(controller), "--json")
    assert code == 0
    (entry,) = json.loads(out)
    assert f"--after-id {entry['id']}" in err
    code, out, _ = run_cli(
        "audit", "list", "--limit", 1, "--after-id", entry["id"], *_auth(controller), "--json"
    )
    assert [e["id"] for e in json.loads(out)] != [entry["id"]]


def test_help_names_the_server_variable_and_local_vs_remote():
    code, out, _ = run_cli("remote", "devices", "list", "--help")
    assert code == 0 and "CSI_OTA_SERVER" in out
    code, out, _ = run_cli("--help")
    assert "CSI_OTA_SERVER" in out and "remote" in out
    listed = [line.split()[0] for line in out[out.index("Commands:") :].splitlines()[1:] if line.strip()]
    assert "release" in listed and "remote" in listed
    assert "releases" not in listed  # local vs remote no longer differ by one letter
