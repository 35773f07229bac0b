"""Private keys and the git work tree: refused where `git add .` would commit them (exit 2)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from csi_ota.cli import main

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def run_cli(*args: object) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
    return code, out.getvalue().decode(), " ".join(err.getvalue().decode().split())


@pytest.fixture()
def work_tree(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=30)
    (root / ".gitignore").write_text("/keys/\n/certs/\n")
    return root


def test_release_key_in_an_unignored_place_is_refused_and_nothing_is_written(work_tree: Path):
    code, _, err = run_cli("keys", "generate", work_tree / "release.pem")
    assert code == 2
    assert "refusing to write the private key" in err and "not ignored" in err and "--force" in err
    assert "release.pem to .gitignore" in err
    assert not (work_tree / "release.pem").exists() and not (work_tree / "release.pub.pem").exists()
    # A subdirectory that does not exist yet is judged by the rules too (and not created).
    code, _, err = run_cli("keys", "generate", work_tree / "secrets" / "release.pem")
    assert code == 2 and not (work_tree / "secrets").exists()


def test_ignored_place_outside_place_and_force_are_allowed(work_tree: Path, tmp_path: Path):
    code, _, err = run_cli("keys", "generate", work_tree / "keys" / "release.pem")
    assert code == 0, err
    assert (work_tree / "keys" / "release.pem").is_file()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=work_tree, capture_output=True, text=True, check=True
    )
    assert "keys" not in status.stdout
    code, _, err = run_cli("keys", "generate", tmp_path / "elsewhere" / "release.pem")
    assert code == 0, err
    code, _, err = run_cli("keys", "generate", work_tree / "release.pem", "--force")
    assert code == 0, err
    assert (work_tree / "release.pem").is_file()


def test_a_tracked_key_file_is_not_ignored(work_tree: Path):
    (work_tree / ".gitignore").write_text("*.pem\n")
    tracked = work_tree / "tracked.pem"
    tracked.write_text("placeholder\n")
    subprocess.run(["git", "add", "-f", "tracked.pem"], cwd=work_tree, check=True, timeout=30)
    code, _, err = run_cli("keys", "generate", tracked, "--force")  # --force: replace + allow
    assert code == 0, err
    code, _, err = run_cli("keys", "generate", work_tree / "new.pem")
    assert code == 0, err  # ignored by *.pem
    tracked.unlink()
    (work_tree / "tracked.pub.pem").unlink()
    code, _, err = run_cli("keys", "generate", tracked)
    assert code == 2 and "not ignored" in err  # in the index: `git commit -a` would take it


def test_certs_init_refuses_unignored_keys(work_tree: Path):
    code, _, err = run_cli("certs", "init", "--out", work_tree / "tls")
    assert code == 2 and "ca.key" in err
    assert not (work_tree / "tls").exists()
    code, _, err = run_cli("certs", "init", "--out", work_tree / "certs")
    assert code == 0, err
    assert (work_tree / "certs" / "ca.key").is_file() and (work_tree / "certs" / "server.key").is_file()


# Everything the README and docs flows write: ignored by the repository's .gitignore.
README_OUTPUTS = [
    "keys/release.pem",
    "keys/release.pub.pem",
    "keys/secure_boot.pem",
    "certs/ca.key",
    "certs/server.key",
    "fleet.json",
    "nvs.bin",
    "hil-release.pem",
    "ota-data/registry.db",
    "ota-data-pg/firmware/x.bin",
    "releases/csi_sensor-1.1.0.bin",
    "firmware/build_v1/csi_sensor.bin",
    "firmware/build/csi_sensor.bin",
    "firmware/hil.sdkconfig",
    "firmware/sdkconfig",
    ".venv/bin/python",
    "demo-out/keys/release.pem",
    "out/tests.junit.xml",
]


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the repository's git metadata")
def test_repository_gitignore_covers_the_readme_flows():
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *README_OUTPUTS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    not_ignored = [line.split("\t")[-1] for line in result.stdout.splitlines() if line.startswith("::")]
    assert not not_ignored, f"not ignored: {not_ignored}"
    assert len(result.stdout.splitlines()) == len(README_OUTPUTS)
    # Source that must stay tracked is not swallowed by those rules.
    kept = subprocess.run(
        ["git", "check-ignore", "--no-index", "firmware/sdkconfig.defaults", "tests/data/x.pem"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert kept.returncode == 1, kept.stdout
