"""Every registered model on a hand-made Batch (milliseconds, no data files): forward gives
one finite logit per row, its own loss trains through the TrainWrapper, and the wrapper is the
model's objective, not binary cross-entropy in its place."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from recsys.dataset.episodes import EpisodeSampler
from recsys.dataset.loader import rows_batch
from recsys.metrics import auc as roc_auc
from recsys.models.registry import MODELS, build_model, model_class
from recsys.models.base import TrainWrapper, dense_parameters
from recsys.models.mmoe import MMoE
from synthetic import layout, one_request, split

torch.set_num_threads(1)


def _model(name: str, history: str = ""):
    torch.manual_seed(0)
    cls = model_class(name)
    cfg = cls.Config(embedding_dim=8, **({"meta_tasks": 4} if hasattr(cls.Config, "meta_tasks")
                                         else {}))
    history = history or cls.capabilities.history
    lay = layout(history)
    model = build_model(name, lay, cfg)
    data = split(history=bool(history))
    if cls.capabilities.cold_path:  # every ID seen often: the warm path
        model.set_counts({"user_id": np.full(lay.num_embeddings[0], 50),
                          "item_id": np.full(lay.num_embeddings[1], 50)})
    sampler = EpisodeSampler(data, lay, cls.capabilities.episodes, cfg.meta_tasks, 0, k=2) \
        if cls.capabilities.episodes else None
    return model, lay, data, sampler


# every model alone, and every model reading the user's history (--history; din always does)
CASES = [(name, history) for name in MODELS for history in ("", "attention", "mean")
         if not (history and MODELS[name].capabilities.history)
         and (history in ("", "attention") or name in ("mmoe", "two_tower", "dropoutnet", "maml"))
         and (not history or history in MODELS[name].capabilities.history_poolings)]


@pytest.mark.parametrize("name,history", CASES)
def test_forward_and_own_loss_train(name, history):
    model, lay, data, sampler = _model(name, history)
    batch = rows_batch(data, lay, slice(0, 128))
    logits = model(batch)
    assert logits.shape == (128,) and torch.isfinite(logits).all()
    trainer = TrainWrapper(model)
    # a rate at which none of the networks overshoots on 512 rows it can learn by heart
    opt = torch.optim.Adam(dense_parameters(model), lr=0.003)
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


@pytest.mark.parametrize("name,history", CASES)
def test_one_request_reads_its_history_once_and_scores_the_same(name, history):
    """A served request's rows share the user's side: its history looked up for its first
    row alone and broadcast (Batch.one_history), the first layers' shared columns multiplied
    once (SparseArch.networks); every model scores them as it scores the full batch."""
    model, lay, data, _ = _model(name, history)
    model.eval()
    data = one_request(data, lay)  # one user, scenario, context and history on every row
    request, hist = slice(0, 64), slice(data.ids.shape[1] - len(lay.history_keys), None)
    full, once = rows_batch(data, lay, request), rows_batch(data, lay, request, True)
    if lay.history_keys:
        assert (data.ids[request, hist] >= 0).sum() > 64
        assert once.sparse.values().numel() < full.sparse.values().numel()
    with torch.no_grad():
        torch.testing.assert_close(model(once), model(full), rtol=0, atol=1e-6)


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


@pytest.mark.parametrize("history", ["", "attention"])
def test_history_tells_a_click_only_the_history_knows(history):
    """Clicks are the candidate being among the user's last clicks: a model without the
    history cannot see it (AUC near 0.5); target attention over the history can."""
    torch.manual_seed(0)
    lay = layout(history)
    model = build_model("mmoe", lay, MMoE.Config(embedding_dim=8, embedding_lr=0.2))
    train, test = (split(2048, seed, history=True, label_in_history=True) for seed in (1, 2))
    opt = torch.optim.Adam(dense_parameters(model), lr=0.01)
    for epoch in range(12):
        for start in range(0, len(train), 128):
            loss = TrainWrapper(model)(rows_batch(train, lay, slice(start, start + 128)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        scores = torch.sigmoid(model(rows_batch(test, lay, slice(None)))).numpy()
    auc = roc_auc(test.labels, scores)
    assert (auc > 0.95) if history else (auc < 0.6), auc


def test_training_cuts_a_share_of_histories_to_their_latest_clicks():
    """history_truncation: in training, about that share of rows keep only their latest k
    clicks (k from 0 to their number), the others all; evaluation reads every click."""
    _, lay, data, _ = _model("din")
    model = build_model("din", lay, model_class("din").Config(embedding_dim=8,
                                                               history_truncation=0.5))
    pool = model.sparse.history
    held = rows_batch(data, lay, slice(None)).history_ids[:, :pool.length] >= 0
    torch.manual_seed(1)
    kept = pool._kept(held).squeeze(1)
    n = held.sum(1)
    assert (kept <= n).all() and (kept >= 0).all()
    some = n > 0
    cut = (kept < n)[some].float().mean().item()
    expected = pool.truncation * (n / (n + 1))[some].mean().item()  # k = n cuts nothing
    assert abs(cut - expected) < 0.05, (cut, expected)
    assert (held.long().cumsum(1)[:, -1] == n).all() and \
        (held[:, 1:] <= held[:, :-1]).all()  # the clicks held are a prefix: latest first
    calls = []
    pool._kept = lambda h: calls.append(1) or h.sum(1, keepdim=True)
    model.eval()
    with torch.no_grad():
        model(rows_batch(data, lay, slice(0, 64)))
    assert not calls  # evaluation never cuts


def test_history_items_share_the_item_table():
    """One table holds the candidate's and the history's items: a history key looks up the
    same rows as item_id, and no table is a copy."""
    model, lay, data, _ = _model("din")
    arch = model.sparse
    tables = arch.ebc.state_dict()
    assert sorted(tables) == sorted(f"embedding_bags.t_{n}.weight" for n in lay.sparse)
    batch = rows_batch(data, lay, slice(0, 64))
    pooled = arch.ebc(batch.sparse).to_dict()
    item_rows, held = batch.history_ids[:, 0], batch.history_ids[:, 0] >= 0
    expected = arch.table("item_id")[item_rows[held]]
    assert held.any() and torch.allclose(pooled["history_item_ids_0"][held], expected)
    assert (pooled["history_item_ids_0"][~held] == 0).all()  # no click: nothing looked up


def test_attention_equals_the_activation_unit_on_its_concatenated_input():
    """HistoryPool.weights splits the unit's first layer by part; it must give what the unit
    gives on DIN's input (candidate, click, difference, product, position) built whole."""
    model, lay, data, _ = _model("din")
    pool = model.sparse.history
    torch.manual_seed(3)
    for p in pool.parameters():  # away from the initial values, which are near zero
        p.data.normal_()
    q, h = torch.randn(7, pool.dim), torch.randn(7, pool.length, pool.dim)
    qq, where = q.unsqueeze(1).expand_as(h), pool.positions.expand_as(h)
    whole = pool.unit(torch.cat([qq, h, qq - h, qq * h, where], dim=-1))
    assert torch.allclose(pool.weights(q, h), whole, atol=1e-5, rtol=1e-4)


