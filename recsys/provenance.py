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


# the packages whose versions decide a benchmark's numbers
VERSIONED = ("torch", "torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu", "feast", "duckdb", "pyarrow",
             "pyspark", "sentence-transformers", "redis", "torch-rechub")


def machine_facts() -> dict:
    """The machine a benchmark ran on: CPU model, cores, memory, GPU, Python and the versions
    of the packages that decide the numbers, and the code's commit."""
    import os
    import platform
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu_model": cpu, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2 ** 30, 1),
            "gpu": gpu, "python": platform.python_version(), "versions": versions,
            **code_version()}
