"""Errors meant for people: the CLI prints the message as one line and exits non-zero."""

import errno
from typing import Iterator


# pydantic's config of the dataclasses read from files (a class's __pydantic_config__): a key
# the class does not have is an error. Set as a plain attribute, pydantic is imported only
# when a file is validated, so a command refuses bad flags without it.
STRICT = {"extra": "forbid"}


class RecsysError(Exception):
    """Base class: the message says what was wrong, where, and how to fix it. It names the
    parameters it is about by their Python names (a switch as `force=True`), and lists the
    valued ones in `fields`: the CLI alone shows each as its command's flag."""

    def __init__(self, message: str = "", fields: str | tuple[str, ...] = ()):
        super().__init__(message)
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)


class UsageError(RecsysError):
    """A parameter (a flag, a config key) has a bad value."""


class RepoError(RecsysError):
    """The feature repo is missing, foreign, or not yet applied."""


class DataError(RecsysError):
    """A data file does not match the schema."""


class OutputExistsError(RecsysError):
    """The output already exists and force=True was not given."""


# What to do about an OS error on a path, by errno: the one place that turns the machine's
# refusals (full disk, read-only folder, a file where a folder belongs) into a line for people.
_OS_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space or write somewhere else",
    errno.EDQUOT: "disk quota exceeded: free some space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: fix its permissions or write somewhere else",
    errno.EPERM: "operation not permitted: fix its permissions or write somewhere else",
    errno.ENOTDIR: "a file stands where a folder is needed: pass a folder path",
    errno.EISDIR: "is a folder where a file is needed: pass a file path",
    errno.EEXIST: "already exists and is in the way: remove it or pass another path",
    errno.ENOENT: "does not exist: check the path",
}


def causes(e: BaseException | None) -> Iterator[BaseException]:
    """`e`, then what it was raised from or during, and so on down the chain."""
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def actionable_os_error(e: BaseException) -> OSError | None:
    """The OS error the user can act on behind `e` (itself, or what it was raised from or
    during: torch's writer, say, reports a full disk as a RuntimeError after the OSError)."""
    return next((c for c in causes(e) if isinstance(c, OSError) and c.errno in _OS_ADVICE),
                None)


def os_error_message(e: BaseException) -> str | None:
    """One line for an OS error the user can act on, or None for any other (a bug: traceback)."""
    e = actionable_os_error(e)
    if e is None:
        return None
    advice = _OS_ADVICE[e.errno]
    where = " -> ".join(f"'{p}'" for p in (e.filename, e.filename2) if p is not None)
    return f"{where or 'a file'}: {advice}"


def out_of_memory_message(e: BaseException) -> str:
    """One line for a process (or DuckDB under its memory limit) that ran out of memory."""
    detail = str(e).strip().splitlines()[0] if str(e).strip() else "MemoryError"
    return (f"out of memory ({detail}): close other programs, or give this command less "
            f"at a time (a smaller memory budget, batch or input where it has one)")
