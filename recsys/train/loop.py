"""`recsys train`: the training loop with early stopping on validation AUC, checkpoints after
every epoch (written atomically), and automatic resume of an interrupted run."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from recsys.dataset.loader import BatchLoader, Layout, check_modalities, load_split, read_meta
from recsys.errors import OutputExistsError, UsageError
from recsys.eval.evaluate import compute_metrics, predict
from recsys.eval.metrics import auc
from recsys.models import build_model, model_class
from recsys.models.base import ModelConfig, check_fusion, dense_parameters, sparse_optimizers, \
    training_loss
from recsys.storage import write_json

CHECKPOINT, BEST, METRICS, CONFIG = "checkpoint.pt", "best.pt", "metrics.json", "config.json"


@dataclass
class TrainConfig:
    model: str
    epochs: int = 3
    batch_size: int = 2048
    lr: float = 1e-3  # Adam, dense parameters
    seed: int = 0
    patience: int = 1  # epochs without a better validation AUC before stopping
    modalities: tuple[str, ...] = ()  # "text", "image": vectors fused with the IDs
    model_config: ModelConfig = field(default_factory=ModelConfig)

    @property
    def name(self) -> str:
        """The model with its modalities: "mmoe+text"."""
        return "+".join((self.model, *self.modalities))

    def check(self) -> None:
        model_class(self.model)  # an unknown name fails here, before any data is read
        check_modalities(self.modalities)
        check_fusion(self.model_config.fusion)
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: "
                                 f"must be at least 1")

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples become lists, as on disk


def _save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_trained(run: Path, layout: Layout, train_data) -> torch.nn.Module:
    """The best epoch of a finished run, ready to predict (`layout` must have the run's
    modalities)."""
    saved = json.loads((run / CONFIG).read_text())
    if tuple(saved.get("modalities", ())) != layout.modalities:
        raise UsageError(f"{run} was trained with modalities {saved.get('modalities', [])}, "
                         f"the data was loaded with {list(layout.modalities)}")
    cfg = TrainConfig(model=saved["model"], seed=saved["seed"],
                      model_config=ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                  for k, v in saved["model_config"].items()}))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, layout, cfg.model_config, train_data, cfg.seed)
    model.load_state_dict(torch.load(run / BEST, weights_only=True))
    return model


def train(dataset: Path, out: Path, cfg: TrainConfig, force: bool = False,
          progress: bool = True, log=print) -> dict:
    """Train, evaluate the best epoch on test, write out/metrics.json and return it."""
    cfg.check()
    meta = read_meta(dataset)
    if (out / METRICS).exists() and not force:
        raise OutputExistsError(f"{out} holds a finished run; pass --force to train it again "
                                f"or choose another --out")
    if force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_json(), "dataset": str(dataset)}
    resume = (out / CHECKPOINT).exists()
    if resume and json.loads((out / CONFIG).read_text()) != config:
        raise OutputExistsError(f"{out} holds an interrupted run with another configuration; "
                                f"pass --force to start over or choose another --out")
    (out / CONFIG).write_text(json.dumps(config, indent=2))

    layout = Layout.from_meta(meta, cfg.modalities)
    train_data = load_split(dataset, "train", layout)
    val_data = load_split(dataset, "val", layout)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, layout, cfg.model_config, train_data, cfg.seed)
    dense_opt = torch.optim.Adam(dense_parameters(model), lr=cfg.lr)
    state = {"epoch": 0, "best_auc": float("-inf"), "best_epoch": -1, "history": [],
             "seconds": 0.0, "examples": 0}
    if resume:
        ckpt = torch.load(out / CHECKPOINT, weights_only=False)
        model.load_state_dict(ckpt["model"])
        dense_opt.load_state_dict(ckpt["dense_opt"])
        for opt, saved in zip(sparse_optimizers(model), ckpt["fused_opts"]):
            opt.load_state_dict(saved)
        state = ckpt["state"]
        log(f"resuming {out} from epoch {state['epoch'] + 1}")

    loader = BatchLoader(train_data, layout, cfg.batch_size, shuffle=True, seed=cfg.seed)
    while state["epoch"] < cfg.epochs and \
            state["epoch"] - state["best_epoch"] <= cfg.patience:
        epoch = state["epoch"]
        loader.epoch = epoch  # the shuffle is a function of (seed, epoch): resume replays it
        model.train()
        bar = tqdm(total=len(train_data), unit="ex", unit_scale=True, disable=not progress,
                   desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}", mininterval=1.0)
        start, loss_sum, steps = time.perf_counter(), 0.0, 0
        for batch in loader:
            loss = training_loss(model, batch)
            dense_opt.zero_grad()
            loss.backward()  # also updates the embedding rows (fused optimizer)
            dense_opt.step()
            loss_sum, steps = loss_sum + loss.item(), steps + 1
            bar.update(len(batch))
            bar.set_postfix(loss=f"{loss_sum / steps:.4f}", refresh=False)
        bar.close()
        state["seconds"] += time.perf_counter() - start
        state["examples"] += len(train_data)
        val_auc = auc(val_data.labels, predict(model, val_data, layout, train_data))
        state["history"].append({"epoch": epoch + 1, "train_loss": loss_sum / steps,
                                 "val_auc": val_auc})
        log(f"{cfg.name} epoch {epoch + 1}: train loss {loss_sum / steps:.4f}, "
            f"val AUC {val_auc:.4f}")
        if val_auc > state["best_auc"]:
            state["best_auc"], state["best_epoch"] = val_auc, epoch
            _save(model.state_dict(), out / BEST)
        state["epoch"] = epoch + 1
        _save({"model": model.state_dict(), "dense_opt": dense_opt.state_dict(),
               "fused_opts": [o.state_dict() for o in sparse_optimizers(model)],
               "state": state}, out / CHECKPOINT)

    model.load_state_dict(torch.load(out / BEST, weights_only=True))
    test_data = load_split(dataset, "test", layout)
    metrics = {"model": cfg.model, "seed": cfg.seed, "dataset": str(dataset),
               "modalities": list(cfg.modalities), "fusion": cfg.model_config.fusion,
               **compute_metrics(test_data, predict(model, test_data, layout, train_data)),
               "train": {"examples_per_s": state["examples"] / max(state["seconds"], 1e-9),
                         "epochs": state["epoch"], "best_epoch": state["best_epoch"] + 1,
                         "seconds": state["seconds"], "history": state["history"]}}
    write_json(metrics, out / METRICS)
    return metrics
