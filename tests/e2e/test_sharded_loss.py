"""A model's own loss is what trains under DistributedModelParallel: the same model from the
same weights, on the same full batches, trained in one process and sharded over two (gloo),
has the same loss history to float tolerance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

from recsys.dataset.layout import Layout
from recsys.dataset.meta import DatasetMeta
from recsys.models.registry import MODELS
from recsys.run import SHARDED_BEST, Run
from recsys.config import TrainConfig
from recsys.train.distributed import Ranks
from recsys.train.loop import train
from serving import free_port
from weighted_model import NAME, WeightedMMoE, register

QUIET = {"progress": False, "log": lambda *a, **k: None}


def _config(batch_size: int) -> TrainConfig:
    # one full batch a step in both runs: 2 processes take half of it each
    return TrainConfig(model=NAME, epochs=3, patience=3, batch_size=batch_size)


def _rank(rank: int, world: int, port: int, dataset: Path, out: Path, init: Path,
          batch_size: int) -> None:
    """One process of the sharded run, placed as torchrun would place it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    register()
    ranks = Ranks.start("cpu")
    try:
        train(dataset, out, _config(batch_size), ranks=ranks, init_from=init, **QUIET)
    finally:
        ranks.stop()


def test_own_loss_trains_the_same_on_one_and_two_processes(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, NAME, WeightedMMoE)
    dataset = tiny["dataset"]
    meta = DatasetMeta.read(dataset)
    rows = meta.rows("train")
    batch_size = rows + rows % 2  # even, and the whole split: no row left out on 2 ranks
    # the starting weights both runs load (a sharded run's own tables start elsewhere)
    torch.manual_seed(0)
    start = WeightedMMoE(Layout.from_meta(meta), _config(batch_size).model_config)
    init = tmp_path / "init"
    dcp.save({"model": start.state_dict()}, checkpoint_id=init / SHARDED_BEST, no_dist=True)
    parent = _config(batch_size)
    parent.resolve_for_data(False)  # as a trained run's config says it
    Run(init).write_start(parent.to_json(), meta)  # what a warm start checks

    one = train(dataset, tmp_path / "one", _config(batch_size), init_from=init, **QUIET)
    mp.spawn(_rank, args=(2, free_port(), dataset, tmp_path / "two", init, batch_size),
             nprocs=2, join=True)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())

    assert two["nproc"] == 2
    losses = [[h["train_loss"] for h in m["train"]["history"]] for m in (one, two)]
    assert len(losses[0]) == len(losses[1]) == 3
    assert losses[1] == pytest.approx(losses[0], rel=1e-4), losses
    # the weighted objective, not plain cross-entropy (about 0.69 at the start)
    assert losses[0][0] > 0.9, losses
