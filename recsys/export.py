"""`recsys export`: a finished run as an artifact (recsys.artifact), its program traced by
models.export, checked on the run's test split: the artifact's own metrics, and its largest
difference from the run's scores, row for row."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from recsys.artifact import ARTIFACT, DTYPES, FIX, PROGRAM, is_artifact, sha256
from recsys.errors import UsageError
from recsys.files import atomic_dir, check_output_free, read_json, write_json
from recsys.run import CONFIG, DATASET_COPY, METRICS, Run


def export(run_path: Path, dtype: str, out: Path, dataset: Path | None = None,
           force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Export the finished run at `run_path` as an artifact in `out`, its tables in `dtype`,
    checked on the test split of `dataset` (default: the run's own). The artifact's facts,
    with its metrics and the run's."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype: {dtype!r} is not a table type an export takes; one of "
                         f"{', '.join(DTYPES)}", fields="dtype")
    run = Run(run_path).check_trained()
    if is_artifact(run_path):
        raise UsageError(f"{run_path} is an artifact already; export the run it came from "
                         f"({read_json(run_path / ARTIFACT, FIX)['run']})", fields="run")
    if not run.finished:
        raise UsageError(f"{run_path}: training has not finished (no {METRICS}); export a "
                         f"finished run", fields="run")
    check_output_free(out, force)
    own = Path(run.provenance.dataset)
    dataset = dataset or own
    if not (dataset / "test").is_dir():
        raise UsageError(f"{dataset}: no test split to check the artifact on; pass the "
                         f"dataset the run was trained on", fields="dataset")
    import torch

    from recsys.eval.evaluate import run_metrics
    from recsys.models.export import export_program

    start = time.perf_counter()
    layout = run.layout()
    model = run.load_model(layout)
    log(f"tracing {model.name} with its tables in {dtype}")
    program, tables = export_program(model, layout, dtype)
    del model
    with atomic_dir(out, force) as tmp:
        torch.jit.save(program, str(tmp / PROGRAM))
        for name in (CONFIG, DATASET_COPY):
            shutil.copy2(run_path / name, tmp / name)
        facts = {"run": str(run_path), "run_fingerprint": run.fingerprint(),
                 "model": run.config().model, "dtype": dtype, **tables,
                 "inputs": {"ids": _id_columns(layout), "dense": list(layout.dense),
                            "vectors": sum(g.width for g in layout.vectors),
                            "scenarios": list(layout.scenarios)},
                 "methods": ["forward", "score_request"],
                 "program_sha256": sha256(tmp / PROGRAM),
                 "torch": torch.__version__}
        write_json(facts, tmp / ARTIFACT)
        log(f"scoring {dataset / 'test'} with the artifact")
        scores = tmp / "test_scores.parquet"
        metrics = run_metrics(Run(tmp), dataset, "test", scores)
        gap = _largest_gap(scores, run.scores("test")) if dataset == own else None
        write_json({**metrics, "max_abs_diff_from_run": gap}, tmp / METRICS)
    return {**facts, "metrics": metrics, "run_metrics": run.metrics(),
            "max_abs_diff_from_run": gap, "seconds": time.perf_counter() - start}


def _largest_gap(scores: Path, run_scores: Path) -> float | None:
    """max |p_artifact - p_run| over the test rows, row for row (None: the run kept no test
    scores, or scores of other rows)."""
    import duckdb
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(scores).metadata.num_rows
    if not run_scores.is_file() or pq.ParquetFile(run_scores).metadata.num_rows != rows:
        return None
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT max(abs(a.score - b.score)) FROM read_parquet('{scores}') a "
                           f"POSITIONAL JOIN read_parquet('{run_scores}') b").fetchone()[0]
    finally:
        con.close()


def _id_columns(layout) -> list[str]:
    """The program's ID matrix, column by column (Layout.inputs): each single-valued feature,
    each value slot of a multi-valued one ("item_genres[1]"), then the history's positions
    ("history_item_ids_0"; -1: none)."""
    return [c.name if c.width == 1 and not c.history else
            f"{c.name}_{i}" if c.history else f"{c.name}[{i}]"
            for c in layout.inputs if c.matrix == "ids" for i in range(c.width)]
