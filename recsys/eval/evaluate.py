"""Scores and the metrics of a run: overall, per scenario, per cold-start subset, and the
Bayes AUC of `p_true` beside each.

A split's scores are written to Parquet as they stream out of the model, and the metrics are
DuckDB queries over the split's files and those scores, joined by position: memory is bounded
by a budget, not by the split's rows."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.data.offline import limit_memory
from recsys.dataset.layout import Layout
from recsys.dataset.loader import BatchLoader, SplitData
from recsys.dataset.meta import DatasetMeta
from recsys.dataset.stream import SplitFiles, StreamLoader
from recsys.metrics import auc_sql
from recsys.memory import GiB
from recsys.schema import COLD_START_FLAGS, LABEL, P_TRUE, SCENARIO
from recsys.files import replacing

EVAL_BATCH = 16384  # rows per batch when scoring a split
# Below this many rows, or with one class only, a subset gets no AUC: it would mean nothing.
MIN_ROWS = 100
# DuckDB's budget for the metrics' queries; it spills beyond. Kept small because it comes on
# top of the model, which a training run holds while it evaluates: the metrics of a 10M-row
# test split filled a 1 GiB budget, and took about as long under a quarter of it
METRICS_MEMORY = GiB // 4
SCORE = "score"  # the click probability column of a scores file
LOGLOSS_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] for the log loss


@torch.no_grad()
def predict(model: torch.nn.Module, data: SplitData, layout: Layout,
            history: SplitData | None = None, batch_size: int = EVAL_BATCH,
            device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Click probabilities of every row of a split held in memory. Models that adapt to a
    user's history at test time (maml, melu) get the training split as `history`."""
    probs = np.concatenate(list(score_batches(model, BatchLoader(data, layout, batch_size),
                                              device)))
    if history is not None and model.capabilities.adapts:
        probs = model.predict_split(data, layout, history, probs)
    return probs


@torch.no_grad()
def score_batches(model: torch.nn.Module, loader,
                  device: torch.device = torch.device("cpu")) -> Iterator[np.ndarray]:
    """Click probabilities of each batch a (non-shuffling) loader yields, in order."""
    model.eval()
    for batch in loader:
        yield torch.sigmoid(model(batch.to(device))).cpu().numpy()


