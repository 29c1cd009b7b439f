"""Retrieval:
- the approximate index `recsys index` builds past EXACT_ITEMS (HNSW), over 1M synthetic item
  vectors clustered as a two-tower's are (items of a topic near its centre): its recall of the
  exact top-100, and a top-100 query's latency on one core beside exact search's;
- `recsys index` of a two_tower run on the preset's rows and users with a tenth of its items
  and with all of them: items/s and peak RSS (flat in items)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from conftest import PRESET, RESULTS, generated_repo, two_tower
from recsys.retrieval.index import new_index

ANN_ITEMS, ANN_DIM, K = 1_000_000, 64, 100
ANN_QUERIES, EXACT_QUERIES = 1_000, 200  # exact search takes ~10 ms a query here
CLUSTERS = 200


def _clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """n vectors, each a random centre plus noise the size of the spread between centres."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, ANN_DIM), dtype=np.float32) / np.sqrt(ANN_DIM)
    return centres[rng.integers(0, len(centres), n)] + noise


def _latencies(search, queries: np.ndarray) -> np.ndarray:
    out = []
    for q in queries:
        start = time.perf_counter()
        search(q[None])
        out.append(time.perf_counter() - start)
    return np.array(out) * 1000


def test_ann_against_exact(benchmark):
    import faiss

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLUSTERS, ANN_DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    items = _clustered(ANN_ITEMS, 1, centres)
    queries = _clustered(ANN_QUERIES, 2, centres)
    index, kind = new_index(ANN_ITEMS, ANN_DIM)
    assert kind == "hnsw"
    benchmark.group = "retrieval: ANN over 1M vectors"
    benchmark.pedantic(lambda: index.add(items), rounds=1, iterations=1)
    RESULTS["ANN index build s, 1M vectors"] = benchmark.stats.stats.mean
    exact = faiss.IndexFlatIP(ANN_DIM)
    exact.add(items)
    _, want = exact.search(queries, K)
    _, got = index.search(queries, K)
    recall = float(np.mean([len(set(w) & set(g)) / K for w, g in zip(want, got)]))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query, one core
    try:
        ann = _latencies(lambda q: index.search(q, K), queries)
        flat = _latencies(lambda q: exact.search(q, K), queries[:EXACT_QUERIES])
    finally:
        faiss.omp_set_num_threads(threads)
    RESULTS["ANN top-100 recall against exact, 1M vectors"] = recall
    for name, ms in (("ANN", ann), ("exact", flat)):
        RESULTS[f"{name} top-100 over 1M vectors, one core, p50 ms"] = float(np.percentile(ms, 50))
        RESULTS[f"{name} top-100 over 1M vectors, one core, p99 ms"] = float(np.percentile(ms, 99))
        RESULTS[f"{name} top-100 over 1M vectors, one core, mean ms"] = float(ms.mean())
    assert recall > 0.5  # the index works at all; its gate is read from the table


# The child's peak from /proc, its time from after the imports (see bench_build_dataset).
_MEASURE = """
import json, re, sys, time
from pathlib import Path
from recsys.retrieval.index import build_index
start = time.perf_counter()
info = build_index(Path(sys.argv[1]), force=True)
seconds = time.perf_counter() - start
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(json.dumps({"peak_rss": int(hwm) * 1024, "items": info["items"], "seconds": seconds,
                  "items_per_s": info["items_per_s"]}))
"""


@pytest.fixture(scope="module")
def tenth_items_run(tmp_path_factory):
    """two_tower on a world of the preset's rows and users and a tenth of its items."""
    from recsys.data.presets import get_preset
    from recsys.dataset.build import build_dataset

    base = tmp_path_factory.mktemp("tenth-items")
    preset = get_preset(PRESET)
    repo = generated_repo(base / "feature_repo", replace(preset, n_items=preset.n_items // 10))
    build_dataset(repo, base / "ds", progress=False)
    return two_tower(base / "ds", base / "run")


@pytest.mark.parametrize("size", ["1x", "10x"])
def test_index_build(benchmark, request, size):
    """A whole `recsys index` process (encode every item, write the index, the run's
    retrieval metrics on its test split): items/s of the encoding and the peak RSS."""
    run = request.getfixturevalue("tenth_items_run" if size == "1x" else "two_tower_run")
    out = {}

    def index():
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(run)], capture_output=True,
                              text=True, check=True)
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))

    benchmark.group = "retrieval: recsys index, 1x vs 10x items"
    benchmark.pedantic(index, rounds=1, iterations=1)
    RESULTS[f"recsys index items/s, {size} items"] = out["items_per_s"]
    RESULTS[f"recsys index peak RSS bytes, {size} items"] = out["peak_rss"]
    RESULTS[f"recsys index s, {size} items ({out['items']:,})"] = out["seconds"]
