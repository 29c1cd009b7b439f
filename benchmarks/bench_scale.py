"""Sharded training on CPU: `recsys train --nproc 1` (one process, no process group) next to
`--nproc 2` (torchrun, gloo, TorchRec DistributedModelParallel), one epoch of mmoe on the same
dataset in the same run. examples/s is the training loop's own count (its metrics); the
benchmark's time is the whole command, start-up and evaluation included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import MMOE_EPOCH, RESULTS, run_figures

RECSYS = Path(sys.executable).parent / "recsys"


def test_training_examples_per_second_on_two_processes(benchmark, built_dataset, mmoe_run,
                                                       tmp_path):
    """`--nproc 2` timed; `--nproc 1` is the shared mmoe run (the same command, one process)."""
    out = tmp_path / "run"
    cmd = [str(RECSYS), *MMOE_EPOCH, "--dataset", str(built_dataset), "--out", str(out),
           "--nproc", "2", "--force"]
    benchmark.group = "mmoe training, 2 processes"
    benchmark.pedantic(lambda: subprocess.run(cmd, check=True, capture_output=True), rounds=1,
                       iterations=1)
    for nproc, run in ((1, mmoe_run), (2, out)):
        figures = run_figures(run)
        RESULTS[f"mmoe examples/s, {nproc} process(es)"] = figures["examples_per_s"]
        RESULTS[f"mmoe test AUC, {nproc} process(es)"] = figures["auc"]
