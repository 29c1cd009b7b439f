"""A real peer side by side: torch-rechub's MMOE (one nn.Embedding per feature, dense Adam on
every parameter) next to `recsys train --model mmoe` (TorchRec fused tables, row-wise sparse
update), and torch-rechub's DIN next to `recsys train --model din` on the same rows and
histories, on the same built dataset: the same columns (the batches of recsys's streaming
loader), recsys's default batch, seed 0. At the dataset's own user table: one epoch of each
(`recsys train` for recsys), test AUC and examples/s. With a 2M-row and a 20M-row user table
(the peer's extra rows are never looked up, but its dense Adam updates them every step; recsys
hashes its users into the bigger table, as `--user-rows` does) the peer's step grows with the
table, so there both train the same first STEPS_BIG batches in this process, examples/s only
(rows never looked up do not change the AUC), unless RECSYS_BENCH_PEER_FULL=1 asks for whole
epochs (then `recsys train --user-rows` for recsys, with both test AUCs).

The peer is installed only for benchmarks (`pip install -e .[peer]`, which `make bench` does);
without it these are skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MMOE_EPOCH, RESULTS, run_figures
from recsys.dataset.layout import Layout
from recsys.dataset.meta import DatasetMeta
from recsys.dataset.stream import SplitFiles, StreamLoader
from recsys.metrics import auc
from recsys.models.base import dense_parameters
from recsys.models.config import ModelConfig
from recsys.models.registry import build_model
from recsys.schema import USER_ID
from recsys.config import TrainConfig

rechub = pytest.importorskip("torch_rechub", reason="the peer extra: pip install -e .[peer]")
from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from torch_rechub.models.multi_task import MMOE  # noqa: E402
from torch_rechub.models.ranking import DIN  # noqa: E402

RECSYS = Path(sys.executable).parent / "recsys"
BATCH, EMBEDDING_DIM = TrainConfig.batch_size, ModelConfig.embedding_dim  # recsys's defaults
USER_ROWS = (None, 2_000_001, 20_000_001)  # None: the dataset's own
STEPS_BIG = 8  # batches each trains at a bigger user table (the peer: ~5 s a step at 20M)
DIN_STEPS = 60  # batches each DIN trains at the dataset's own user table
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
    """torch-rechub's DIN on recsys din's rows: each of the history's lists (items, scenarios,
    the items' categories), attended by its target (the candidate item, the row's scenario,
    the candidate's category) through one table shared with it
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
        clicks = history[:, k * layout.history_length:(k + 1) * layout.history_length]
        x[column] = torch.where(clicks >= 0, clicks, layout.num_embeddings[
            layout.sparse.index(table)])  # no click: the padding row
    return x


def _scored(model, batch, layout) -> torch.Tensor:
    """Each row's click probability (MMOE: from its own scenario's tower)."""
    probs = model(_inputs(batch, layout))
    return probs if probs.dim() == 1 else probs.gather(1, batch.scenario[:, None]).squeeze(1)


def _steps(dataset: Path, layout: Layout, loss, opt, max_steps: int | None) -> dict:
    """Train on the split's batches in the loader's order (seed 0), up to max_steps: timed,
    loader included, as a training loop is."""
    loader = StreamLoader(SplitFiles(dataset, "train", layout), layout, BATCH, shuffle=True,
                          seed=0)
    start, examples, batches = time.perf_counter(), 0, 0
    for batch in loader:
        if batches == max_steps:
            break
        value = loss(batch)
        opt.zero_grad()
        value.backward()
        opt.step()
        examples += len(batch)
        batches += 1
    return {"examples_per_s": examples / (time.perf_counter() - start), "batches": batches}


def _test_auc(dataset: Path, layout: Layout, scored) -> float:
    labels, scores = [], []
    with torch.no_grad():
        for batch in StreamLoader(SplitFiles(dataset, "test", layout), layout, 8192):
            labels.append(batch.labels.numpy())
            scores.append(scored(batch).numpy())
    return auc(np.concatenate(labels), np.concatenate(scores))


def train_peer(dataset: Path, layout: Layout, user_rows: int | None, steps: int | None,
               build=peer_mmoe) -> dict:
    """The peer trained on the first `steps` batches (None: one epoch); its test AUC at the
    dataset's own user table."""
    torch.manual_seed(0)
    model = build(layout, user_rows)
    model.train()
    run = _steps(dataset, layout, lambda b: torch.nn.functional.binary_cross_entropy(
        _scored(model, b, layout).clamp(1e-7, 1 - 1e-7), b.labels),
        torch.optim.Adam(model.parameters(), lr=1e-3), steps)
    model.eval()
    return {**run, "auc": None if user_rows and not FULL else
            _test_auc(dataset, layout, lambda b: _scored(model, b, layout))}


