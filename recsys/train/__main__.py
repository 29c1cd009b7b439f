"""`torchrun --nproc_per_node N -m recsys.train JOB.json`: one process of a `recsys train
--nproc N` job (what `distributed.launch` starts). JOB.json holds the resolved config and the
run's paths, so the processes train exactly what the command checked, without re-parsing its
flags."""

import os
import sys
from pathlib import Path

from recsys.train.job import run_job

status = run_job(Path(sys.argv[1]))
sys.stdout.flush()
sys.stderr.flush()
# Leave without the interpreter's teardown: the run is written and the group destroyed, but
# now and then a gloo worker thread still joinable at C++ static destruction aborted the rank
# ("terminate called without an active exception", SIGABRT) after a successful job.
os._exit(status)
