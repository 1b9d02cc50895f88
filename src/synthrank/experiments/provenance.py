"""The code version a result came from: synthrank's version and, in a git checkout, the commit
and whether tracked files had uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from synthrank import __version__


def code_version() -> dict:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"synthrank": __version__, "git_commit": commit, "git_dirty": dirty}
