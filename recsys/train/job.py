"""A training job handed to the processes torchrun starts: the resolved config and the run's
paths, written as JSON by the command that checked them and read back by each process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from recsys.config import TrainConfig
from recsys.errors import RecsysError, UsageError


@dataclass(frozen=True)
class Job:
    dataset: Path
    out: Path
    config: TrainConfig
    device: str = "cpu"
    force: bool = False
    init_from: Path | None = None

    def to_json(self) -> dict:
        return {"dataset": str(self.dataset), "out": str(self.out),
                "config": self.config.to_json(), "device": self.device, "force": self.force,
                "init_from": None if self.init_from is None else str(self.init_from)}

    @classmethod
    def read(cls, path: Path) -> "Job":
        data = json.loads(path.read_text())
        return cls(Path(data["dataset"]), Path(data["out"]),
                   TrainConfig.from_json(data["config"], str(path)), data["device"],
                   data["force"], None if data["init_from"] is None else Path(data["init_from"]))


def run_job(path: Path) -> int:
    """Train this process's share of the job at `path`; its exit status (2 with one line on a
    RecsysError, as the command would)."""
    from recsys.train.distributed import Ranks
    from recsys.train.loop import train

    job = Job.read(path)
    ranks = Ranks.start(job.device)
    finished = False
    try:
        train(job.dataset, job.out, job.config, force=job.force, ranks=ranks,
              init_from=job.init_from)
        finished = True
    except RecsysError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        ranks.stop(finished)
    return 0


def launch(nproc: int, job: Job) -> int:
    """Run `job` in `nproc` torchrun processes on this machine; their exit status."""
    with tempfile.TemporaryDirectory(prefix="recsys-job-") as folder:
        path = Path(folder) / "job.json"
        path.write_text(json.dumps(job.to_json()))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "recsys.train", str(path)]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        return subprocess.run(cmd, env=env).returncode


def train_job(job: Job, nproc: int, log=print) -> dict | int:
    """Train `job` here (one process on the CPU) or in `nproc` torchrun processes (several, or
    on the GPU): its metrics, or the processes' failed exit status."""
    from recsys.run import Run
    from recsys.train.distributed import check_device, check_shardable
    from recsys.train.loop import train

    check_device(job.device)
    if nproc < 1:
        raise UsageError(f"--nproc {nproc}: need at least one process")
    if nproc == 1 and job.device == "cpu":
        return train(job.dataset, job.out, job.config, force=job.force, log=log,
                     init_from=job.init_from)
    # check here what would fail in every process, then start them
    check_shardable(job.config.model, nproc, job.config.batch_size)
    return launch(nproc, job) or Run(job.out).metrics()
