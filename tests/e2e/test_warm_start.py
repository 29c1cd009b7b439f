"""`recsys train --init-from RUN` on the tiny preset: a warm-started model scores the test rows
exactly as its parent did before any step; on data with more users and items the known IDs keep
their rows (and row-wise optimizer state), the new ones get a fresh run's rows; incompatible
parents are refused with one line; config.json records the lineage."""

from __future__ import annotations

from dataclasses import replace

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import error_lines, run
from recsys.dataset.layout import Layout
from recsys.dataset.meta import DatasetMeta
from recsys.dataset.stream import SplitFiles, StreamLoader
from recsys.eval.evaluate import predict_stream
from recsys.models.base import TrainWrapper, dense_parameters, sparse_optimizers
from recsys.errors import UsageError
from recsys.models.registry import build_model, model_class
from recsys.run import SCORES, Run
from recsys.schema import ITEM_ID, USER_ID
from recsys.config import TrainConfig
from recsys.train.loop import train
from recsys.train.warm_start import parent_layout, warm_start

QUIET = {"progress": False, "log": lambda *a, **k: None}
MODELS = ("mmoe", "dropoutnet")  # a plain model, and one whose cold path counts IDs


@pytest.fixture(scope="module")
def parents(tiny, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("warm")
    for model in MODELS:
        train(tiny["dataset"], base / model, TrainConfig(model=model, epochs=1, batch_size=512),
              **QUIET)
    return {"base": base, **{m: Run(base / m) for m in MODELS}}


def _child(parent: Run, cfg: TrainConfig, layout: Layout):
    """A model built as a fresh run of `cfg` would be, warm-started from `parent`."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, layout, cfg.model_config)
    dense_opt = torch.optim.Adam(dense_parameters(model), lr=cfg.dense_lr)
    sparse = sparse_optimizers(TrainWrapper(model))
    kept = warm_start(model, parent, parent_layout(parent, cfg, layout), layout, dense_opt,
                      sparse)
    return model, sparse, kept


@pytest.mark.parametrize("model", MODELS)
def test_a_warm_start_scores_as_its_parent_before_any_step(tiny, parents, model):
    parent = parents[model]
    layout = parent.layout()
    child, _, kept = _child(parent, parent.config(), layout)
    assert kept  # a one-process parent keeps its optimizer state
    files = SplitFiles(tiny["dataset"], "test", layout)
    scores = predict_stream(child, StreamLoader(files, layout, 4096))
    expected = pq.read_table(parent.path / SCORES.format(split="test"))["score"].to_numpy()
    np.testing.assert_array_equal(scores.astype(np.float32), expected)


def test_an_update_that_does_not_beat_its_parent_on_validation_keeps_the_parents_weights(
        tiny, parents, tmp_path):
    """The parent's weights are the epoch to beat: a rate that wrecks the model (every epoch
    worse on validation) leaves the run scoring the test rows exactly as the parent did."""
    parent = parents["mmoe"]
    cfg = replace(parent.config(), dense_lr=50.0, epochs=2, patience=1,
                  model_config=replace(parent.config().model_config, embedding_lr=50.0))
    metrics = train(tiny["dataset"], tmp_path / "child", cfg, init_from=parent.path, **QUIET)
    start = metrics["train"]["start_val_auc"]
    assert all(e["val_auc"] <= start for e in metrics["train"]["history"])
    assert metrics["train"]["best_epoch"] == 0 and metrics["train"]["epochs"] == 1  # patience
    expected = pq.read_table(parent.path / SCORES.format(split="test"))["score"].to_numpy()
    scores = pq.read_table(tmp_path / "child" / SCORES.format(split="test"))["score"]
    np.testing.assert_array_equal(scores.to_numpy(), expected)


def test_the_parents_optimizer_state_comes_with_this_runs_rates(parents):
    """An update may train at another rate than its parent: the moments are the parent's, the
    rates (dense and row-wise) the child's config."""
    from dataclasses import replace

    parent = parents["mmoe"]
    cfg = parent.config()
    cfg = replace(cfg, dense_lr=cfg.dense_lr / 10,
                  model_config=replace(cfg.model_config, embedding_lr=0.2))
    layout = parent.layout()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, layout, cfg.model_config)
    dense_opt = torch.optim.Adam(dense_parameters(model), lr=cfg.dense_lr)
    sparse = sparse_optimizers(TrainWrapper(model))
    assert warm_start(model, parent, layout, layout, dense_opt, sparse)
    assert [g["lr"] for g in dense_opt.param_groups] == [cfg.dense_lr]
    saved = parent.optimizer_state()["dense_opt"]
    assert saved["param_groups"][0]["lr"] == parent.config().dense_lr != cfg.dense_lr
    first = next(iter(saved["state"]))
    torch.testing.assert_close(dense_opt.state_dict()["state"][first]["exp_avg"],
                               saved["state"][first]["exp_avg"])
    assert all(abs(g["lr"] - 0.2) < 1e-6 for opt in sparse for g in opt.param_groups)


