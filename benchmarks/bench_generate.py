"""Generation throughput (rows/s) of the synthetic AntM2C world, with 1 and 2 worker
processes side by side."""

from __future__ import annotations

import pytest

from conftest import PRESET, RESULTS, copy_repo
from recsys.data.generate import generate
from recsys.data.presets import get_preset


@pytest.mark.parametrize("workers", [1, 2])
def test_generate_rows_per_second(benchmark, tmp_path, workers):
    preset = get_preset(PRESET)
    repo = copy_repo(tmp_path / "repo")

    def run():
        generate(repo, preset, seed=0, workers=workers, force=True, progress=False)

    benchmark.group = "generate, 1 vs 2 workers"
    benchmark.pedantic(run, rounds=1, iterations=1)
    rate = preset.n_rows / benchmark.stats.stats.mean
    benchmark.extra_info["rows_per_s"] = rate
    RESULTS[f"generate rows/s, {workers} worker(s)"] = rate
