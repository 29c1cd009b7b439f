"""Retrieval on the tiny preset through the real CLI: a two_tower run, `recsys index` over the
repo's items, the index holding exactly the item tower's vectors and answering the exact top-k
of a user's vector, its Recall@K / NDCG@K equal to a brute-force replay; rebuilt only with
--force; the vectors in the repo's feature store, offline and online, another run's replaced only
with --force; HNSW past the exact size; a run of a scoring model refused in one line; `recsys
experiment retrieval` writing its table and plot, and gated."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from conftest import error_lines, run
from recsys.dataset.loader import load_split, rows_batch
from recsys.retrieval.index import build_index, load_index
from recsys.run import INDEX_DIR, RETRIEVAL_METRICS
from recsys.run import Run
from recsys.schema import ITEM_ID, LABEL, SCENARIO


@pytest.fixture(scope="module")
def indexed(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("retrieval") / "two_tower"
    run("recsys", "train", "--model", "two_tower", "--epochs", "1", "--batch-size", "1024",
        "--dataset", str(tiny["dataset"]), "--out", str(out))
    run("recsys", "index", "--run", str(out), "--repo", str(tiny["repo"]))
    trained = Run(out)
    layout = trained.layout()
    test = load_split(tiny["dataset"], "test", layout)
    clicked = np.flatnonzero(test.labels > 0)
    batch = rows_batch(test, layout, clicked)
    with torch.no_grad():
        user, item = (v.numpy() for v in trained.load_model(layout).eval().vectors(batch))
    return {"run": out, "user": user, "item": item, "scenario": batch.scenario.numpy(),
            "items": batch.ids[:, layout.slot(ITEM_ID)].numpy()}  # table row i: store ID i


def test_the_index_holds_the_item_towers_vectors_and_their_exact_top_k(indexed, tiny):
    index, info = load_index(indexed["run"])
    meta = json.loads((tiny["dataset"] / "meta.json").read_text())
    assert info["kind"] == "exact" and info["items"] == index.ntotal == meta["n_items"]
    stored = index.reconstruct_n(0, index.ntotal)
    # the item tower on the rows' items (their profile as the rows have it) = the index's rows
    assert np.allclose(stored[indexed["items"]], indexed["item"], atol=1e-5)
    _, found = index.search(indexed["user"], 20)
    want = np.argsort(-(indexed["user"] @ stored.T), axis=1, kind="stable")[:, :20]
    assert (found == want).mean() > 0.99  # exact, up to ties of equal inner products


def test_recall_and_ndcg_equal_a_brute_force_replay(indexed, tiny):
    """Each test click's rank among its scenario's items (an item's scenario: where it is
    shown most), by the model and by the training split's clicks, replayed in Python."""
    metrics = json.loads((indexed["run"] / INDEX_DIR / RETRIEVAL_METRICS).read_text())
    rows = pads.dataset(sorted(tiny["dataset"].glob("*/*.parquet")), format="parquet").to_table(
        columns=[ITEM_ID, SCENARIO, LABEL]).to_pylist()
    shown, clicks = {}, {}
    for r in rows:
        key = (r[ITEM_ID], r[SCENARIO])
        shown[key] = shown.get(key, 0) + 1
    for r in pads.dataset(str(tiny["dataset"] / "train"), format="parquet").to_table(
            columns=[ITEM_ID, LABEL]).to_pylist():
        clicks[r[ITEM_ID]] = clicks.get(r[ITEM_ID], 0) + r[LABEL]
    scenario_of = {}
    for (item, scenario), n in sorted(shown.items()):
        if n > shown.get((item, scenario_of.get(item)), 0):
            scenario_of[item] = scenario
    index = load_index(indexed["run"])[0]
    stored = index.reconstruct_n(0, index.ntotal)
    model_ranks, popular_ranks = [], []
    for u, item, s in zip(indexed["user"], indexed["items"], indexed["scenario"]):
        members = [i for i, at in scenario_of.items() if at == s]
        own = float(u @ stored[item])
        model_ranks.append(sum(float(u @ stored[i]) > own for i in members))
        mine = clicks.get(item, 0)
        popular_ranks.append(sum(clicks.get(i, 0) > mine or
                                 (clicks.get(i, 0) == mine and i < item) for i in members))
    assert metrics["test clicks"] == len(model_ranks) > 100
    for who, ranks in (("model", np.array(model_ranks)), ("popularity", np.array(popular_ranks))):
        got = metrics["overall"][who]
        for k in (20, 100, 500):
            assert got[f"recall@{k}"] == pytest.approx(np.mean(ranks < k), abs=2e-3)
            assert got[f"ndcg@{k}"] == pytest.approx(
                np.mean(np.where(ranks < k, 1 / np.log2(ranks + 2), 0)), abs=2e-3)
    assert metrics["overall"]["model"]["recall@20"] != metrics["overall"]["popularity"][
        "recall@20"]  # two rankings, not one twice


