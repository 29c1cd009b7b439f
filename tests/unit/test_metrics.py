"""Metrics agree with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from recsys.metrics import auc, logloss


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.random(5000) < 0.3
        s = np.round(rng.random(5000) + 0.3 * y, 2)  # rounding makes many ties
        assert abs(auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_is_nan_for_a_single_class():
    assert math.isnan(auc(np.zeros(10), np.arange(10)))


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.random(1000) < 0.4
    p = rng.random(1000)
    assert abs(logloss(y, p) - log_loss(y, p)) < 1e-6


def test_auc_sql_matches_sklearn_per_group_across_batches(monkeypatch):
    """Out of core: ties, groups and runs split across the sorted batches it sums."""
    import duckdb
    import pyarrow as pa

    from recsys import metrics

    monkeypatch.setattr(metrics, "AUC_BATCH_ROWS", 97)  # many batches, groups cut across them
    rng = np.random.default_rng(2)
    y = (rng.random(6000) < 0.3).astype(np.int32)
    s = np.round(rng.random(6000) + 0.3 * y, 2)
    g = rng.integers(0, 4, 6000)
    s_missing = s.copy()
    s_missing[g == 3] = np.nan  # a group with a missing score: NaN, as auc gives
    con = duckdb.connect()
    con.register("t", pa.table({"label": y, "s": s, "g": g, "m": s_missing,
                                "one": np.zeros(6000, np.int32), "half": np.full(6000, 0.5)}))
    per_group = metrics.auc_sql(con, "t", by="g", score="s")
    assert set(per_group) == {"0", "1", "2", "3"}
    for k in range(4):
        assert abs(per_group[str(k)] - roc_auc_score(y[g == k], s[g == k])) < 1e-9
    assert abs(metrics.auc_sql(con, "t", score="s")[None] - roc_auc_score(y, s)) < 1e-9
    with_missing = metrics.auc_sql(con, "t", by="g", score="m")
    assert math.isnan(with_missing["3"]) and not math.isnan(with_missing["0"])
    assert math.isnan(metrics.auc_sql(con, "t", label="one", score="s")[None])
    assert metrics.auc_sql(con, "t", score="half")[None] == 0.5  # one tie run, many batches


def test_auc_sql_spills_beyond_a_small_budget(tmp_path):
    """A million distinct scores under DuckDB's smallest budget (64 MB): the sort spills to
    disk, and the AUC is still exact."""
    import duckdb

    from recsys.data.offline import limit_memory
    from recsys.metrics import auc_sql

    con = duckdb.connect()
    limit_memory(con, 64 * 2 ** 20, tmp_path)
    con.execute("CREATE TABLE t AS SELECT (random() < 0.3)::INT AS label, random() AS s, "
                "i % 3 AS g FROM range(1000000) r(i)")
    got = auc_sql(con, "t", by="g", score="s")
    cols = con.execute("SELECT label, s, g FROM t").fetchnumpy()
    for k in range(3):
        mask = cols["g"] == k
        assert abs(got[str(k)] - auc(cols["label"][mask], cols["s"][mask])) < 1e-9
