"""The dot part on a hand-made Batch: <user, item> + <mean of the history's items, item>, each
from its own table, equals the same products computed from the tables by hand; the cold path
zeroes the terms of a cold user or item."""

from __future__ import annotations

import torch

from recsys.dataset.loader import rows_batch
from recsys.models.base import DotInteraction
from recsys.models.config import ModelConfig
from synthetic import layout, split


def test_the_dot_part_is_mf_plus_the_history_mean():
    torch.manual_seed(0)
    lay = layout("mean")
    dot = DotInteraction(lay, ModelConfig(embedding_dim=8))
    batch = rows_batch(split(history=True), lay, slice(0, 64))
    weights = dot.ebc.state_dict()
    users, items, history = (weights[f"embedding_bags.dot_{t}.weight"]
                             for t in ("user", "item", "history"))
    u = users[batch.ids[:, lay.slot("user_id")]]
    v = items[batch.ids[:, lay.slot("item_id")]]
    ids = batch.history_ids[:, :lay.history_length]
    held = (ids >= 0).unsqueeze(-1).float()
    pooled = (history[ids.clamp(min=0)] * held).sum(1) / held.sum(1).clamp(min=1)
    expected = (u * v).sum(1) + (pooled * v).sum(1)
    assert torch.allclose(dot(batch), expected, atol=1e-6)
    assert held.sum(1).min() == 0  # rows without a click are among them
    cold_user = torch.arange(64) % 2 == 0
    cold = {"user_id": cold_user, "item_id": torch.zeros(64, dtype=torch.bool)}
    assert torch.allclose(dot(batch, cold), torch.where(cold_user, (pooled * v).sum(1),
                                                        expected), atol=1e-6)
    cold = {"user_id": torch.zeros(64, dtype=torch.bool), "item_id": torch.ones(64, dtype=bool)}
    assert torch.allclose(dot(batch, cold), torch.zeros(64))


def test_mf_first_adds_the_biases_and_starts_as_the_mf_alone():
    """mf-first: the dot part is logistic MF, <user, item> + <history mean, item> + b_user +
    b_item (the tables' last BIAS_WIDTH columns, summed); a model's logit is that alone while
    the network's scale is 0, and the network's part joins once the scale moves."""
    from recsys.models.registry import build_model

    torch.manual_seed(0)
    lay = layout("mean")
    cfg = build_model("dnn_mixed", lay).Config(embedding_dim=8, interaction="mf-first")
    model = build_model("dnn_mixed", lay, cfg)
    dot = model.sparse.dot
    batch = rows_batch(split(history=True), lay, slice(0, 64))
    weights = dot.ebc.state_dict()
    users, items, history = (weights[f"embedding_bags.dot_{t}.weight"]
                             for t in ("user", "item", "history"))
    assert users.shape[1] == items.shape[1] == 8 + dot.BIAS_WIDTH
    u = users[batch.ids[:, lay.slot("user_id")]]
    v = items[batch.ids[:, lay.slot("item_id")]]
    ids = batch.history_ids[:, :lay.history_length]
    held = (ids >= 0).unsqueeze(-1).float()
    pooled = (history[ids.clamp(min=0)] * held).sum(1) / held.sum(1).clamp(min=1)
    expected = (u[:, :8] * v[:, :8]).sum(1) + (pooled[:, :8] * v[:, :8]).sum(1) + \
        u[:, 8:].sum(1) + v[:, 8:].sum(1)
    assert torch.allclose(dot(batch), expected, atol=1e-6)
    assert torch.allclose(model(batch), expected, atol=1e-6)  # the scale is 0: the MF alone
    with torch.no_grad():
        model.sparse.network_scale.fill_(1.0)
    assert not torch.allclose(model(batch), expected, atol=1e-3)  # the network joined