def test_rebuilt_with_force_hnsw_past_the_exact_size_and_a_scorer_refused(indexed, tiny,
                                                                          tmp_path):
    out = indexed["run"]
    again = run("recsys", "index", "--run", str(out), "--repo", str(tiny["repo"]), check=False)
    assert again.returncode != 0 and len(error_lines(again.stderr)) == 1
    assert "--force" in again.stderr

    # past its size for an exact index: HNSW, whose recall against exact search is recorded
    info = build_index(out, tiny["repo"], force=True, exact_items=100)
    hnsw, _ = load_index(out)
    assert info["kind"] == "hnsw" and hnsw.ntotal == info["items"]
    assert info["recall@100 against exact"] > 0.9
    stored = hnsw.reconstruct_n(0, hnsw.ntotal)
    want = np.argsort(-(indexed["user"] @ stored.T), axis=1, kind="stable")[:, :20]
    _, near = hnsw.search(indexed["user"], 20)
    assert np.mean([len(set(a) & set(b)) / 20 for a, b in zip(near, want)]) > 0.9
    run("recsys", "index", "--run", str(out), "--repo", str(tiny["repo"]), "--force")

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


def test_recommend_retrieves_then_ranks(indexed, tiny, tmp_path):
    """`recsys serve --run RANKER --retrieval RUN`: k distinct items of the scenario, best
    first, none excluded, ranked as /score ranks the same candidates; a cold user gets the
    scenario's most clicked items, said so; bad requests one 4xx each; stage times counted."""
    from datetime import datetime, timezone

    from recsys.retrieval.index import load_catalogue
    from recsys.config import TrainConfig
    from recsys.train.loop import train
    from serving import copy_applied, recsys_server

    repo = copy_applied(tiny["repo"], tmp_path / "repo")
    run("feast", "materialize-incremental",
        datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), cwd=repo)
    ranker = tmp_path / "mmoe"
    train(tiny["dataset"], ranker, TrainConfig(model="mmoe", epochs=1, batch_size=1024),
          progress=False, log=lambda *a, **k: None)
    scenario_of, clicks = load_catalogue(indexed["run"])
    with recsys_server(ranker, repo, "--retrieval", str(indexed["run"])) as client:
        user, scenario = 5, 2
        first = client.post("/recommend", json={"user_id": user, "scenario": scenario,
                                                "k": 10, "candidates": 50})
        assert first.status_code == 200, first.text
        got = first.json()
        items = [x["item_id"] for x in got["items"]]
        assert got["source"] == "retrieval" and len(items) == len(set(items)) == 10
        assert all(scenario_of[i] == scenario for i in items)
        scores = [x["score"] for x in got["items"]]
        assert scores == sorted(scores, reverse=True)
        # the ranking is /score's on the same candidates
        again = client.post("/score", json={"user_id": user, "scenario": scenario,
                                            "item_ids": items}).json()["scores"]
        assert [x["item_id"] for x in again] == items
        np.testing.assert_allclose([x["score"] for x in again], scores, atol=1e-6)

        excluded = client.post("/recommend", json={"user_id": user, "scenario": scenario,
                                                   "k": 10, "candidates": 50,
                                                   "exclude": items[:3]}).json()
        assert not set(items[:3]) & {x["item_id"] for x in excluded["items"]}

        cold = client.post("/recommend", json={"user_id": 10 ** 9, "scenario": scenario,
                                               "k": 5, "candidates": 5}).json()
        members = np.flatnonzero(scenario_of == scenario)
        top = set(members[np.lexsort((members, -clicks[members]))][:5].tolist())
        assert cold["source"] == "popular" and {x["item_id"] for x in cold["items"]} == top
        assert all(x["retrieval_score"] is None for x in cold["items"])

        for body, says in [
                ({"user_id": user, "scenario": 99}, "scenario: unknown scenario 99"),
                ({"user_id": user, "scenario": 1, "k": 0}, "k: "),
                ({"user_id": user, "scenario": 1, "k": 30, "candidates": 20},
                 "k: 30 is more than the 20 candidates"),
                ({"user_id": "x", "scenario": 1}, "user_id: 'x' is not an ID"),
                ({"user_id": user, "scenario": 1, "top": 3}, "top: not a known key")]:
            answer = client.post("/recommend", json=body)
            assert answer.status_code == 422 and says in answer.json()["error"], answer.text
        assert client.get("/health").status_code == 200
        assert 'recsys_recommend_stage_seconds_count{stage="retrieval"}' in \
            client.get("/metrics").text
        assert client.get("/metadata").json()["retrieval"]["index"]["kind"] == "exact"


