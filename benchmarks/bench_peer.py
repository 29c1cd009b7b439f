"""A real peer side by side: torch-rechub's MMOE (one nn.Embedding per feature, dense Adam on
every parameter) next to `recsys train --model mmoe` (TorchRec fused tables, row-wise sparse
update), and torch-rechub's DIN next to `recsys train --model din` on the same rows and
histories, on the same built dataset: the same columns (the batches of recsys's streaming
loader), recsys's default batch, seed 0, one epoch, test AUC. At the dataset's own user table
and with a 2M-row and a 20M-row one (the peer's extra rows are never looked up, but dense Adam
updates them every step; recsys hashes its users into the bigger table, `--user-rows`). With the
bigger tables the peer's dense Adam step grows with the table, so there it trains only the
first PEER_STEPS_BIG batches (examples/s, no AUC) unless RECSYS_BENCH_PEER_FULL=1 asks for the
whole epoch.

The peer is installed only for benchmarks (`pip install -e .[peer]`, which `make bench` does);
without it these are skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MMOE_EPOCH, RESULTS
from recsys.dataset.layout import Layout
from recsys.dataset.meta import read_dataset_meta
from recsys.dataset.stream import SplitFiles, StreamLoader
from recsys.metrics import auc
from recsys.models.config import ModelConfig
from recsys.schema import USER_ID
from recsys.train.config import TrainConfig

rechub = pytest.importorskip("torch_rechub", reason="the peer extra: pip install -e .[peer]")
from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from torch_rechub.models.multi_task import MMOE  # noqa: E402
from torch_rechub.models.ranking import DIN  # noqa: E402

RECSYS = Path(sys.executable).parent / "recsys"
BATCH, EMBEDDING_DIM = TrainConfig.batch_size, ModelConfig.embedding_dim  # recsys's defaults
USER_ROWS = (None, 2_000_001, 20_000_001)  # None: the dataset's own
PEER_STEPS_BIG = 40
FULL = os.environ.get("RECSYS_BENCH_PEER_FULL") == "1"


def _label(user_rows: int | None, layout: Layout) -> str:
    rows = user_rows or layout.num_embeddings[layout.sparse.index(USER_ID)]
    return f"{rows:,} user rows"


def peer_mmoe(layout: Layout, user_rows: int | None) -> MMOE:
    """torch-rechub's MMOE with recsys mmoe's sizes: 4 experts of (128, 64), a (32,) tower per
    scenario, 16-dim embeddings, every sparse and dense column of the dataset."""
    sizes = dict(zip(layout.sparse, layout.num_embeddings))
    if user_rows:
        sizes[USER_ID] = user_rows
    features = [SparseFeature(name, vocab_size=rows, embed_dim=EMBEDDING_DIM)
                for name, rows in sizes.items()] + [DenseFeature(name) for name in layout.dense]
    n = len(layout.scenarios)
    return MMOE(features, ["classification"] * n, n_expert=4, expert_params={"dims": [128, 64]},
                tower_params_list=[{"dims": [32]}] * n)


def peer_din(layout: Layout, user_rows: int | None) -> DIN:
    """torch-rechub's DIN on recsys din's rows: the item and scenario histories, each attended
    by its target (the candidate item, the row's scenario) through one table shared with it
    (one more row: the padding), every other sparse feature into an MLP of (200, 80) like
    recsys din's, 16-dim embeddings. Its DIN takes embeddings only: no dense features."""
    sizes = dict(zip(layout.sparse, layout.num_embeddings))
    if user_rows:
        sizes[USER_ID] = user_rows
    tables = [t for _, t in layout.history_tables]
    targets = [SparseFeature(t, vocab_size=sizes[t] + 1, embed_dim=EMBEDDING_DIM) for t in tables]
    histories = [SequenceFeature(c, vocab_size=sizes[t] + 1, embed_dim=EMBEDDING_DIM,
                                 pooling="concat", shared_with=t, padding_idx=sizes[t])
                 for c, t in layout.history_tables]
    features = [SparseFeature(n, vocab_size=rows, embed_dim=EMBEDDING_DIM)
                for n, rows in sizes.items() if n not in tables]
    return DIN(features, histories, targets, mlp_params={"dims": [200, 80]},
               attention_mlp_params={"dims": [36]})


def _inputs(batch, layout: Layout) -> dict[str, torch.Tensor]:
    x = {name: batch.ids[:, j] for j, name in enumerate(layout.sparse)}
    x.update({name: batch.dense[:, j] for j, name in enumerate(layout.dense)})
    history = batch.history_ids
    for k, (column, table) in enumerate(layout.history_tables):
        clicks = history[:, k * layout.history:(k + 1) * layout.history]
        x[column] = torch.where(clicks >= 0, clicks, layout.num_embeddings[
            layout.sparse.index(table)])  # no click: the padding row
    return x


def _scored(model, batch, layout) -> torch.Tensor:
    """Each row's click probability (MMOE: from its own scenario's tower)."""
    probs = model(_inputs(batch, layout))
    return probs if probs.dim() == 1 else probs.gather(1, batch.scenario[:, None]).squeeze(1)


def train_peer(dataset: Path, layout: Layout, user_rows: int | None,
               max_steps: int | None = None, build=peer_mmoe) -> dict:
    """One epoch (or its first max_steps batches, then no test AUC) of the peer."""
    torch.manual_seed(0)
    model = build(layout, user_rows)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = StreamLoader(SplitFiles(dataset, "train", layout), layout, BATCH, shuffle=True,
                          seed=0)
    model.train()
    start, examples, batches, stopped = time.perf_counter(), 0, 0, False
    for batch in loader:
        if batches == max_steps:
            stopped = True
            break
        loss = torch.nn.functional.binary_cross_entropy(
            _scored(model, batch, layout).clamp(1e-7, 1 - 1e-7), batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        examples += len(batch)
        batches += 1
    seconds = time.perf_counter() - start
    if stopped:
        return {"examples_per_s": examples / seconds, "auc": None, "batches": batches}
    model.eval()
    labels, scores = [], []
    with torch.no_grad():
        for batch in StreamLoader(SplitFiles(dataset, "test", layout), layout, 8192):
            labels.append(batch.labels.numpy())
            scores.append(_scored(model, batch, layout).numpy())
    return {"examples_per_s": examples / seconds, "batches": batches,
            "auc": auc(np.concatenate(labels), np.concatenate(scores))}


def train_recsys(dataset: Path, out: Path, user_rows: int | None,
                 epoch: list[str] = MMOE_EPOCH) -> None:
    rows = ["--user-rows", str(user_rows)] if user_rows else []
    cmd = [str(RECSYS), *epoch, "--dataset", str(dataset), "--batch-size", str(BATCH),
           "--seed", "0", "--out", str(out), "--force", *rows]
    subprocess.run(cmd, check=True, capture_output=True)


def run_figures(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    return {"examples_per_s": metrics["train"]["examples_per_s"],
            "auc": metrics["overall"]["auc"]}


@pytest.mark.parametrize("user_rows", USER_ROWS, ids=["own", "2M", "20M"])
def test_peer_mmoe_beside_recsys_mmoe(benchmark, built_dataset, mmoe_run, tmp_path,
                                      user_rows):
    layout = Layout.from_meta(read_dataset_meta(built_dataset))
    if any(w > 1 for w in layout.widths):
        pytest.skip("the peer takes one value per sparse feature; this dataset has bags")
    label = _label(user_rows, layout)
    benchmark.group = f"torch-rechub mmoe vs recsys mmoe, {label}"
    steps = PEER_STEPS_BIG if user_rows is not None and not FULL else None
    peer = benchmark.pedantic(lambda: train_peer(built_dataset, layout, user_rows, steps),
                              rounds=1, iterations=1)
    if user_rows:
        train_recsys(built_dataset, tmp_path / "run", user_rows)
    ours = run_figures(tmp_path / "run" if user_rows else mmoe_run)
    _record("mmoe", label, peer, ours)


def _record(model: str, label: str, peer: dict, ours: dict) -> None:
    """The peer's and recsys's figures of one model at one user table, side by side."""
    RESULTS[f"torch-rechub {model} examples/s, {label}"] = peer["examples_per_s"]
    RESULTS[f"torch-rechub {model} batches trained, {label}"] = peer["batches"]
    if peer["auc"] is not None:
        RESULTS[f"torch-rechub {model} test AUC, {label}"] = peer["auc"]
    RESULTS[f"recsys {model} examples/s, {label}"] = ours["examples_per_s"]
    RESULTS[f"recsys {model} test AUC, {label}"] = ours["auc"]


DIN_EPOCH = ["train", "--model", "din", "--epochs", "1"]


@pytest.mark.parametrize("user_rows", USER_ROWS[:2], ids=["own", "2M"])
def test_peer_din_beside_recsys_din(benchmark, built_dataset, tmp_path, user_rows):
    """The same rows and histories (recsys's loader, the layout of `recsys train --model
    din`), one epoch each; at the 2M-row user table the peer trains PEER_STEPS_BIG batches."""
    layout = Layout.from_meta(read_dataset_meta(built_dataset), history="attention")
    if any(w > 1 for w in layout.widths):
        pytest.skip("the peer takes one value per sparse feature; this dataset has bags")
    label = _label(user_rows, layout)
    benchmark.group = f"torch-rechub din vs recsys din, {label}"
    steps = PEER_STEPS_BIG if user_rows is not None and not FULL else None
    peer = benchmark.pedantic(
        lambda: train_peer(built_dataset, layout, user_rows, steps, build=peer_din),
        rounds=1, iterations=1)
    train_recsys(built_dataset, tmp_path / "run", user_rows, DIN_EPOCH)
    _record("din", label, peer, run_figures(tmp_path / "run"))
