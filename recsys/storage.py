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
    _swap_in(tmp, path)


@contextmanager
def resumable_dir(path: Path, force: bool, plan: dict) -> Iterator[Path]:
    """Like atomic_dir, but the temporary sibling `.NAME.partial` outlives a failure or a kill:
    a rerun whose `plan` (a JSON-able description of the work) is the same finds there what
    was done so far; another plan starts it afresh. The old `path` stays untouched until the
    new one is complete."""
    check_output_free(path, force)
    tmp = path.parent / f".{path.name}.partial"
    plan_file = tmp / ".plan.json"
    same = plan_file.is_file() and json.loads(plan_file.read_text()) == \
        json.loads(json.dumps(plan))
    if not same:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_json(plan, plan_file)
    yield tmp
    plan_file.unlink()
    _swap_in(tmp, path)


def _swap_in(tmp: Path, path: Path) -> None:
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def write_parquet(table, path: Path, row_group_rows: int | None = None) -> None:
    """Write a Parquet file through a temporary name and a rename: a reader (or a resumed
    job) sees the whole file or none."""
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=row_group_rows)
    os.replace(tmp, path)
