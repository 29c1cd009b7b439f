"""Ranking and calibration metrics, vectorised."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

AUC_BATCH_ROWS = 1 << 18  # sorted (group, score) rows summed at a time by auc_sql


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with average ranks for ties.

    NaN when only one class is present or a score is missing (NaN: imported data has no
    true click probability)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        return float("nan")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auc_sql(con, relation: str, by: str | None = None, label: str = "label",
            score: str = "p_true") -> dict:
    """ROC AUC of `score` against `label` in a DuckDB relation, per value of the expression
    `by` (as text; one group, key None, without it), computed out of core: DuckDB counts the
    positives and negatives of each (group, distinct score) and sorts them (both spill beyond
    its memory limit); the rank-sum formula, ties counted half, is then summed a batch of
    sorted rows at a time. A group with a missing score or one class gets NaN, as `auc` does."""
    key = f"CAST({by} AS VARCHAR)" if by else "NULL::VARCHAR"
    reader = con.execute(f"""
        SELECT {key} AS k, {score}::DOUBLE AS s, sum({label})::DOUBLE AS pos,
               count(*) - sum({label})::DOUBLE AS neg
        FROM {relation} GROUP BY ALL ORDER BY k, s""").fetch_record_batch(AUC_BATCH_ROWS)
    sums: dict = {}  # group -> (U, positives, negatives, a score is missing)
    for batch in reader:
        k, s, pos, neg = (c.to_numpy(zero_copy_only=False) for c in batch.columns)
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(k)]):  # a run per group, few a batch
            u, p, n, missing = sums.get(k[lo], (0.0, 0.0, 0.0, False))
            run_neg = neg[lo:hi]
            below = n + np.cumsum(run_neg) - run_neg  # negatives scored lower, across batches
            sums[k[lo]] = (u + float(pos[lo:hi] @ (below + 0.5 * run_neg)),
                           p + pos[lo:hi].sum(), n + run_neg.sum(),
                           missing or bool(np.isnan(s[lo:hi]).any()))
    return {k: float("nan") if missing or not p or not n else u / (p * n)
            for k, (u, p, n, missing) in sums.items()}