def test_grown_tables_keep_the_known_rows_and_start_the_new_ones_fresh(tiny, parents):
    parent = parents["mmoe"]
    cfg, meta = parent.config(), DatasetMeta.read(tiny["dataset"])
    grown = Layout.from_meta(replace(meta, n_users=meta.n_users + 7, n_items=meta.n_items + 3))
    child, sparse, _ = _child(parent, cfg, grown)
    torch.manual_seed(cfg.seed)
    fresh = build_model(cfg.model, grown, cfg.model_config).state_dict()
    saved, now = parent.state_dict(), child.state_dict()
    optim = parent.optimizer_state()["fused_opts"][0]["state"]
    grown_optim = sparse[0].state_dict()["state"]
    for name, added in ((USER_ID, 7), (ITEM_ID, 3)):
        key = next(k for k in now if k.endswith(f"t_{name}.weight"))
        old, new = saved[key], now[key]
        assert new.shape[0] == old.shape[0] + added
        torch.testing.assert_close(new[:old.shape[0] - 1], old[:-1])  # the known IDs
        torch.testing.assert_close(new[-1], old[-1])  # the unknown row stays the unknown row
        torch.testing.assert_close(new[old.shape[0] - 1:-1], fresh[key][old.shape[0] - 1:-1])
        assert not torch.equal(new[old.shape[0] - 1:-1], old[-1].expand(added, -1))
        momentum = f"t_{name}.weight"
        (before,), (after,) = optim[momentum].values(), grown_optim[momentum].values()
        torch.testing.assert_close(after[:before.numel() - 1], before[:-1])
        assert after[-1] == before[-1] and not after[before.numel() - 1:-1].any()
        assert before[:-1].any()  # trained rows carry state to keep


def test_the_cli_records_the_lineage_and_counts_the_parents_ids(tiny, parents):
    out = parents["base"] / "child"
    run("recsys", "train", "--model", "dropoutnet", "--dataset", str(tiny["dataset"]),
        "--epochs", "1", "--batch-size", "512", "--init-from",
        str(parents["dropoutnet"].path), "--out", str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"] == str(parents["dropoutnet"].path)
    assert config["init_fingerprint"] == parents["dropoutnet"].fingerprint()
    # an ID is as often seen as the parent's training and the child's together
    counts = {k: v for k, v in Run(out).state_dict().items() if k.endswith("_counts")}
    parent = {k: v for k, v in parents["dropoutnet"].state_dict().items()
              if k.endswith("_counts")}
    for key, value in counts.items():
        torch.testing.assert_close(value, 2 * parent[key])


@pytest.mark.parametrize("change, says", [
    ({"model": "dnn"}, "model: the parent's 'mmoe', this run's 'dnn'"),
    ({"modalities": ("text",)}, "modalities: the parent's [], this run's ['text']"),
    ({"hashed_rows": {USER_ID: 64}}, "hashed rows: the parent's {}, this run's {'user_id': 64}"),
    ({"model_config": model_class("mmoe").Config(embedding_dim=32)},
     "model_config.embedding_dim: the parent's 16, this run's 32"),
])
def test_incompatible_parents_are_refused(tiny, parents, tmp_path, change, says):
    cfg = TrainConfig(**{"model": "mmoe", "epochs": 1, **change})
    with pytest.raises(UsageError, match=re.escape(says)):
        train(tiny["dataset"], tmp_path / "child", cfg, init_from=parents["mmoe"].path, **QUIET)
    assert not (tmp_path / "child").exists()  # refused before anything was written


def test_the_cli_refuses_in_one_line(tiny, parents, tmp_path):
    result = run("recsys", "train", "--model", "dnn", "--dataset", str(tiny["dataset"]),
                 "--init-from", str(parents["mmoe"].path), "--out", str(tmp_path / "child"),
                 check=False)
    lines = error_lines(result.stderr)
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "--init-from" in lines[0] and "model: the parent's 'mmoe'" in lines[0]


def test_a_folder_that_is_not_a_run_is_refused(tiny, tmp_path):
    result = run("recsys", "train", "--model", "mmoe", "--dataset", str(tiny["dataset"]),
                 "--init-from", str(tmp_path), "--out", str(tmp_path / "child"), check=False)
    assert result.returncode != 0 and "not a finished run" in result.stderr
