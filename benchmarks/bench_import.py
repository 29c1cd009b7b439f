"""Import of an AntM2C-format CSV: rows/s and the peak memory of the `recsys import` process
(1,000,000 rows on the small preset, 50,000 on tiny)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from conftest import PRESET, RESULTS, copy_repo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from antm2c_files import write_antm2c_large  # noqa: E402

ROWS = 1_000_000 if PRESET != "tiny" else 50_000
RECSYS = Path(sys.executable).parent / "recsys"


def test_import_antm2c_rows_per_second_and_peak_memory(benchmark, tmp_path):
    csv = write_antm2c_large(tmp_path / "antm2c_10m_part0", ROWS)
    repo = copy_repo(tmp_path / "repo")
    peaks = []

    def run():
        # a fresh interpreter per round, so its peak RSS is the import's alone
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                 "stdout=subprocess.DEVNULL); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", probe, str(RECSYS), "import", "antm2c",
                              str(csv), "--repo", str(repo), "--force"], check=True,
                             capture_output=True, text=True).stdout
        peaks.append(int(out.split()[-1]) / 1024)  # KiB -> MiB

    benchmark.pedantic(run, rounds=1, iterations=1)
    RESULTS[f"import antm2c rows/s ({ROWS:,} rows)"] = ROWS / benchmark.stats.stats.mean
    RESULTS["import antm2c peak RSS MiB"] = max(peaks)
    RESULTS["import antm2c input MiB"] = csv.stat().st_size / 2 ** 20
    assert resource  # the child's RSS is read through resource in the probe
