"""Metrics agree with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from recsys.eval.metrics import auc, logloss


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
