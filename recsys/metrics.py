"""Ranking and calibration metrics, vectorised."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

AUC_BATCH_ROWS = 1 << 18  # sorted rows summed at a time by auc_sql


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
    `by` (as text; one group, key None, without it), computed out of core. DuckDB sorts the
    rows by group and score (its sort spills to disk, where a GROUP BY over every distinct
    score did not); the rank-sum formula, ties counted half, is then summed a sorted batch at
    a time, a tie run cut by a batch's end carried into the next as two counts. A group with
    a missing score or one class gets NaN, as `auc` does."""
    key = f"CAST({by} AS VARCHAR)" if by else "NULL::VARCHAR"
    missing = f"{score} IS NULL OR isnan({score}::DOUBLE)"
    sums = {k: [0.0, 0.0, 0.0, bool(m)] for k, m in con.execute(  # U, pos, neg, missing
        f"SELECT {key}, bool_or({missing}) FROM {relation} GROUP BY ALL").fetchall()}
    reader = con.execute(f"""
        SELECT {key} AS k, {score}::DOUBLE AS s, {label}::DOUBLE AS y FROM {relation}
        WHERE NOT ({missing}) ORDER BY k, s""").fetch_record_batch(AUC_BATCH_ROWS)
    carry = None  # (group, score, positives, negatives) of the tie run the last batch ended in
    for batch in reader:
        k, s, y = (c.to_numpy(zero_copy_only=False) for c in batch.columns)
        starts = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]) | (s[1:] != s[:-1])])
        pos = np.add.reduceat(y, starts)
        neg = np.diff(np.r_[starts, len(y)]) - pos
        keys, scores = k[starts], s[starts]
        if carry is not None:
            if (carry[0], carry[1]) == (keys[0], scores[0]):
                pos[0], neg[0] = pos[0] + carry[2], neg[0] + carry[3]
            else:
                _add_carry(sums, carry)
        carry = (keys[-1], scores[-1], pos[-1], neg[-1])
        _add_runs(sums, keys[:-1], pos[:-1], neg[:-1])
    if carry is not None:
        _add_carry(sums, carry)
    return {k: float("nan") if missing or not p or not n else u / (p * n)
            for k, (u, p, n, missing) in sums.items()}


def _add_carry(sums: dict, carry: tuple) -> None:
    """Add the one tie run a batch ended in, once it is known to be whole."""
    _add_runs(sums, [carry[0]], np.array([carry[2]]), np.array([carry[3]]))


def _add_runs(sums: dict, keys, pos: np.ndarray, neg: np.ndarray) -> None:
    """Add tie runs, sorted by group and score, to each group's rank-sum: a run's positives
    rank above the negatives of the group's lower runs and level with half of its own."""
    keys = np.asarray(keys, dtype=object)
    if not len(keys):
        return
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(keys)]):  # a stretch per group: few
        acc = sums[keys[lo]]
        below = acc[2] + np.cumsum(neg[lo:hi]) - neg[lo:hi]
        acc[0] += float(pos[lo:hi] @ (below + 0.5 * neg[lo:hi]))
        acc[1] += float(pos[lo:hi].sum())
        acc[2] += float(neg[lo:hi].sum())
