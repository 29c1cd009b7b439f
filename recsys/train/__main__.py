"""`torchrun --nproc_per_node N -m recsys.train --model mmoe ...`: `recsys train` in each
process (what `recsys train --nproc N` starts)."""

import sys

from recsys.cli import app

app(["train", *sys.argv[1:]], prog_name="recsys train")
