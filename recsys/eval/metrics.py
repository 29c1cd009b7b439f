"""Ranking and calibration metrics, vectorised."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


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
    `by` (one group, key None, without it), computed out of core: per distinct score the
    positives and negatives, then the rank-sum formula with ties counted half. A group with a
    missing score or one class gets NaN, as `auc` does."""
    group = f"{by}" if by else "NULL"
    rows = con.execute(f"""
        WITH g AS (SELECT {group} AS k, {score} AS s, sum({label}) AS pos,
                          count(*) - sum({label}) AS neg, count({score}) < count(*) AS missing
                   FROM {relation} GROUP BY ALL),
             c AS (SELECT *, coalesce(sum(neg) OVER (PARTITION BY k ORDER BY s ROWS BETWEEN
                            UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS below FROM g)
        SELECT k, sum(pos * (below + 0.5 * neg)) AS u, sum(pos) AS p, sum(neg) AS n,
               bool_or(missing) AS missing
        FROM c GROUP BY k""").fetchall()
    return {k: float("nan") if missing or not p or not n else float(u / (p * n))
            for k, u, p, n, missing in rows}
