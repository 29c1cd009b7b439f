"""Predictions and the metrics of a run: overall, per scenario, per cold-start subset, and the
Bayes AUC of `p_true` beside each."""

from __future__ import annotations

import numpy as np
import torch

from recsys.dataset.loader import BatchLoader, Layout, SplitData
from recsys.eval.metrics import auc, logloss
from recsys.schema import COLD_START_FLAGS, SCENARIO_NAMES

# Below this many rows, or with one class only, a subset gets no AUC: it would mean nothing.
MIN_ROWS = 100


@torch.no_grad()
def predict(model: torch.nn.Module, data: SplitData, layout: Layout,
            batch_size: int = 16384) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(b)).numpy() for b in BatchLoader(data, layout, batch_size)]
    return np.concatenate(out)


def _cell(labels: np.ndarray, probs: np.ndarray) -> dict:
    n = int(labels.size)
    if n < MIN_ROWS or labels.min() == labels.max():
        return {"auc": None, "logloss": None, "n": n, "note": "too few rows"}
    return {"auc": auc(labels, probs), "logloss": logloss(labels, probs), "n": n}


def compute_metrics(data: SplitData, probs: np.ndarray) -> dict:
    """The `overall` / `scenarios` / `subsets` / `oracle` blocks of metrics.json."""
    y = data.labels
    scenarios, oracle = {}, {}
    for code, name in SCENARIO_NAMES.items():
        mask = data.scenario == code
        scenarios[str(code)] = {"name": name, **_cell(y[mask], probs[mask])}
        oracle[str(code)] = _cell(y[mask], data.p_true[mask])["auc"]
    subsets, oracle_subsets = {}, {}
    for flag in COLD_START_FLAGS:
        mask = data.flags[flag]
        subsets[flag] = _cell(y[mask], probs[mask])
        oracle_subsets[flag] = _cell(y[mask], data.p_true[mask])["auc"]
    return {"overall": _cell(y, probs), "scenarios": scenarios, "subsets": subsets,
            "oracle": {"overall_auc": _cell(y, data.p_true)["auc"], "scenarios": oracle,
                       "subsets": oracle_subsets}}
