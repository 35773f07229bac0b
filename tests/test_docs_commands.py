"""The shell blocks of README.md and docs/*.md run as written on a fresh clone, in order.

Marker convention (docs/contributing-docs.md): the line before every ```sh / ```bash / ```shell
fence is an HTML comment (invisible on GitHub) that says what this test does with the block:

    <!-- docs-test: run -->                    run it (no board, no ESP-IDF, no network)
    <!-- docs-test: skip: <reason> -->        do not run it; the reason says why (board, idf.py, …)

An unmarked block fails the test, so every new block is a decision. The runnable blocks of one
file run in order in one `bash -euo pipefail` session, in a fresh copy of the repository's
tracked files (a git repository of its own), with `csi-ota` on PATH as after
`. .venv/bin/activate`. Afterwards `git status` in that copy must show nothing: whatever the
commands wrote (keys, certificates, NVS images, outputs) is git-ignored.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCE = re.compile(r"^```(sh|bash|shell)\s*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(run|skip:\s*(?P<reason>\S.*?))\s*-->\s*$")
BLOCK_TIMEOUT_S = 120


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    text: str
    run: bool
    skip_reason: str | None

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def shell_blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The shell blocks of ``path`` and the places of unmarked ones."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, unmarked = [], []
    index = 0
    while index < len(lines):
        if SHELL_FENCE.match(lines[index]):
            start = index
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(previous.strip())
            text = "\n".join(lines[start + 1 : end]) + "\n"
            if marker is None:
                unmarked.append(f"{path.relative_to(REPO)}:{start + 1}")
            else:
                run = marker.group(1) == "run"
                blocks.append(Block(path, start + 1, text, run, None if run else marker.group("reason")))
            index = end + 1
        else:
            index += 1
    return blocks, unmarked


def test_every_shell_block_is_marked_run_or_skip_with_a_reason():
    unmarked = [where for path in DOC_FILES for where in shell_blocks(path)[1]]
    assert not unmarked, (
        "shell blocks without a <!-- docs-test: run --> or <!-- docs-test: skip: reason --> line "
        f"before the fence: {unmarked}"
    )
    skipped = [b for path in DOC_FILES for b in shell_blocks(path)[0] if not b.run]
    assert all(len(b.skip_reason or "") >= 10 for b in skipped), [b.where() for b in skipped]


def _fresh_copy(destination: Path) -> Path:
    """The repository's tracked files (as in a fresh clone, with this working tree's edits)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "fresh clone"]):
        subprocess.run(argv, cwd=destination, check=True, timeout=120, env=env, capture_output=True)
    return destination


def _csi_ota_on_path(bin_dir: Path) -> Path:
    """`csi-ota` as `. .venv/bin/activate` provides it: the package under test."""
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "csi-ota"
    pythonpath = os.environ.get("PYTHONPATH", "")
    shim.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{REPO / 'host_tools'}'{':' + pythonpath if pythonpath else ''} "
        f'exec "{sys.executable}" -m csi_ota "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return bin_dir


RUNNABLE = [
    pytest.param(path, id=str(path.relative_to(REPO)))
    for path in DOC_FILES
    if any(b.run for b in shell_blocks(path)[0])
]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("doc", RUNNABLE)
def test_runnable_blocks_run_in_order_on_a_fresh_clone_and_leave_git_clean(doc: Path, tmp_path: Path):
    clone = _fresh_copy(tmp_path / "clone")
    bin_dir = _csi_ota_on_path(tmp_path / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSI_OTA_", "GIT_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path / "home")
    blocks = [b for b in shell_blocks(doc)[0] if b.run]
    script = "set -euo pipefail\n" + "".join(f"echo '>>> {b.where()}'\n{b.text}" for b in blocks)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S * len(blocks),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert status == "", f"the commands of {doc.name} left files git would commit:\n{status}"
