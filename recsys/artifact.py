"""An exported run (`recsys export`): a folder whose program scores without recsys's model
code, its tables in int8 / int4 / fp16 / fp32. It reads as a run (recsys.run): serving,
`--watch` and evaluation take it where they take a run.

    ARTIFACT/
      program.pt      the TorchScript program (models.export): `forward` (rows each with its
                      own history) and `score_request` (one request: the history looked up once)
      artifact.json   the run it came from, its tables' type and bytes, the inputs the program
                      takes, the program's sha256
      config.json, dataset.json   the run's: the inputs' layout and schema, as a run serves them
      test_scores.parquet, metrics.json   the artifact's own scores and metrics on the run's
                      test split, beside the run's (written last: an artifact with them is done)

Loading it needs torch and fbgemm_gpu (whose operators the program calls), nothing of recsys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from recsys.errors import DataError
from recsys.files import hash_into, read_json

PROGRAM, ARTIFACT = "program.pt", "artifact.json"
DTYPES = ("int8", "int4", "fp16", "fp32")  # the table types an export takes (models.quant)
FIX = "export the run again (`recsys export RUN --force`)"


def is_artifact(path: Path) -> bool:
    return (path / ARTIFACT).is_file()


def sha256(path: Path) -> str:
    return hash_into(hashlib.sha256(), path).hexdigest()


class Artifact:
    """An artifact's program, called as a model is: `artifact(batch)` -> one logit a row."""

    def __init__(self, path: Path):
        import fbgemm_gpu  # noqa: F401  (registers the FBGEMM operators the program calls)
        import torch

        self.facts = read_json(path / ARTIFACT, FIX)
        if sha256(path / PROGRAM) != self.facts["program_sha256"]:
            raise DataError(f"{path / PROGRAM}: its sha256 is not the one {ARTIFACT} records "
                            f"(changed or truncated); {FIX}")
        self.program = torch.jit.load(str(path / PROGRAM))

    def eval(self) -> "Artifact":
        return self

    def __call__(self, batch):
        import torch

        method = self.program.score_request if batch.one_history else self.program.forward
        with torch.no_grad():  # scoring only: no graph kept
            return method(batch.ids, batch.dense, batch.vectors, batch.scenario)
