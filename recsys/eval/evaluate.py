"""Predictions and the metrics of a run: overall, per scenario, per cold-start subset, and the
Bayes AUC of `p_true` beside each."""

from __future__ import annotations

import numpy as np
import torch

from recsys.dataset.loader import BatchLoader, Layout, SplitData
from recsys.eval.metrics import auc, logloss
from recsys.schema import COLD_START_FLAGS, SCENARIO_NAMES

EVAL_BATCH = 16384  # rows per batch when scoring a split
# Below this many rows, or with one class only, a subset gets no AUC: it would mean nothing.
MIN_ROWS = 100


@torch.no_grad()
def predict(model: torch.nn.Module, data: SplitData, layout: Layout,
            history: SplitData | None = None, batch_size: int = EVAL_BATCH,
            device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Click probabilities of every row. Models that adapt to a user's history at test time
    (maml, melu) get the training split as `history`."""
    model.eval()
    out = [torch.sigmoid(model(b.to(device))).cpu().numpy()
           for b in BatchLoader(data, layout, batch_size)]
    probs = np.concatenate(out)
    if history is not None and hasattr(model, "predict_split"):
        probs = model.predict_split(data, layout, history, probs)
    return probs


@torch.no_grad()
def predict_stream(model: torch.nn.Module, loader,
                   device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Click probabilities of every row a (non-shuffling) StreamLoader yields, in order: only
    the probabilities are kept, the model inputs stream through."""
    model.eval()
    out = [torch.sigmoid(model(b.to(device))).cpu().numpy() for b in loader]
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
    subsets, oracle_subsets, oracle_subset_scenarios = {}, {}, {}
    for flag in COLD_START_FLAGS:
        mask = data.flags[flag]
        subsets[flag] = {**_cell(y[mask], probs[mask]), "scenarios": {}}
        oracle_subsets[flag] = _cell(y[mask], data.p_true[mask])["auc"]
        oracle_subset_scenarios[flag] = {}
        # per scenario too, where the counts allow (smaller cells say "too few rows")
        for code in SCENARIO_NAMES:
            if (m := mask & (data.scenario == code)).any():
                subsets[flag]["scenarios"][str(code)] = _cell(y[m], probs[m])
                oracle_subset_scenarios[flag][str(code)] = _cell(y[m], data.p_true[m])["auc"]
    return {"overall": _cell(y, probs), "scenarios": scenarios, "subsets": subsets,
            "oracle": {"overall_auc": _cell(y, data.p_true)["auc"], "scenarios": oracle,
                       "subsets": oracle_subsets,
                       "subset_scenarios": oracle_subset_scenarios}}
