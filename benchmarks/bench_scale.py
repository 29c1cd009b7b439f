"""Sharded training on CPU: `recsys train --nproc 1` (one process, no process group) next to
`--nproc 2` (torchrun, gloo, TorchRec DistributedModelParallel), one epoch of mmoe on the same
dataset in the same run. examples/s is the training loop's own count (metrics.json); the
benchmark's time is the whole command, start-up and evaluation included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MMOE_EPOCH, RESULTS

RECSYS = Path(sys.executable).parent / "recsys"


@pytest.mark.parametrize("nproc", [1, 2])
def test_training_examples_per_second_by_process_count(benchmark, built_dataset, tmp_path,
                                                       nproc):
    out = tmp_path / "run"
    cmd = [str(RECSYS), *MMOE_EPOCH, "--dataset", str(built_dataset), "--out", str(out),
           "--nproc", str(nproc), "--force"]
    benchmark.group = "mmoe training, 1 vs 2 processes"
    benchmark.pedantic(lambda: subprocess.run(cmd, check=True, capture_output=True), rounds=1,
                       iterations=1)
    metrics = json.loads((out / "metrics.json").read_text())
    RESULTS[f"mmoe examples/s, {nproc} process(es)"] = metrics["train"]["examples_per_s"]
    RESULTS[f"mmoe test AUC, {nproc} process(es)"] = metrics["overall"]["auc"]
