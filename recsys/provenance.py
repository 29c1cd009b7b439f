"""Where a run's numbers come from: the dataset it read (a fingerprint of its metadata and
files) and the code that ran (the git commit of this package's tree, when it is a checkout)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dataset_fingerprint(dataset: Path) -> str:
    """sha256 over the dataset's meta.json and the name and size of every Parquet file."""
    h = hashlib.sha256((dataset / "meta.json").read_bytes())
    for path in sorted(dataset.glob("*/*.parquet")):
        h.update(f"{path.relative_to(dataset)}:{path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def code_version() -> dict:
    """{"commit": sha, "dirty": uncommitted changes to tracked files}; None where the package
    is not a git checkout (an installed copy)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
