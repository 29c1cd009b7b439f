"""Which run is better, honestly: the finished runs on a dataset side by side (per-scenario AUC
and what their configs change), and two runs compared on the same test rows by a paired
bootstrap of their AUC difference, with its 95% interval. Runs are read through `recsys.run`.

A test split is held in memory here (labels, scenarios, two scores: 13 bytes a row); the
bootstrap resamples its rows, the same rows for both runs, so the interval is of the
difference itself, not of two independent AUCs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recsys.config import PROVENANCE
from recsys.errors import DataError, UsageError
from recsys.provenance import dataset_fingerprint
from recsys.run import METRICS, Run
from recsys.schema import LABEL, SCENARIO

RESAMPLES = 1000
LEVEL = 0.95
CELLS = 4_000_000  # resampled rows held at once (a few arrays of them: ~100 MB)


def finished_runs(folder: Path, dataset: Path | None = None) -> list[Run]:
    """Every finished run under `folder` (experiments' nested ones too), by path; with
    `dataset`, those trained on it as it is now (its fingerprint)."""
    if not folder.is_dir():
        raise UsageError(f"runs folder {folder}: not found; pass the folder `recsys train` "
                         f"writes into (runs/ by default)", fields="folder")
    runs = [Run(p.parent) for p in sorted(folder.rglob(METRICS))
            if (p.parent / "config.json").is_file()]
    if dataset is not None:
        wanted = dataset_fingerprint(dataset)
        runs = [r for r in runs if r.provenance.dataset_fingerprint == wanted]
    return runs


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_table(runs: list[Run]) -> dict:
    """Rows of the runs' test AUC (overall and per scenario) and the config keys that differ
    among them (provenance left aside)."""
    configs = [{k: v for k, v in _flat(r.saved).items()
                if k.split(".")[0] not in PROVENANCE} for r in runs]
    keys = sorted({k for c in configs for k in c})
    # a key some runs' models lack is no difference between them (dropoutnet's id_dropout)
    differing = [k for k in keys if len({repr(c[k]) for c in configs if k in c}) > 1]
    rows = []
    for run, config in zip(runs, configs):
        m = run.metrics()
        rows.append({"run": str(run.path), "overall": m["overall"]["auc"],
                     "scenarios": {s["name"]: s["auc"] for s in m["scenarios"].values()},
                     "config": {k: config.get(k) for k in differing}})
    return {"rows": rows, "differing": differing}


def _aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each row of `scores` (R, N) against `labels` (R, N), ties counted half (the
    Mann-Whitney statistic of average ranks)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    pos = labels.sum(1)
    neg = labels.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * labels).sum(1) - pos * (pos + 1) / 2) / (pos * neg)


def _scores(run: Run, split: str) -> np.ndarray:
    path = run.scores(split)
    if not path.is_file():
        raise DataError(f"{run.path}: no {path.name}; train the run again (it was not "
                        f"finished)")
    return pq.read_table(path).column(0).to_numpy()


def paired(a: Run, b: Run, split: str = "test", resamples: int = RESAMPLES,
           seed: int = 0) -> dict:
    """B − A on the same rows: the AUC difference overall and per scenario, its bootstrap
    interval and the share of resamples where B is not better; `within_noise` when the
    interval holds 0."""
    for run in (a, b):
        run.check_trained().config()  # a run this version cannot read is refused here
    fa, fb = (r.provenance.dataset_fingerprint for r in (a, b))
    if fa != fb:
        raise UsageError(f"{a.path} and {b.path} were trained on different data (dataset "
                         f"fingerprints {fa} and {fb}): compare runs of one dataset")
    if resamples < 100:
        raise UsageError(f"resamples {resamples}: must be at least 100", fields="resamples")
    dataset = Path(a.provenance.dataset)
    files = sorted((dataset / split).glob("*.parquet"))
    if not files:
        raise DataError(f"{dataset / split}: no Parquet files; the runs' dataset is gone: "
                        f"build it again with `recsys build-dataset`")
    table = pq.ParquetDataset(files).read(columns=[LABEL, SCENARIO])
    labels = table.column(LABEL).to_numpy().astype(np.float64)
    scenario = table.column(SCENARIO).to_numpy()
    sa, sb = _scores(a, split), _scores(b, split)
    if not len(sa) == len(sb) == len(labels):
        raise DataError(f"{a.path} and {b.path}: their scores do not cover the {len(labels):,} "
                        f"{split} rows of {dataset}; train them again")
    names = {int(code): s["name"] for code, s in a.metrics()["scenarios"].items()}
    rng = np.random.default_rng(seed)
    out = {"a": str(a.path), "b": str(b.path), "split": split, "resamples": resamples,
           "level": LEVEL, "slices": {}}
    slices = {"overall": np.arange(len(labels))}
    if len(names) > 1:
        slices.update({names[c]: np.flatnonzero(scenario == c) for c in sorted(names)})
    for name, rows in slices.items():
        y = labels[rows]
        if rows.size < 100 or y.min() == y.max():
            out["slices"][name] = {"n": int(rows.size), "note": "too few rows"}
            continue
        point = _aucs(y[None], np.stack([sb[rows], sa[rows]]))
        diffs, per = [], max(1, min(100, CELLS // rows.size))  # resamples at a time
        for start in range(0, resamples, per):
            take = rng.integers(0, rows.size, (min(per, resamples - start), rows.size))
            both = _aucs(np.concatenate([y[take], y[take]]),
                         np.concatenate([sb[rows][take], sa[rows][take]]))
            diffs.append(both[:len(take)] - both[len(take):])
        diffs = np.concatenate(diffs)
        diffs = diffs[np.isfinite(diffs)]
        low, high = np.quantile(diffs, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        out["slices"][name] = {"n": int(rows.size), "auc_a": float(point[1]),
                               "auc_b": float(point[0]), "diff": float(point[0] - point[1]),
                               "low": float(low), "high": float(high),
                               "p_b_not_better": float((diffs <= 0).mean()),
                               "within_noise": bool(low <= 0 <= high)}
    return out
