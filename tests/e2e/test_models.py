"""The model contract, model by model on the tiny preset: every registered model trains (its
loss falls), reloads from its run folder alone to the scores it stored, and a run interrupted
mid-epoch resumes to the history of an uninterrupted one (the meta-learning models' episodes
included); configs come from files, land whole in config.json, and a bad key or value is one
line."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import ROOT, error_lines, run
from recsys.dataset.layout import Layout
from recsys.dataset.loader import load_split
from recsys.dataset.meta import DatasetMeta
from recsys.errors import UsageError
from recsys.eval.evaluate import predict
from recsys.models.registry import MODELS, build_model, model_class
from recsys.config import PROVENANCE, TrainConfig, read_config, resolve
from recsys.run import CONFIG, SCORES, Run
from recsys.train.loop import train

QUIET = {"progress": False, "log": lambda *a, **k: None}


class Interrupt(Exception):
    """Stands for a kill: raised where the first epoch's result is logged, after the
    mid-epoch checkpoints and before the epoch-end one."""


def _stop_after_epoch_one(line: str) -> None:
    if "epoch 1:" in line:
        raise Interrupt


@pytest.fixture(scope="module")
def splits(tiny):
    layout = Layout.from_meta(DatasetMeta.read(tiny["dataset"]))
    return layout, load_split(tiny["dataset"], "train", layout), \
        load_split(tiny["dataset"], "test", layout)


def _config(name: str) -> TrainConfig:
    cfg = TrainConfig(model=name, epochs=2, batch_size=1024, checkpoint_every=5, patience=2)
    cfg.model_config.embedding_dim = 8
    return cfg


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_reloads_and_resumes(tiny, splits, tmp_path, name):
    layout, train_split, test = splits
    whole = train(tiny["dataset"], tmp_path / "whole", _config(name), **QUIET)
    history = whole["train"]["history"]
    assert history[1]["train_loss"] < history[0]["train_loss"], history  # it learns

    # the run folder alone rebuilds the model: no training split is read
    own = Run(tmp_path / "whole").layout()
    if own != layout:  # it reads the history: the run's inputs
        layout = own
        test, train_split = (load_split(tiny["dataset"], s, layout) for s in ("test", "train"))
    model = Run(tmp_path / "whole").load_model(layout)
    adapts = model_class(name).capabilities.adapts  # maml / melu adapt few-shot users on
    probs = predict(model, test, layout, train_split if adapts else None)  # their history
    stored = pq.read_table(tmp_path / "whole" / SCORES.format(split="test"))["score"]
    assert np.array_equal(stored.to_numpy(), probs)

    with pytest.raises(Interrupt):  # killed mid-epoch: its step-5 and step-10 checkpoints
        train(tiny["dataset"], tmp_path / "resumed", _config(name), progress=False,
              log=_stop_after_epoch_one)
    resumed = train(tiny["dataset"], tmp_path / "resumed", _config(name), **QUIET)
    assert resumed["train"]["history"] == history
    assert resumed["overall"] == whole["overall"]


def test_mf_first_trains_the_mf_alone_then_the_network_joins_and_resumes(tiny, tmp_path):
    """mf-first: the first stage moves the dot part's tables alone (every other weight is as
    built, the network's scale 0); then the network joins at full weight; a run killed in the
    first stage resumes across the switch to the same epochs and scores; a warm start from it
    trains both from its first epoch (its parent's MF is trained), and as mf-first where its
    interaction is left out (the parent's)."""
    def config() -> TrainConfig:
        cfg = _config("dnn_mixed")
        cfg.epochs, cfg.model_config.interaction = 1, "mf-first"
        return cfg

    with pytest.raises(Interrupt):
        train(tiny["dataset"], tmp_path / "mf", config(), progress=False,
              log=_stop_after_epoch_one)
    after_mf = torch.load(tmp_path / "mf" / "checkpoint.pt", weights_only=False)["model"]
    torch.manual_seed(0)
    built = build_model("dnn_mixed", Run(tmp_path / "mf").layout(),
                        config().model_config).state_dict()
    moved = {k for k, v in built.items() if not torch.equal(v, after_mf[k])}
    assert moved and all(k.startswith("sparse.dot.") for k in moved), moved
    assert float(after_mf["sparse.network_scale"]) == 0.0

    resumed = train(tiny["dataset"], tmp_path / "mf", config(), **QUIET)
    whole = train(tiny["dataset"], tmp_path / "whole", config(), **QUIET)
    assert [h["stage"] for h in whole["train"]["history"]] == ["mf", "joint"]
    assert resumed["train"]["history"] == whole["train"]["history"]
    assert resumed["overall"] == whole["overall"]
    joined = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    assert float(joined["sparse.network_scale"]) != 0.0
    # left out, the interaction is the parent's (dnn_mixed without a history would take dot)
    unset = config()
    unset.model_config.interaction = ""
    update = train(tiny["dataset"], tmp_path / "update", unset, init_from=tmp_path / "whole",
                   **QUIET)
    assert [h["stage"] for h in update["train"]["history"]] == ["joint"]
    assert Run(tmp_path / "update").config().model_config.interaction == "mf-first"


def test_a_config_file_overrides_defaults_and_lands_in_config_json(tiny, tmp_path):
    config = tmp_path / "mmoe.yaml"
    config.write_text(yaml.safe_dump({
        "model": "mmoe", "epochs": 5, "batch_size": 1024, "dense_lr": 0.002,
        "weight_decay": 1e-5, "model_config": {"embedding_dim": 8, "embedding_lr": 0.1,
                                               "n_experts": 2, "backbone": "dcn"}}))
    out = tmp_path / "run"
    run("recsys", "train", "--config", str(config), "--epochs", "1", "--dataset",
        str(tiny["dataset"]), "--out", str(out))
    saved = json.loads((out / CONFIG).read_text())
    assert saved["epochs"] == 1  # the flag wins over the file
    assert (saved["batch_size"], saved["dense_lr"], saved["weight_decay"]) == \
        (1024, 0.002, 1e-5)
    mc = saved["model_config"]
    assert (mc["embedding_dim"], mc["embedding_lr"], mc["n_experts"], mc["backbone"]) == \
        (8, 0.1, 2, "dcn")
    assert mc["tower"] == [32] and mc["cross_layers"] == 2  # defaults, resolved and recorded
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert saved["code"]["commit"] == (commit or None)
    assert len(saved["dataset_fingerprint"]) == 16
    # config.json is itself a config file: the same run again from it
    again = resolve(read_config(out / CONFIG), {})
    assert again.to_json() == {k: v for k, v in saved.items() if k not in PROVENANCE}


@pytest.mark.parametrize("edit, says", [
    ({"model_config": {"n_expert": 2}}, "model_config.n_expert: not a known key"),
    ({"learning_rate": 0.1}, "learning_rate: not a known key"),
    ({"epochs": "many"}, "epochs: Input should be a valid integer"),
    ({"model_config": {"dropout": 1.5}}, "dropout 1.5: must be in [0, 1)"),
    ({"model_config": {"expert": [64, 0]}}, "expert (64, 0): must be layer sizes"),
    ({"model_config": {"backbone": "resnet"}}, "backbone 'resnet': choose one of mlp, dcn"),
    ({"model": "wide_deep"}, "model 'wide_deep': unknown"),
    ({"model": "dnn", "model_config": {"n_experts": 2}}, "dnn takes"),
])
def test_a_bad_config_is_one_clear_error(edit, says):
    with pytest.raises(UsageError) as error:
        resolve({"model": "mmoe", **edit}, {}, where="cfg.yaml")
    assert says in str(error.value) and "\n" not in str(error.value)


def test_a_bad_config_file_is_one_line_exit_2(tiny, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: mmoe\nmodel_config:\n  n_expert: 2\n")
    proc = run("recsys", "train", "--config", str(config), "--dataset", str(tiny["dataset"]),
               "--out", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "model_config.n_expert: not a known key" in lines[0]
