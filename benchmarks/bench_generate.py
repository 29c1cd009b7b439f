"""Generation throughput (rows/s) of the synthetic AntM2C world."""

from __future__ import annotations

from conftest import PRESET, RESULTS, copy_repo
from recsys.data.generate import generate
from recsys.data.presets import get_preset


def test_generate_rows_per_second(benchmark, tmp_path):
    preset = get_preset(PRESET)
    repo = copy_repo(tmp_path / "repo")

    def run():
        generate(repo, preset, seed=0, workers=2, force=True, progress=False)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    rate = preset.n_rows / benchmark.stats.stats.mean
    benchmark.extra_info["rows_per_s"] = rate
    RESULTS["generate rows/s"] = rate
