"""A real peer on a recsys dataset's split files: torch-rechub's DIN and its CTRTrainer at their
own defaults, fed from the split files by this script alone (nothing of recsys is imported).

    python benchmarks/peers/rechub_din.py DATASET [--seeds 0,1,2] [--json OUT]

The rows' features as torch-rechub's DIN takes them: the candidate item (the attention's target)
and the row's clicks before it (`history_item_ids`, latest first, at most HISTORY, through the
item's own table), and every other id column of the split files that holds one int per row
(the user, the scenario, the user's and item's side columns) into its MLP. Its DIN takes no
dense or list columns, so those are left out.

torch-rechub's defaults: CTRTrainer's Adam (lr 1e-3, weight decay 1e-5), 10 epochs, early
stopping on validation AUC with patience 10 (so the last epoch is kept unless it stops); its
DIN's attention unit (36,) with Dice. What its DIN leaves to the user: the MLP (200, 80), as the
DIN paper; 16-dim embeddings and batch 2048 (recsys's defaults, so the two differ in their
models and training only). Test AUC overall and per scenario, the validation AUC beside it; the
same JSON as benchmarks/references/references.py writes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from sklearn.metrics import roc_auc_score

os.environ.setdefault("TQDM_DISABLE", "1")  # its trainer's progress bars: a bar per batch
from torch_rechub.basic.features import SequenceFeature, SparseFeature
from torch_rechub.models.ranking import DIN
from torch_rechub.trainers import CTRTrainer
from torch_rechub.utils.data import DataGenerator

DIM, BATCH, HISTORY = 16, 2048, 50
TARGET, HISTORY_COLUMN, LABEL = "item_id", "history_item_ids", "label"


def read_split(dataset: Path, split: str) -> pa.Table:
    return pq.ParquetDataset(sorted((dataset / split).glob("*.parquet"))).read()


def id_columns(dataset: Path, table: pa.Table) -> list[str]:
    """The columns of one id per row (the dataset's meta.json says which features are ids and
    categories), the candidate item left out."""
    kinds = {f["name"]: f["kind"] for f in json.loads((dataset / "meta.json").read_text())[
        "schema"]["features"]}
    return [f.name for f in table.schema if kinds.get(f.name) in ("id", "categorical")
            and pa.types.is_integer(f.type) and f.name != TARGET]


def inputs(table: pa.Table, columns: list[str], padding: int) -> tuple[dict, np.ndarray]:
    """The rows as torch-rechub's dict of arrays; the history padded with the item table's
    padding row (the last)."""
    x = {c: table.column(c).to_numpy() for c in [*columns, TARGET]}
    hist = table.column(HISTORY_COLUMN).to_pylist()
    padded = np.full((len(hist), HISTORY), padding, dtype=np.int64)
    for r, h in enumerate(hist):  # latest first; at most HISTORY kept
        if h:
            padded[r, :min(len(h), HISTORY)] = h[:HISTORY]
    x[HISTORY_COLUMN] = padded
    return x, table.column(LABEL).to_numpy().astype(np.float32)


def aucs(labels: np.ndarray, scenario: np.ndarray, scores: np.ndarray) -> dict:
    out = {"overall": float(roc_auc_score(labels, scores))}
    for s in np.unique(scenario):
        m = scenario == s
        if 0 < labels[m].sum() < m.sum():
            out[f"scenario_{int(s)}"] = float(roc_auc_score(labels[m], scores[m]))
    return out


def fit(splits: dict, columns: list[str], sizes: dict, seed: int) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    items = sizes[TARGET]  # the item table's rows; one more: the history's padding
    target = SparseFeature(TARGET, vocab_size=items + 1, embed_dim=DIM)
    history = SequenceFeature(HISTORY_COLUMN, vocab_size=items + 1, embed_dim=DIM,
                              pooling="concat", shared_with=TARGET, padding_idx=items)
    features = [SparseFeature(c, vocab_size=sizes[c], embed_dim=DIM) for c in columns]
    model = DIN(features, [history], [target], mlp_params={"dims": [200, 80]},
                attention_mlp_params={"dims": [36]})
    data = {s: inputs(t, columns, items) for s, t in splits.items()}
    loaders = DataGenerator(*data["train"]).generate_dataloader(
        *data["val"], *data["test"], batch_size=BATCH)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()) as log:
        trainer = CTRTrainer(model, model_path=folder)
        trainer.fit(loaders[0], loaders[1])
    epochs = sum(line.startswith("epoch:") and "validation" in line
                 for line in log.getvalue().splitlines())
    scores = np.asarray(trainer.predict(model, loaders[2]))
    test = splits["test"]
    return {**aucs(data["test"][1], test.column("scenario").to_numpy(), scores),
            "val": float(trainer.evaluate(model, loaders[1])), "seed": seed, "epochs": epochs,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = {s: read_split(args.dataset, s) for s in ("train", "val", "test")}
    columns = id_columns(args.dataset, splits["train"])
    # each table's rows: the largest id seen in any split, plus one
    sizes = {c: int(max(t.column(c).to_numpy().max() for t in splits.values())) + 1
             for c in columns}
    sizes[TARGET] = int(max(max(t.column(TARGET).to_numpy().max(),
                                max((max(h) for h in t.column(HISTORY_COLUMN).to_pylist() if h),
                                    default=0)) for t in splits.values())) + 1
    runs = [fit(splits, columns, sizes, int(seed)) for seed in args.seeds.split(",")]
    overall = [r["overall"] for r in runs]
    print(f"rechub_din     test AUC {np.mean(overall):.4f} ± {np.std(overall):.4f} "
          f"({len(runs)} run(s)), columns {', '.join(columns)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rechub_din": runs}, indent=2))


if __name__ == "__main__":
    main()
