"""Every registered model on a hand-made Batch (milliseconds, no data files): forward gives
one finite logit per row, its own loss trains through the TrainWrapper, and the wrapper is the
model's objective, not binary cross-entropy in its place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from recsys.dataset.episodes import EpisodeSampler
from recsys.dataset.loader import rows_batch
from recsys.models.registry import MODELS, build_model, model_class
from recsys.models.base import TrainWrapper, dense_parameters
from recsys.models.mmoe import MMoE
from synthetic import layout, split

torch.set_num_threads(1)


def _model(name: str):
    torch.manual_seed(0)
    cls = model_class(name)
    cfg = cls.Config(embedding_dim=8, **({"meta_tasks": 4} if hasattr(cls.Config, "meta_tasks")
                                         else {}))
    lay = layout()
    model = build_model(name, lay, cfg)
    data = split()
    if cls.capabilities.cold_path:  # every ID seen often: the warm path
        model.set_counts({"user_id": np.full(lay.num_embeddings[0], 50),
                          "item_id": np.full(lay.num_embeddings[1], 50)})
    sampler = EpisodeSampler(data, lay, cls.capabilities.episodes, cfg.meta_tasks, 0, k=2) \
        if cls.capabilities.episodes else None
    return model, lay, data, sampler


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_and_own_loss_train(name):
    model, lay, data, sampler = _model(name)
    batch = rows_batch(data, lay, slice(0, 128))
    logits = model(batch)
    assert logits.shape == (128,) and torch.isfinite(logits).all()
    trainer = TrainWrapper(model)
    opt = torch.optim.Adam(dense_parameters(model), lr=0.01)
    losses = []
    for step in range(30):
        rows = slice((step % 4) * 128, (step % 4 + 1) * 128)
        loss = trainer(rows_batch(data, lay, rows), sampler.next() if sampler else None)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses  # it learns


class WeightedMMoE(MMoE):
    """An objective of its own: clicks weigh three times a non-click."""

    def loss(self, batch, episode=None):
        weight = 1 + 2 * batch.labels
        return binary_cross_entropy_with_logits(self(batch), batch.labels, weight=weight)


def test_train_wrapper_is_the_models_own_objective():
    lay, data = layout(), split()
    model = WeightedMMoE(lay, WeightedMMoE.Config(embedding_dim=8))
    batch = rows_batch(data, lay, slice(0, 256))
    own, bce = model.loss(batch), binary_cross_entropy_with_logits(model(batch), batch.labels)
    assert TrainWrapper(model)(batch).item() == pytest.approx(own.item())
    assert abs(own.item() - bce.item()) > 0.1  # the test tells the two apart
