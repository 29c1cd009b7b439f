"""two_tower on hand-made batches: the user's vector never sees the candidate item, its loss
is the in-batch softmax with the logQ correction written out by hand, and the streaming
frequency estimate finds how often an item is clicked."""

from __future__ import annotations

import math

import torch

from recsys.dataset.batch import Batch, kjt
from recsys.dataset.loader import rows_batch
from recsys.models.registry import build_model, model_class
from synthetic import layout, split

torch.set_num_threads(1)


def _two_tower():
    torch.manual_seed(0)
    cls = model_class("two_tower")
    lay = layout("mean")  # the user's history too
    return build_model("two_tower", lay, cls.Config(embedding_dim=8)), lay, split(history=True)


def test_the_users_vector_never_sees_the_candidate_item():
    model, lay, data = _two_tower()
    model.eval()
    batch = rows_batch(data, lay, slice(0, 64))
    ids = batch.ids.clone()
    for name in lay.sparse:  # every item feature of the rows changed, the rest kept
        if lay.owners[lay.slot(name)] == "item":
            column = lay.slot(name)
            ids[:, column] = (ids[:, column] + 1) % (lay.num_embeddings[column] - 1)
    with torch.no_grad():
        user, item = model.vectors(batch)
        user2, item2 = model.vectors(_rebuilt(batch, ids, lay))
    assert torch.allclose(user, user2)
    assert not torch.allclose(item, item2)  # the test has teeth: the items did change


def _rebuilt(batch, ids, lay):
    """The batch with another ID matrix (and its KJT)."""
    return Batch(kjt(lay.kjt_keys, ids, lay.widths, len(lay.history_keys)), ids, batch.dense,
                 batch.labels, batch.scenario, batch.vectors, batch.widths, batch.history)


def test_the_loss_is_the_in_batch_softmax_with_the_log_frequency_correction():
    model, lay, data = _two_tower()
    model.eval()  # no counting: the frequencies stay as set
    model.step_gap[:] = torch.arange(1, len(model.step_gap) + 1, dtype=torch.float64)
    batch = rows_batch(data, lay, slice(0, 96))
    with torch.no_grad():
        user, item = model.vectors(batch)
        got = model.loss(batch).item()
    rows = [i for i in range(len(batch)) if batch.labels[i] > 0]
    items = [int(batch.ids[i, lay.slot("item_id")]) for i in rows]
    assert len(rows) > 10 and len(set(items)) < len(items)  # duplicates are exercised
    total = 0.0
    for a, i in enumerate(rows):
        def logit(b):
            return float(user[i] @ item[rows[b]]) / model.temperature - \
                math.log(1 / (items[b] + 1))
        others = [b for b in range(len(rows)) if b == a or items[b] != items[a]]
        total += -logit(a) + math.log(sum(math.exp(logit(b)) for b in others))
    assert abs(got - total / len(rows)) < 1e-4


def test_the_frequency_estimate_finds_how_often_an_item_is_clicked():
    model, _, _ = _two_tower()
    model.decay = 0.05
    for step in range(2000):  # item 3 in every batch, item 5 in every fourth
        model._count(torch.tensor([3, 5] if step % 4 == 0 else [3]))
    assert abs(model.step_gap[3].item() - 1) < 0.01
    assert abs(model.step_gap[5].item() - 4) < 0.1