def predict_stream(model: torch.nn.Module, loader,
                   device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Click probabilities of every row a (non-shuffling) loader yields, in one array."""
    return np.concatenate(list(score_batches(model, loader, device)))


def write_scores(batches: Iterable[np.ndarray], path: Path) -> Path:
    """Scores, one row group per batch, to `path` (written whole or not at all)."""
    schema = pa.schema([(SCORE, pa.float32())])
    with replacing(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for probs in batches:
            writer.write_table(pa.table([np.asarray(probs, np.float32)], schema=schema))
    return path


def split_metrics(dataset: Path, split: str, scores: Path) -> dict:
    """The metrics.json blocks of a split's stored scores (see `compute_metrics`)."""
    scenarios = DatasetMeta.read(dataset).schema.scenario_names
    with _scored(dataset, split, scores) as (con, relation):
        return _metrics(con, relation, scenarios)


def run_metrics(run, dataset: Path, split: str, scores: Path) -> dict:
    """The metrics.json blocks of a finished run (a `recsys.run.Run`) on a split of another
    dataset of the same repo (its rows scored into `scores`, streamed)."""
    cfg = run.config()
    layout = Layout.from_meta(DatasetMeta.read(dataset), cfg.modalities, cfg.hashed_rows,
                              cfg.history)
    model = run.load_model(layout)
    loader = StreamLoader(SplitFiles(dataset, split, layout), layout, EVAL_BATCH)
    scores.parent.mkdir(parents=True, exist_ok=True)
    return split_metrics(dataset, split, write_scores(score_batches(model, loader), scores))


def split_auc(dataset: Path, split: str, scores: Path) -> float:
    """The overall AUC of a split's stored scores."""
    with _scored(dataset, split, scores) as (con, relation):
        return auc_sql(con, relation, score=SCORE)[None]


def compute_metrics(data: SplitData, probs: np.ndarray, scenarios: tuple[str, ...]) -> dict:
    """The `overall` / `scenarios` / `subsets` / `oracle` blocks of metrics.json, for a split
    held in memory: the same queries as for stored scores. `scenarios`: their names by code
    (`Layout.scenarios`)."""
    table = pa.table({LABEL: data.labels, SCENARIO: data.scenario, P_TRUE: data.p_true,
                      **data.flags, SCORE: np.asarray(probs, np.float32)})
    con = duckdb.connect()
    con.register("scored", table)
    try:
        return _metrics(con, "scored", scenarios)
    finally:
        con.close()


class _scored:
    """A DuckDB connection under METRICS_MEMORY (spilling to a folder beside the scores)
    and the relation of a split's metric columns beside its stored scores."""

    def __init__(self, dataset: Path, split: str, scores: Path):
        files = ", ".join(f"'{f}'" for f in sorted((dataset / split).glob("*.parquet")))
        columns = ", ".join([LABEL, SCENARIO, P_TRUE, *COLD_START_FLAGS])
        # the scores were written in the split's file order: a positional join pairs them
        self.relation = (f"(SELECT {columns} FROM read_parquet([{files}])) "
                         f"POSITIONAL JOIN (SELECT {SCORE} FROM read_parquet('{scores}'))")
        self.spill = scores.parent / ".metrics-spill"  # one name: a killed run's is cleared

    def __enter__(self):
        shutil.rmtree(self.spill, ignore_errors=True)
        self.con = duckdb.connect()
        limit_memory(self.con, METRICS_MEMORY, self.spill, keep_order=True)
        return self.con, self.relation

    def __exit__(self, *exc):
        self.con.close()
        shutil.rmtree(self.spill, ignore_errors=True)


def _metrics(con, relation: str, scenarios: tuple[str, ...]) -> dict:
    # every row counts in its groups: all rows, its scenario, and each cold-start subset it
    # is in, alone and with its scenario
    keys = ["'all'", "'s' || scenario"] + [
        key for flag in COLD_START_FLAGS
        for key in (f"CASE WHEN {flag} THEN '{flag}' END",
                    f"CASE WHEN {flag} THEN '{flag}:s' || scenario END")]
    con.execute(f"""CREATE OR REPLACE TEMP VIEW grouped AS
        SELECT {LABEL}::DOUBLE AS label, {SCORE}, {P_TRUE},
               unnest(list_filter([{', '.join(keys)}], k -> k IS NOT NULL)) AS k
        FROM {relation}""")
    p = f"greatest(least({SCORE}::DOUBLE, 1 - {LOGLOSS_EPS}), {LOGLOSS_EPS})"
    counts = {k: (n, pos, loss) for k, n, pos, loss in con.execute(f"""
        SELECT k, count(*), sum(label), avg(-(label * ln({p}) + (1 - label) * ln(1 - {p})))
        FROM grouped GROUP BY k""").fetchall()}
    model_auc = auc_sql(con, "grouped", by="k", score=SCORE)
    bayes_auc = auc_sql(con, "grouped", by="k", score=P_TRUE)

    def enough(key: str) -> bool:
        n, pos, _ = counts.get(key, (0, 0, None))
        return n >= MIN_ROWS and 0 < pos < n

    def cell(key: str) -> dict:
        n = int(counts.get(key, (0,))[0])
        if not enough(key):
            return {"auc": None, "logloss": None, "n": n, "note": "too few rows"}
        return {"auc": model_auc[key], "logloss": float(counts[key][2]), "n": n}

    def oracle(key: str) -> float | None:
        """The Bayes AUC of p_true; None where the data has none (imported data)."""
        value = bayes_auc.get(key)
        return value if enough(key) and value is not None and value == value else None

    subsets = {flag: {**cell(flag), "scenarios": {
        str(code): cell(f"{flag}:s{code}") for code in range(len(scenarios))
        if f"{flag}:s{code}" in counts}} for flag in COLD_START_FLAGS}
    return {"overall": cell("all"),
            "scenarios": {str(code): {"name": name, **cell(f"s{code}")}
                          for code, name in enumerate(scenarios)},
            "subsets": subsets,
            "oracle": {"overall_auc": oracle("all"),
                       "scenarios": {str(code): oracle(f"s{code}")
                                     for code in range(len(scenarios))},
                       "subsets": {flag: oracle(flag) for flag in COLD_START_FLAGS},
                       "subset_scenarios": {flag: {
                           str(code): oracle(f"{flag}:s{code}") for code in range(len(scenarios))
                           if f"{flag}:s{code}" in counts} for flag in COLD_START_FLAGS}}}
