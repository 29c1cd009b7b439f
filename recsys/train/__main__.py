"""`torchrun --nproc_per_node N -m recsys.train JOB.json`: one process of a `recsys train
--nproc N` job (what `distributed.launch` starts). JOB.json holds the resolved config and the
run's paths, so the processes train exactly what the command checked, without re-parsing its
flags."""

import sys
from pathlib import Path

from recsys.train.job import run_job

sys.exit(run_job(Path(sys.argv[1])))
