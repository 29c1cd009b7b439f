"""`recsys index`: every item of the repo through a retrieval run's item tower, into a FAISS
index beside the run (its `index/` folder, written whole or not at all), with the run's retrieval
metrics on its test split (eval.retrieval). Up to EXACT_ITEMS
items the index is exact (inner products against every vector); beyond, HNSW, whose recall
against exact search is measured on a sample and recorded. Row i of the index is the item of
store ID i (the repo's ID map turns those into the raw IDs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.errors import UsageError
from recsys.retrieval import store
from recsys.files import atomic_dir, check_output_free, write_json
from recsys.run import CATALOGUE, INDEX_DIR, INDEX_FILE, INDEX_META, RETRIEVAL_METRICS, Run

EXACT_ITEMS = 200_000  # past this many items, an approximate index
# HNSW's links per node and search depths; 256 deep, 1M clustered vectors' top-100 recall of
# the exact top-100 was 0.9665 (128: 0.9343; benchmarks/bench_retrieval.py's vectors)
HNSW_LINKS, HNSW_BUILD_DEPTH, HNSW_SEARCH_DEPTH = 32, 80, 256
RECALL_QUERIES, RECALL_K = 1_000, 100  # the sample an approximate index's recall is taken on


def build_index(run: Path, repo: Path | None = None, force: bool = False,
                exact_items: int = EXACT_ITEMS, publish: bool = True,
                log: Callable[[str], None] = lambda _: None, write: bool = True) -> dict:
    """Encode the catalogue with the run's item tower and write its index; its description.
    `publish`: also write the vectors into the repo's feature store (retrieval.store);
    `write=False`: measure only (the run folder and the store are left as they are)."""
    import faiss

    from recsys.data.offline import check_repo, read_repo_meta
    from recsys.dataset.loader import rows_batch
    from recsys.eval.retrieval import catalogue_facts, retrieval_metrics
    from recsys.models.registry import model_class
    from recsys.retrieval.catalogue import item_batches

    trained = Run(run).check_trained()
    cfg, meta = trained.config(), trained.dataset_meta()
    if not model_class(cfg.model).capabilities.retrieval:
        raise UsageError(f"run {run}: its model {cfg.model} scores (user, item) pairs and has no "
                         f"item vectors; train a retrieval model (recsys train --model "
                         f"two_tower) and index its output", fields="run")
    repo = check_repo(Path(repo or meta.repo))
    out = run / INDEX_DIR
    publish = publish and write
    if write:
        check_output_free(out, force)
    if publish:
        store.check_free(repo, run, force)
    layout = trained.layout()
    model = trained.load_model(layout).eval()
    n, dim = read_repo_meta(repo).n_items, model.vector_dim
    index, kind = new_index(n, dim, exact_items)
    start = time.perf_counter()
    with torch.no_grad():  # batch by batch into the index: no copy of every vector besides
        for ids, rows in item_batches(repo, meta.schema, layout):
            index.add(model.vectors(rows_batch(rows, layout, slice(None)))[1].numpy())
            log(f"encoded items up to {int(ids[-1]) + 1:,}")
    seconds = time.perf_counter() - start
    recall = 1.0
    if kind == "hnsw":
        recall = recall_against_exact(index, index.reconstruct_n(0, index.ntotal))
    facts = catalogue_facts(Path(trained.provenance.dataset), n)
    metrics = retrieval_metrics(run, index.reconstruct_n(0, index.ntotal), facts=facts)
    info = {"run": str(run), "repo": str(repo), "model": cfg.model, "kind": kind, "items": n,
            "dim": dim, f"recall@{RECALL_K} against exact": recall,
            "encode_seconds": round(seconds, 3), "items_per_s": round(n / seconds, 1),
            "fingerprint": trained.fingerprint()}
    if not write:
        return {**info, "retrieval": metrics}
    with atomic_dir(out, force) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        write_json(info, tmp / INDEX_META)
        write_json(metrics, tmp / RETRIEVAL_METRICS)
        pq.write_table(pa.table({"item": np.arange(n), "scenario": facts[0],
                                 "train_clicks": facts[1]}), tmp / CATALOGUE)
    if publish:
        info["feature store"] = store.publish(repo, run, index)
    return {**info, "retrieval": metrics}


def new_index(n: int, dim: int, exact_items: int = EXACT_ITEMS):
    """An empty index for `n` vectors of `dim` (inner product), and its kind: exact up to
    `exact_items`, else HNSW."""
    import faiss

    if n <= exact_items:
        return faiss.IndexFlatIP(dim), "exact"
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_BUILD_DEPTH
    index.hnsw.efSearch = HNSW_SEARCH_DEPTH  # written with the index, so a loaded one has it
    return index, "hnsw"


def recall_against_exact(index, vectors: np.ndarray, queries: int = RECALL_QUERIES,
                         k: int = RECALL_K) -> float:
    """Mean share of the exact top-k an index finds, the queries a fixed sample of the
    vectors themselves."""
    import faiss

    sample = vectors[np.random.default_rng(0).choice(len(vectors), min(queries, len(vectors)),
                                                     replace=False)]
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, want = exact.search(sample, k)
    _, got = index.search(sample, k)
    return float(np.mean([len(set(w) & set(g)) / k for w, g in zip(want, got)]))


def load_catalogue(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(scenario, training clicks) of each store ID, as the index was built with."""
    table = pq.read_table(run / INDEX_DIR / CATALOGUE)
    return table["scenario"].to_numpy(), table["train_clicks"].to_numpy()


def load_retrieval_metrics(run: Path) -> dict | None:
    """The retrieval metrics `recsys index` wrote for the run, or None before it is indexed."""
    from recsys.files import read_json

    path = run / INDEX_DIR / RETRIEVAL_METRICS
    return read_json(path, f"rebuild it with `recsys index --run {run} --force`") \
        if path.is_file() else None


def load_index(run: Path):
    """The run's index and its description."""
    import faiss

    from recsys.files import read_json

    folder = run / INDEX_DIR
    fix = f"build it with `recsys index --run {run}`"
    info = read_json(folder / INDEX_META, fix)
    return faiss.read_index(str(folder / INDEX_FILE)), info
