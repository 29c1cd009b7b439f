"""Memory budgets: data stages are bounded by a budget, never by the number of rows; sizes
implied by flags are checked against this machine's memory and disk before work starts."""

import ctypes
import os
import shutil
from pathlib import Path

from recsys.errors import UsageError

DEFAULT_MEMORY_GB = 4.0  # build-dataset's --memory-gb

GiB = 2 ** 30
# glibc's mallopt parameters, and its ceiling on the mmap threshold (64-bit)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX = -1, -3, 32 * 2 ** 20
KEPT_FREE_BYTES = 256 * 2 ** 20  # freed heap a process keeps for its next allocations


def duckdb_limit(memory_bytes: int) -> str:
    """A DuckDB memory_limit setting for a budget in bytes (at least 64 MB)."""
    return f"{max(memory_bytes // 2 ** 20, 64)}MB"


def machine_memory() -> int:
    """This machine's physical memory, bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_memory() -> int:
    """Memory a new allocation can take now (MemAvailable), bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return machine_memory()


def free_disk(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_fits(what: str, need: int, have: int, where: str, fix: str,
               fields: str | tuple[str, ...] = ()) -> None:
    """Refuse, with the numbers, work whose `need` (bytes) exceeds what `where` `has`;
    `fields`: the parameters `what` and `fix` name."""
    if need > have:
        raise UsageError(f"{what}: needs about {need / GiB:,.1f} GiB of {where}, "
                         f"{have / GiB:,.1f} GiB there; {fix}", fields=fields)


def reuse_freed_memory() -> bool:
    """Make glibc's malloc hand a process's freed memory to its next allocations instead of
    back to the system. A request's tensors of a few MiB (500 candidates' rows) otherwise come
    from fresh pages every time, a page fault for each 4 KiB: about half of a 500-candidate
    /score went to them. The cost: up to KEPT_FREE_BYTES of freed heap stays resident. Whether
    it applied (not on a libc without mallopt)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
