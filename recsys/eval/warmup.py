"""The warm-up protocol for new items (as in MetaEmb / CVAR).

New items are those with no training interaction. Their later rows (validation and test days,
in time order) are cut per item into warm-up batches a, b and c of `k` rows each, and the rest
is the evaluation set. AUC on it is measured cold, then after the model has seen each warm-up
batch. A warm-up step moves only the new items' ID embedding rows (every other weight is
restored after it), with the model's own sparse optimizer at a small rate: a new row has no
Adagrad history, so its first steps would otherwise take the full training rate. A model with
a cold path first sets those rows so that warm-up starts from what it would serve cold."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from recsys.dataset.episodes import Histories
from recsys.dataset.layout import Layout
from recsys.dataset.loader import BatchLoader, rows_batch, SplitData
from recsys.eval.evaluate import MIN_ROWS, predict
from recsys.metrics import auc
from recsys.models.base import SparseArch, set_sparse_lr
from recsys.schema import ITEM_ID

STAGES = ("cold", "warm-a", "warm-b", "warm-c")
WARMUP_K = 2  # rows per new item in each warm-up batch
WARMUP_LR = 0.01  # the rows' step size during warm-up (training's is ModelConfig.embedding_lr)
ITEM = ITEM_ID


def warmup_sets(train: SplitData, later: SplitData, layout: Layout,
                k: int = WARMUP_K) -> tuple[np.ndarray, list[SplitData], SplitData]:
    """(new item IDs, warm-up batches a/b/c, evaluation rows) from the rows after training."""
    slot = layout.slot(ITEM)
    seen = np.zeros(layout.num_embeddings[slot], dtype=bool)
    seen[train.ids[:, slot]] = True
    seen[-1] = True  # the unknown row is not an item
    later = later.take(np.flatnonzero(~seen[later.ids[:, slot]]))
    h = Histories(later, slot)
    keep = h.count > 3 * k
    start, count = h.start[keep], h.count[keep]
    batches = [later.take(h.rows[(start[:, None] + np.arange(i * k, (i + 1) * k)).ravel()])
               for i in range(3)]
    rest = np.concatenate([h.rows[s + 3 * k:s + c] for s, c in zip(start, count)]) \
        if keep.any() else np.zeros(0, dtype=np.int64)
    return h.entity[keep], batches, later.take(rest)


def _auc(model, data: SplitData, layout: Layout, history: SplitData) -> float | None:
    if len(data) < MIN_ROWS or data.labels.min() == data.labels.max():
        return None
    return auc(data.labels, predict(model, data, layout, history))


def warmup_curve(model: torch.nn.Module, layout: Layout, train: SplitData, later: SplitData,
                 k: int = WARMUP_K, batch_size: int = 256, lr: float = WARMUP_LR) -> dict:
    """AUC on the new items' evaluation rows at each stage. Changes the model's weights."""
    items, batches, evaluation = warmup_sets(train, later, layout, k)
    cold = _auc(model, evaluation, layout, train)  # None without enough rows (or items)
    curve = {"items": int(len(items)), "eval_rows": len(evaluation), "k": k, "lr": lr,
             "auc": {STAGES[0]: cold}}
    if cold is None:
        curve["note"] = "too few rows"
        return curve
    curve["bayes_auc"] = auc(evaluation.labels, evaluation.p_true)
    rows = torch.from_numpy(items)
    arches = [m for m in model.modules() if isinstance(m, SparseArch)]
    if model.capabilities.cold_path:  # start from the cold path's embedding
        model.start_from_cold(ITEM, rows, rows_batch(batches[0], layout,
                                                     slice(0, None, k)))  # one row per item
    set_sparse_lr(model, lr)
    for stage, batch_data in zip(STAGES[1:], batches):
        saved = [{n: a.table(n).clone() for n in layout.sparse} for a in arches]
        model.eval()
        for batch in BatchLoader(batch_data, layout, batch_size, shuffle=True):
            loss = binary_cross_entropy_with_logits(model(batch), batch.labels)
            loss.backward()  # the fused sparse optimizer updates the rows it touched
            model.zero_grad()  # the dense weights never move
        with torch.no_grad():  # undo every change but the new items' rows
            for arch, tables in zip(arches, saved):
                warmed = arch.table(ITEM)[rows].clone()
                for name, before in tables.items():
                    arch.table(name).copy_(before)
                arch.table(ITEM)[rows] = warmed
        curve["auc"][stage] = _auc(model, evaluation, layout, train)
    return curve
