"""Cold-start methods, measured side by side in one run:
- training examples/s of dropoutnet, metaemb, maml and melu next to dnn_mixed on the same
  batches (each method's full objective: meta-learning steps included);
- test-time adaptation of maml / melu: seconds per few-shot user."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from bench_training import BATCH, ROUNDS, STEPS, _batches, _train_steps
from conftest import RESULTS
from recsys.dataset.layout import Layout
from recsys.dataset.loader import load_split
from recsys.dataset.meta import DatasetMeta
from recsys.eval.evaluate import predict
from recsys.dataset.episodes import EpisodeSampler
from recsys.models.registry import build_model, model_names
from recsys.models.cold import COLD_ENTITIES
from recsys.schema import FEW_SHOT_MAX, USER_ID


@pytest.fixture(scope="module")
def splits(built_dataset):
    layout = Layout.from_meta(DatasetMeta.read(built_dataset))
    return layout, load_split(built_dataset, "train", layout), \
        load_split(built_dataset, "test", layout)


def _model(name, layout, train):
    """The model as `recsys train` prepares it (counts, episodes) and its sampler."""
    torch.manual_seed(0)
    model = build_model(name, layout)
    can = model.capabilities
    if can.cold_path:
        model.set_counts({n: np.bincount(train.ids[:, layout.slot(n)],
                                         minlength=layout.num_embeddings[layout.slot(n)])
                          for n in COLD_ENTITIES})
    sampler = EpisodeSampler(train, layout, can.episodes, model.cfg.meta_tasks, 0) \
        if can.episodes else None
    return model, sampler


@pytest.mark.parametrize("name", ["dnn_mixed", *model_names(family="cold-start")])
def test_training_examples_per_second(benchmark, splits, name):
    layout, train, _ = splits
    (model, sampler), batches = _model(name, layout, train), _batches(layout, train)
    benchmark.group = "cold-start methods vs dnn_mixed"
    benchmark.pedantic(lambda: _train_steps(model, batches, sampler), rounds=ROUNDS,
                       iterations=1, warmup_rounds=1)
    RESULTS[f"{name} training examples/s"] = STEPS * BATCH / benchmark.stats.stats.mean


@pytest.mark.parametrize("name", ["maml", "melu"])
def test_adaptation_seconds_per_user(benchmark, splits, name):
    layout, train, test = splits
    model, _ = _model(name, layout, train)
    users = test.ids[:, layout.slot(USER_ID)]
    counts = model.user_id_counts[torch.from_numpy(users)].numpy()
    n_users = len(np.unique(users[(counts >= 1) & (counts <= FEW_SHOT_MAX)]))
    plain = predict(model, test, layout)

    def adapt():
        start = time.perf_counter()
        model.predict_split(test, layout, train, plain)
        return time.perf_counter() - start

    benchmark.group = "test-time adaptation"
    benchmark.pedantic(adapt, rounds=ROUNDS, iterations=1)
    RESULTS[f"{name} adaptation s/user ({n_users:,} few-shot users)"] = \
        benchmark.stats.stats.mean / max(n_users, 1)
