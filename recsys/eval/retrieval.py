"""A retrieval run's own metrics: of every click in the test split (the days after training),
where its item ranks among all items of the row's scenario by the user's vector of that row,
as Recall@K (the share of clicks ranked in the top K) and NDCG@K (one relevant item: 1 /
log2(rank + 2) when in the top K), overall and per scenario; beside each, the same of a
per-scenario popularity ranking (the items by their clicks in the training split). Ranks are
exact (every item of the scenario scored), so they measure the model, not an index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recsys.schema import ITEM_ID, LABEL, SCENARIO

KS = (20, 100, 500)
CHUNK = 2048  # test rows read a step
SCORE_BYTES = 128 << 20  # the scores of a step's rows against a scenario's items, at most


def retrieval_metrics(run: Path, vectors: np.ndarray, ks: tuple[int, ...] = KS,
                      facts: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """`vectors` (items, dim): the item tower's vector of each store ID; `facts`: the run's
    dataset's catalogue_facts, when already read."""
    from recsys.dataset.stream import SplitFiles, StreamLoader
    from recsys.run import Run

    trained = Run(run)
    layout = trained.layout()
    model = trained.load_model(layout).eval()
    dataset = Path(trained.provenance.dataset)
    scenario_of, clicks = facts or catalogue_facts(dataset, len(vectors))
    members = {s: np.flatnonzero(scenario_of == s) for s in range(len(layout.scenarios))}
    n = len(vectors)
    # popularity: an item's place among a scenario's items by (more clicks, then lower ID)
    keys = -clicks * (n + 1) + np.arange(n)
    ordered = {s: np.sort(keys[m]) for s, m in members.items()}
    slot = layout.slot(ITEM_ID)
    found = {"model": [], "popularity": [], "scenario": []}
    with torch.no_grad():
        for batch in StreamLoader(SplitFiles(dataset, "test", layout), layout, CHUNK):
            clicked = batch.labels > 0
            if not clicked.any():
                continue
            user = model.vectors(batch)[0][clicked].numpy()
            items, scenarios = batch.ids[clicked, slot].numpy(), batch.scenario[clicked].numpy()
            own = (user * vectors[items]).sum(1)
            for s in np.unique(scenarios):
                rows = np.flatnonzero(scenarios == s)
                step = max(1, SCORE_BYTES // (4 * max(len(members[s]), 1)))  # flat in items
                for part in np.split(rows, range(step, len(rows), step)):
                    scores = user[part] @ vectors[members[s]].T
                    # above the clicked item by more than rounding: its own score is no rival
                    found["model"].append((scores > own[part, None] + 1e-6).sum(1))
                found["popularity"].append(np.searchsorted(ordered[s], keys[items[rows]]))
                found["scenario"].append(np.full(len(rows), s))
    ranks = {k: np.concatenate(v) for k, v in found.items()}
    out = {"test clicks": int(len(ranks["scenario"])), "overall": _at(ranks, slice(None), ks),
           "per_scenario": {}}
    for s, name in enumerate(layout.scenarios):
        rows = ranks["scenario"] == s
        if rows.any():
            out["per_scenario"][name] = {"test clicks": int(rows.sum()), **_at(ranks, rows, ks)}
    return out


def _at(ranks: dict, rows, ks) -> dict:
    return {who: {**{f"recall@{k}": float(np.mean(ranks[who][rows] < k)) for k in ks},
                  **{f"ndcg@{k}": float(np.mean(np.where(ranks[who][rows] < k, 1 / np.log2(
                      ranks[who][rows] + 2), 0.0))) for k in ks}}
            for who in ("model", "popularity")}


def catalogue_facts(dataset: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each store ID's scenario (where it is shown most, over every split; -1: never shown)
    and its clicks in the training split, by DuckDB over the dataset's files."""
    import duckdb

    con = duckdb.connect()
    shown = con.execute(f"""
        SELECT {ITEM_ID}, arg_max({SCENARIO}, n) FROM (
            SELECT {ITEM_ID}, {SCENARIO}, count(*) AS n
            FROM read_parquet('{dataset}/*/*.parquet') GROUP BY ALL) GROUP BY {ITEM_ID}
        """).fetchnumpy()
    train = con.execute(f"""
        SELECT {ITEM_ID}, sum({LABEL})::BIGINT FROM read_parquet('{dataset}/train/*.parquet')
        GROUP BY {ITEM_ID}""").fetchnumpy()
    con.close()
    scenario_of, clicks = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for table, into in ((shown, scenario_of), (train, clicks)):
        item, value = table[ITEM_ID], next(v for k, v in table.items() if k != ITEM_ID)
        keep = (item >= 0) & (item < n)
        into[item[keep]] = value[keep]
    return scenario_of, clicks