def test_star_gradients_repeat_exactly_on_two_threads():
    """star's per-scenario normalization picks each row's statistics by a one-hot matmul: an
    index's backward added the rows up in threads in no fixed order, so two runs of one seed
    drifted apart (the gradients differed at 1e-10 on these 4,096 rows)."""
    lay, data = layout(), split(rows=4096)
    batch = rows_batch(data, lay, slice(None))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(3):
            torch.manual_seed(0)
            model = build_model("star", lay, model_class("star").Config(embedding_dim=8))
            model.loss(batch).backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                    if p.grad is not None]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_star_normalizes_each_scenarios_dense_features_and_not_the_embeddings():
    """star's partitioned normalization: in training, each scenario's rows of the dense
    features leave it with mean 0 and variance 1 by that scenario's own statistics (whatever
    the other scenarios' scale); the embeddings reach the network as looked up."""
    lay, data = layout(), split(rows=512)
    batch = rows_batch(data, lay, slice(None))
    model = build_model("star", lay, model_class("star").Config(embedding_dim=8))
    assert model.norm.running_mean.shape == (len(lay.scenarios), len(lay.dense))
    seen = {}
    model.norm.register_forward_hook(lambda m, args, out: seen.update(out=out))
    model.sparse.backbone.register_forward_hook(lambda m, args, out: seen.update(rows=out))
    dense = batch.dense * (1 + 10 * batch.scenario.unsqueeze(1))  # a scale per scenario
    model(dataclasses.replace(batch, dense=dense))
    for s in batch.scenario.unique():
        rows = seen["out"][batch.scenario == s]
        assert torch.allclose(rows.mean(0), torch.zeros(rows.shape[1]), atol=1e-4)
        assert torch.allclose(rows.var(0, unbiased=False), torch.ones(rows.shape[1]), atol=1e-2)
    emb = model.sparse.lookup(batch).flatten(1)
    assert torch.equal(seen["rows"][:, :emb.shape[1]], emb)