def test_the_retrieval_experiment_writes_its_table_and_plot_and_is_gated(tiny, tmp_path):
    out = tmp_path / "exp"
    printed = run("recsys", "experiment", "retrieval", "--dataset", str(tiny["dataset"]),
                  "--epochs", "1", "--batch-size", "1024", "--out", str(out)).stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"two_tower", "two_tower+history-mean", "popularity"}
    indexed = json.loads((out / "runs" / "two_tower-seed0" / INDEX_DIR / RETRIEVAL_METRICS)
                         .read_text())  # each run indexed, its metrics the table's
    got = results["models"]["two_tower"]["recall@100"]["overall"]["mean"]
    assert got == indexed["overall"]["model"]["recall@100"]
    assert results["models"]["popularity"]["recall@100"]["overall"]["mean"] == \
        indexed["overall"]["popularity"]["recall@100"]
    # generated data: the generator's chance ranks the clicks at least as well as popularity
    ceiling = results["ceiling"]["generator's chance"]["overall"]["recall@20"]
    assert ceiling >= results["models"]["popularity"]["recall@20"]["overall"]["mean"]
    report = (out / "report.md").read_text()
    assert "## Recall@100" in report and "*ceiling: generator's chance*" in report
    assert "two_tower+history-mean" in printed and (out / "retrieval.png").stat().st_size > 10_000
    gates = tmp_path / "gates.json"
    run("recsys", "experiment", "gate", str(out), "--gates", str(gates), "--record")
    gated = json.loads(gates.read_text())["experiments"]["retrieval"]["per_scenario"]
    assert gated["two_tower"]["overall"] == round(got, 4)
    assert "within tolerance" in run("recsys", "experiment", "gate", str(out), "--gates",
                                     str(gates)).stdout


def test_the_feature_store_holds_the_item_vectors(indexed, tiny):
    """recsys index wrote the index's vectors into the repo's item_retrieval view: its offline
    table (naming the run) and the online store, read back through Feast."""
    import pyarrow.parquet as pq
    from feast import FeatureStore

    from recsys.retrieval.store import holds
    from recsys.schema import RETRIEVAL_VECTOR, RETRIEVAL_VIEW

    index = load_index(indexed["run"])[0]
    stored = index.reconstruct_n(0, index.ntotal)
    table = pq.read_table(tiny["offline"] / RETRIEVAL_VIEW.name)
    assert table.num_rows == len(stored) and holds(tiny["repo"]) == str(indexed["run"])
    assert np.allclose(np.stack(table[RETRIEVAL_VECTOR].to_numpy(zero_copy_only=False)), stored)
    items = [0, 7, 123, len(stored) - 1]
    online = FeatureStore(str(tiny["repo"])).get_online_features(
        features=[f"{RETRIEVAL_VIEW.name}:{RETRIEVAL_VECTOR}"],
        entity_rows=[{ITEM_ID: i} for i in items]).to_dict()[RETRIEVAL_VECTOR]
    assert np.allclose(np.array(online), stored[items], atol=1e-6)


def test_another_runs_vectors_are_replaced_only_with_force(indexed, tiny, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(indexed["run"], other, ignore=shutil.ignore_patterns(INDEX_DIR))
    refused = run("recsys", "index", "--run", str(other), "--repo", str(tiny["repo"]),
                  check=False)
    assert refused.returncode == 2
    assert error_lines(refused.stderr) == [
        f"error: {tiny['offline'] / 'item_retrieval' / 'part-00000.parquet'}: the feature store "
        f"holds the item vectors of run {indexed['run']}; pass --force to replace them with "
        f"{other}'s"]
    assert not (other / INDEX_DIR).exists()  # refused before any work
