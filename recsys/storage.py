"""Nothing lost: outputs are written to a temporary folder and renamed into place."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from recsys.errors import OutputExistsError


def check_output_free(path: Path, force: bool) -> None:
    """Refuse to replace existing output unless --force was given."""
    if path.exists() and any(path.iterdir()) and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to replace it")


def write_text(text: str, path: Path) -> None:
    """Write `text` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(obj, path: Path) -> None:
    write_text(json.dumps(obj, indent=2), path)


@contextmanager
def atomic_dir(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` in two renames.

    A failure or a kill leaves the old `path` untouched (the temporary folder is removed on
    exceptions; a hard kill leaves only a hidden `.NAME.tmp-PID` sibling behind).
    """
    check_output_free(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
