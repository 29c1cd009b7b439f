"""Retrieval on the tiny preset through the real CLI: a two_tower run, `recsys index` over the
repo's items, the index holding exactly the item tower's vectors and answering the exact top-k
of a user's vector; rebuilt only with --force; a run of a scoring model refused in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from conftest import error_lines, run
from recsys.dataset.loader import load_split, rows_batch
from recsys.retrieval.index import build_index, load_index
from recsys.run import Run
from recsys.schema import ITEM_ID


def test_the_index_holds_the_item_towers_vectors_and_their_exact_top_k(tiny, tmp_path):
    out = tmp_path / "two_tower"
    run("recsys", "train", "--model", "two_tower", "--epochs", "1", "--batch-size", "1024",
        "--dataset", str(tiny["dataset"]), "--out", str(out))
    run("recsys", "index", "--run", str(out), "--repo", str(tiny["repo"]))
    index, info = load_index(out)
    meta = json.loads((tiny["dataset"] / "meta.json").read_text())
    assert info["kind"] == "exact" and info["items"] == index.ntotal == meta["n_items"]
    stored = index.reconstruct_n(0, index.ntotal)

    trained = Run(out)
    layout = trained.layout()
    model = trained.load_model(layout).eval()
    batch = rows_batch(load_split(tiny["dataset"], "test", layout), layout, slice(0, 300))
    with torch.no_grad():
        user, item = (v.numpy() for v in model.vectors(batch))
    items = batch.ids[:, layout.slot(ITEM_ID)].numpy()  # row i of the table: store ID i
    # the item tower on the rows' items (their profile as the rows have it) = the index's rows
    assert np.allclose(stored[items], item, atol=1e-5)
    _, found = index.search(user, 20)
    want = np.argsort(-(user @ stored.T), axis=1, kind="stable")[:, :20]
    assert (found == want).mean() > 0.99  # exact, up to ties of equal inner products

    again = run("recsys", "index", "--run", str(out), "--repo", str(tiny["repo"]), check=False)
    assert again.returncode != 0 and len(error_lines(again.stderr)) == 1
    assert "--force" in again.stderr
    run("recsys", "index", "--run", str(out), "--repo", str(tiny["repo"]), "--force")

    # past its size for an exact index: HNSW, whose recall against exact search is recorded
    info = build_index(out, tiny["repo"], force=True, exact_items=100)
    hnsw, _ = load_index(out)
    assert info["kind"] == "hnsw" and hnsw.ntotal == index.ntotal
    assert info["recall@100 against exact"] > 0.9
    _, near = hnsw.search(user, 20)
    assert np.mean([len(set(a) & set(b)) / 20 for a, b in zip(near, want)]) > 0.9

    scorer = tmp_path / "scorer"  # the same run, as if its model were a scoring one
    shutil.copytree(out, scorer)
    config = json.loads((scorer / "config.json").read_text())
    (scorer / "config.json").write_text(json.dumps({**config, "model": "mmoe",
                                                    "model_config": {}}))
    refused = run("recsys", "index", "--run", str(scorer), "--repo", str(tiny["repo"]),
                  check=False)
    assert refused.returncode == 2 and error_lines(refused.stderr) == [
        f"error: --run {scorer}: its model mmoe scores (user, item) pairs and has no item "
        f"vectors; train a retrieval model (recsys train --model two_tower) and index its "
        f"output"]
