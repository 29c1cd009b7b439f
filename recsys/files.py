"""Nothing lost: outputs are written to a temporary folder and renamed into place; files read
back that are corrupt or truncated are one clear error naming the file, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from recsys.errors import DataError, OutputExistsError, actionable_os_error


def check_output_free(path: Path, force: bool) -> None:
    """Refuse to replace existing output unless --force was given."""
    if path.exists() and any(path.iterdir()) and not force:
        raise OutputExistsError(f"{path} already exists; pass force=True to replace it",
                                fields="force")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; on success it replaces `path` in one
    rename, so a reader (or a resumed job) sees the whole file or none. On a failure the
    temporary file is removed, and an OS error (a full disk, say) names `path`."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        cause = actionable_os_error(e)
        if cause is not None and cause.filename is None:
            raise OSError(cause.errno, cause.strerror, str(path)) from e
        raise


def link_or_copy(source: Path, dest: Path) -> None:
    """`dest` as a hard link to `source` (no bytes copied), or a copy across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def hash_into(h, path: Path):
    """`h` (a hashlib hash) fed `path`'s bytes, a few MB at a time: no whole file in memory."""
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h


def write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(obj, path: Path) -> None:
    write_text(json.dumps(obj, indent=2), path)


@contextmanager
def atomic_dir(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` in two renames.

    A failure or a kill leaves the old `path` untouched (the temporary folder is removed on
    exceptions; a hard kill leaves a hidden `.NAME.tmp-PID` sibling, which the next write
    of `path` removes).
    """
    _clear_killed(path)
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
    _clear_killed(path)
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


def _clear_killed(path: Path) -> None:
    """What a killed writer of `path` left behind: its half-written `.NAME.tmp-PID` folder is
    removed, and an old `path` it had moved aside but not yet replaced is put back."""
    for left in path.parent.glob(f".{path.name}.*-*"):
        kind, _, pid = left.name.removeprefix(f".{path.name}.").partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not path.exists():
            left.rename(path)
        else:
            shutil.rmtree(left, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _swap_in(tmp: Path, path: Path) -> None:
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def write_parquet(table, path: Path, row_group_rows: int | None = None,
                  dictionary: bool | list[str] = True) -> None:
    """`dictionary`: the columns to dictionary-encode (True: all)."""
    import pyarrow.parquet as pq

    with replacing(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows, use_dictionary=dictionary)


def save_torch(obj, path: Path) -> None:
    """torch.save through `replacing`; written through a Python file so that a full disk is an
    OSError, not a bare C++ stream error."""
    import torch

    with replacing(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


def read_json(path: Path, fix: str):
    """The JSON in `path`; a corrupt or truncated file is a DataError saying `fix`."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is corrupt or truncated (not valid JSON: {e}); {fix}") \
            from None


def read_yaml(path: Path, fix: str):
    """The YAML in `path` (None when empty); invalid YAML is one line: where and what."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DataError(f"{path} is not valid YAML ({where}{what}); {fix}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text file; {fix}") from None


def load_torch(path: Path, fix: str, **kwargs):
    """torch.load of a file this project wrote; a corrupt or truncated one is a DataError
    saying `fix`, never a half-loaded state trained over."""
    import pickle
    import zipfile

    import torch

    try:
        return torch.load(path, **kwargs)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"{path} is corrupt or truncated ({first}); {fix}") from None
