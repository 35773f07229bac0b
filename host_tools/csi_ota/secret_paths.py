"""Private keys never land where `git add .` would commit them.

Before a command writes a private key (release key, Secure Boot key, CA and server TLS
keys) it asks git whether the path is inside a work tree and, if so, whether it is
ignored. A key that git would pick up is refused (exit 2) unless the user forces it.
Outside any work tree, or without git installed, there is nothing to protect against.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from csi_ota.errors import CsiOtaError

GIT_TIMEOUT_S = 10


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path("/")


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
        env=env,
    )


def unignored_in_work_tree(path: str | os.PathLike[str]) -> Path | None:
    """The work tree's root when ``path`` is in a git work tree and git would not ignore it; else None."""
    if shutil.which("git") is None:
        return None
    target = Path(path).absolute()
    where = _existing_ancestor(target.parent)
    top = _git(where, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or not top.stdout.strip():
        return None  # not in a work tree (or inside .git itself)
    root = Path(top.stdout.strip())
    # check-ignore answers for paths that do not exist yet; a tracked file is never "ignored".
    ignored = _git(root, "check-ignore", "-q", "--", str(target))
    if ignored.returncode == 0:
        return None
    if ignored.returncode != 1:
        raise CsiOtaError(f"git check-ignore failed for {target}: {ignored.stderr.strip()}")
    return root


def refuse_unignored_secret(path: str | os.PathLike[str], what: str, *, force: bool = False) -> None:
    """Raise (exit 2) when ``path`` would be a committable file of a git work tree, unless ``force``."""
    if force:
        return
    root = unignored_in_work_tree(path)
    if root is None:
        return
    try:
        shown = Path(path).absolute().relative_to(root)
    except ValueError:
        shown = Path(path)
    raise CsiOtaError(
        f"refusing to write {what} {path}: it is inside the git work tree {root} and not ignored, "
        f"so `git add` would commit it. Write it outside the work tree, add {shown} to .gitignore, "
        "or pass --force"
    )