def recsys_steps(dataset: Path, name: str, user_rows: int | None, steps: int,
                 history: str = "") -> dict:
    """recsys on the same first `steps` batches: its model (users hashed into `user_rows` rows,
    as `--user-rows` builds it), its loss, fused row-wise Adagrad on the tables in the backward
    pass and Adam on the rest at its default rate; its test AUC at the dataset's own table."""
    hashed = {USER_ID: user_rows} if user_rows else None
    layout = Layout.from_meta(DatasetMeta.read(dataset), hashed_rows=hashed, history=history)
    torch.manual_seed(0)
    model = build_model(name, layout)
    model.train()
    run = _steps(dataset, layout, model.loss,
                 torch.optim.Adam(dense_parameters(model), lr=TrainConfig.dense_lr), steps)
    model.eval()
    return {**run, "auc": None if user_rows else
            _test_auc(dataset, layout, lambda b: torch.sigmoid(model(b)))}


def train_recsys(dataset: Path, out: Path, user_rows: int | None, epoch: list[str]) -> dict:
    """One epoch of `recsys train`: its own examples/s and test AUC."""
    rows = ["--user-rows", str(user_rows)] if user_rows else []
    cmd = [str(RECSYS), *epoch, "--dataset", str(dataset), "--batch-size", str(BATCH),
           "--seed", "0", "--out", str(out), "--force", *rows]
    subprocess.run(cmd, check=True, capture_output=True)
    return run_figures(out)


def _record(model: str, label: str, peer: dict, ours: dict) -> None:
    """The peer's and recsys's figures of one model at one user table, side by side."""
    RESULTS[f"torch-rechub {model} examples/s, {label}"] = peer["examples_per_s"]
    RESULTS[f"torch-rechub {model} batches trained, {label}"] = peer["batches"]
    if peer["auc"] is not None:
        RESULTS[f"torch-rechub {model} test AUC, {label}"] = peer["auc"]
    RESULTS[f"recsys {model} examples/s, {label}"] = ours["examples_per_s"]
    if ours["auc"] is not None:
        RESULTS[f"recsys {model} test AUC, {label}"] = ours["auc"]


@pytest.mark.parametrize("user_rows", USER_ROWS, ids=["own", "2M", "20M"])
def test_peer_mmoe_beside_recsys_mmoe(benchmark, built_dataset, mmoe_run, tmp_path,
                                      user_rows):
    """One epoch each at the dataset's own user table (recsys's: the shared mmoe run), the same
    first STEPS_BIG batches at the bigger ones."""
    layout = Layout.from_meta(DatasetMeta.read(built_dataset))
    if any(w > 1 for w in layout.widths):
        pytest.skip("the peer takes one value per sparse feature; this dataset has bags")
    label = _label(user_rows, layout)
    steps = STEPS_BIG if user_rows and not FULL else None
    benchmark.group = f"torch-rechub mmoe vs recsys mmoe, {label}"
    peer = benchmark.pedantic(lambda: train_peer(built_dataset, layout, user_rows, steps),
                              rounds=1, iterations=1)
    if steps is not None:
        ours = recsys_steps(built_dataset, "mmoe", user_rows, steps)
    else:
        ours = train_recsys(built_dataset, tmp_path / "run", user_rows, MMOE_EPOCH) \
            if user_rows else run_figures(mmoe_run)
    _record("mmoe", label, peer, ours)


DIN_EPOCH = ["train", "--model", "din", "--epochs", "1"]


@pytest.mark.parametrize("user_rows", USER_ROWS[:2], ids=["own", "2M"])
def test_peer_din_beside_recsys_din(benchmark, built_dataset, tmp_path, user_rows):
    """The same rows and histories (recsys's loader, the layout of `recsys train --model
    din`): the same first DIN_STEPS batches each and the test AUC at the dataset's own user
    table (a whole epoch of the peer's DIN takes minutes here), STEPS_BIG at the 2M-row one."""
    layout = Layout.from_meta(DatasetMeta.read(built_dataset), history="attention")
    if any(w > 1 for w in layout.widths):
        pytest.skip("the peer takes one value per sparse feature; this dataset has bags")
    label = _label(user_rows, layout)
    steps = None if FULL else STEPS_BIG if user_rows else DIN_STEPS
    benchmark.group = f"torch-rechub din vs recsys din, {label}"
    peer = benchmark.pedantic(lambda: train_peer(built_dataset, layout, user_rows, steps,
                                                 build=peer_din), rounds=1, iterations=1)
    ours = train_recsys(built_dataset, tmp_path / "run", user_rows, DIN_EPOCH) if FULL else \
        recsys_steps(built_dataset, "din", user_rows, steps, history="attention")
    _record("din", label, peer, ours)
