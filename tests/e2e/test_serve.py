"""`recsys serve` through a real HTTP client against a real server (uvicorn, the Feast online
store of the tiny preset): the endpoints, served scores equal to the offline scores of the same
test rows (with and without text vectors), every bad input a 4xx while serving goes on, a
restart with the same answers, a re-materialization seen by the item cache, and Redis end to
end."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import error_lines, run
from recsys.data.offline import table_files
from recsys.schema import EVENT_TIMESTAMP, HISTORY_ITEMS, HISTORY_VIEW, INTERACTIONS, ITEM_ID, \
    LABEL, OFFLINE_DIR, USER_ID
from recsys.antm2c import ANTM2C
from recsys.serve.routes import MAX_BODY_BYTES, MAX_CANDIDATES
from recsys.config import TrainConfig
from recsys.run import SCORES
from recsys.train.loop import train
from serving import copy_applied, materialize, recsys_server, redis_available, redis_server, \
    score_request

QUIET = {"progress": False, "log": lambda *a, **k: None}
# the history view's lists: items, scenarios, click times, then the clicked item's features
HISTORY = [f.name for f in ANTM2C.view_features(HISTORY_VIEW.name)]


@pytest.fixture(scope="module")
def served(tiny, tmp_path_factory):
    """A copy of the tiny repo, materialized, and three runs on its dataset: mmoe, dnn_mixed
    with the text vectors, and din (the user's history)."""
    base = tmp_path_factory.mktemp("serve")
    repo = copy_applied(tiny["repo"], base / "repo")
    materialize(repo)
    runs = {}
    for name, model, modalities in (("mmoe", "mmoe", ()), ("text", "dnn_mixed", ("text",)),
                                    ("din", "din", ())):
        cfg = TrainConfig(model=model, epochs=1, batch_size=1024, modalities=modalities)
        train(tiny["dataset"], base / name, cfg, **QUIET)
        runs[name] = base / name
    test = pads.dataset(sorted(str(p) for p in (tiny["dataset"] / "test").glob("*.parquet"))
                        ).to_table()
    return {"repo": repo, "runs": runs, "test": test, "base": base}


@pytest.fixture(scope="module")
def server(served):
    with recsys_server(served["runs"]["mmoe"], served["repo"]) as client:
        yield client


def _served_equals_offline(client, run_dir, test, n=120, rows=None) -> None:
    offline = pq.read_table(run_dir / SCORES.format(split="test"))["score"].to_numpy()
    if rows is None:
        rows = np.random.default_rng(0).choice(test.num_rows, n, replace=False)
    served = np.array([client.post("/score", json=score_request(test, int(r))).json()
                       ["scores"][0]["score"] for r in rows])
    np.testing.assert_allclose(served, offline[rows], atol=1e-5, rtol=0)


def test_endpoints(server, served):
    body = score_request(served["test"], 0)
    body["item_ids"] = [0, 1, 2, 3, 10 ** 9]  # the last one unknown: its cold path
    response = server.post("/score", json=body)
    assert response.status_code == 200
    scores = response.json()["scores"]
    assert sorted(s["item_id"] for s in scores) == sorted(body["item_ids"])
    values = [s["score"] for s in scores]
    assert values == sorted(values, reverse=True) and all(0 < v < 1 for v in values)
    config = json.loads((served["runs"]["mmoe"] / "config.json").read_text())
    assert response.headers["x-recsys-dataset"] == config["dataset_fingerprint"]
    assert response.headers["x-recsys-model"].startswith("mmoe ")
    meta = server.get("/metadata").json()
    assert meta["model"] == "mmoe" and meta["feature_service"] == "multi_modal"
    assert meta["config"]["model_config"]["n_experts"] == 4 and "feast" in meta["versions"]
    assert meta["limits"]["max_candidates"] == MAX_CANDIDATES
    assert server.get("/health").json()["status"] == "ok"
    metrics = server.get("/metrics").text
    assert 'recsys_requests_total{endpoint="/score",status="200"}' in metrics
    assert "recsys_request_seconds_bucket" in metrics and "recsys_feature_seconds" in metrics


def test_served_scores_equal_the_offline_scores(server, served):
    """Test rows of the last day (every feature there stamped at or before its start, so the
    online store's latest values are the rows' point-in-time ones) score as `recsys train`
    scored them."""
    _served_equals_offline(server, served["runs"]["mmoe"], served["test"])


def test_served_scores_with_text_vectors_equal_the_offline_scores(served):
    with recsys_server(served["runs"]["text"], served["repo"]) as client:
        _served_equals_offline(client, served["runs"]["text"], served["test"], n=60)



def test_served_din_scores_equal_the_offline_scores(served):
    """din reads the user's history from the online store with the user's row. A test row
    after the user's last click has as its point-in-time history the latest one, which the
    online store holds: those rows score as `recsys train` scored them, with a history and
    with none."""
    test = served["test"]
    held, rows = _after_the_last_click(served)
    with recsys_server(served["runs"]["din"], served["repo"]) as client:
        _served_equals_offline(client, served["runs"]["din"], test, rows=rows)
        # a click sent to /feedback is in the very next /score's history: its scores move
        body = score_request(test, int(held[0]))
        body["item_ids"] = [body["item_ids"][0], 1, 2, 3]
        before = client.post("/score", json=body).json()["scores"]
        click = {"user_id": body["user_id"], "item_id": 1, "scenario": body["scenario"],
                 "clicked": True}
        answer = client.post("/feedback", json=click)
        assert answer.status_code == 200 and "note" not in answer.json()  # din reads it
        after = client.post("/score", json=body).json()["scores"]
        moved = {s["item_id"]: s["score"] for s in after}
        assert all(abs(moved[s["item_id"]] - s["score"]) > 1e-6 for s in before), (before, after)


def _after_the_last_click(served) -> tuple[np.ndarray, np.ndarray]:
    """Test rows after their user's last click (their history is the online store's): those
    with a history, and 60 of them with 20 without."""
    import duckdb

    test = served["test"]
    offline = served["repo"] / "data" / "offline" / INTERACTIONS
    last = duckdb.sql(f"SELECT {USER_ID}, max({EVENT_TIMESTAMP}) AS last FROM "
                      f"read_parquet('{offline}/**/*.parquet') WHERE {LABEL} = 1 "
                      f"GROUP BY {USER_ID}").fetch_arrow_table()
    last = dict(zip(last[USER_ID].to_pylist(), last["last"].to_pylist()))
    users, times = test[USER_ID].to_pylist(), test[EVENT_TIMESTAMP].to_pylist()
    lengths = pc.list_value_length(test[HISTORY_ITEMS]).fill_null(0).to_numpy()
    after = np.array([u != FEEDBACK_USER and (u not in last or t > last[u])
                      for u, t in zip(users, times)])
    held, empty = np.flatnonzero(after & (lengths > 0)), np.flatnonzero(after & (lengths == 0))
    assert len(held) >= 20 and len(empty) >= 5, (len(held), len(empty))
    return held, np.concatenate([held[:60], empty[:20]])


def test_an_exported_din_is_swapped_in_and_serves_its_own_offline_scores(served):
    """A server watching a folder that holds the din run: `recsys export` of the run (int8
    tables) into that folder is swapped in, and the rows above score as the artifact scored
    the test split, that within int8's rounding of the run."""
    folder = served["base"] / "published"
    folder.mkdir()
    (folder / "din").symlink_to(served["runs"]["din"])
    held, rows = _after_the_last_click(served)
    users = served["test"][USER_ID].to_numpy()
    rows = rows[users[rows] != users[held[0]]]  # the din test sent that user a click
    with recsys_server(None, served["repo"], "--watch", str(folder), "--watch-seconds",
                       "0.5") as client:
        assert client.get("/metadata").json()["run"] == str(folder / "din")
        artifact = folder / "din-int8"
        run("recsys", "export", str(folder / "din"), "--out", str(artifact))
        deadline = time.monotonic() + 120
        while client.get("/metadata").json()["run"] != str(artifact):
            assert time.monotonic() < deadline, client.log.read_text()
            time.sleep(0.5)
        assert client.get("/metadata").json()["model"] == "din"
        _served_equals_offline(client, artifact, served["test"], rows=rows)
    ours = pq.read_table(artifact / SCORES.format(split="test"))["score"].to_numpy()
    theirs = pq.read_table(served["runs"]["din"] / SCORES.format(split="test"))["score"]
    assert 0 < np.abs(ours - theirs.to_numpy()).max() < 0.01


def test_the_served_log_holds_every_answer_with_the_features_the_model_saw(server, served):
    """Each /score answer's items are in the served log, in the answer's order with its scores
    and run, and their features are the ones the model saw: for test rows of the last day
    (whose point-in-time features the online store holds), the test row's own values."""
    from recsys.data.serving_logs import SERVED_FIELDS as FIELDS
    from recsys.data.serving_logs import served_batches

    test = served["test"]
    rows = np.random.default_rng(1).choice(test.num_rows, 40, replace=False)
    answers = {}
    for r in rows:
        body = score_request(test, int(r))
        body["item_ids"] = body["item_ids"] + [10 ** 9]  # and an unknown item
        if r == rows[0]:  # one of an unknown user, without its context: the same columns
            body = {**body, "user_id": 10 ** 12, "context": {}}
        response = server.post("/score", json=body)
        answers[response.json()["request_id"]] = (int(r), response)
    deadline = time.monotonic() + 30  # written within the flush interval
    while True:  # this server's batches (other servers of the module log other columns)
        mine = [b for b in served_batches(served["repo"])
                if set(b["request_id"].to_pylist()) & set(answers)]
        assert len({b.schema for b in mine}) <= 1  # one layout: one file
        log = pa.Table.from_batches(mine) if mine else FIELDS.empty_table()
        log = log.filter(pc.is_in(log["request_id"], pa.array(list(answers))))
        if log.num_rows == 2 * len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert log.num_rows == 2 * len(rows)
    features = [c for c in log.column_names if c in test.column_names and c not in
                FIELDS.names]
    assert any(c.startswith("user_") for c in features) and \
        any(c.startswith("item_") for c in features), features
    for entry in log.to_pylist():
        r, response = answers[entry["request_id"]]
        if r == rows[0]:  # the unknown user: nulls for his row and the context left out
            assert entry[USER_ID] == 10 ** 12 and all(
                entry[c] is None for c in features if c.startswith(("user_", "deep_")))
            continue
        shown = response.json()["scores"][entry["position"]]
        assert entry["score"] == pytest.approx(shown["score"], abs=1e-6)
        assert entry["run"] == response.headers["x-recsys-run"] and entry["endpoint"] == "score"
        assert entry[USER_ID] == test[USER_ID][r].as_py()
        if shown["item_id"] == 10 ** 9:  # an ID the store has no item of: no features
            assert entry[ITEM_ID] == 10 ** 9 and all(entry[c] is None for c in features
                                                     if c.startswith("item_")), entry
            continue
        assert entry[ITEM_ID] == test[ITEM_ID][r].as_py()
        for c in features:
            want = test[c][r].as_py()
            assert entry[c] == pytest.approx(want, rel=1e-6) if isinstance(want, float) \
                else entry[c] == want, (c, entry[c], want)


FEEDBACK_USER = 11  # the user whose online history the feedback test changes


def test_feedback_reaches_the_users_history(server, served):
    """A click sent to /feedback is at the head of the user's history in the online store
    at once (no materialization), with its item's features, the rest shifted behind it; an
    impression without a click changes nothing; a bad event refuses its whole batch with one
    422 and writes nothing."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(served["repo"]))
    profile = pads.dataset(table_files(served["repo"] / OFFLINE_DIR, "item_profile"),
                          format="parquet").to_table().to_pylist()
    carried = [next(r[f] for r in profile if r[ITEM_ID] == 7) for f in
               ANTM2C.history_item_features]  # item 7's, as the store holds them

    def history(user: int) -> tuple[list, ...]:
        row = store.get_online_features(
            features=[f"{HISTORY_VIEW.name}:{name}" for name in HISTORY],
            entity_rows=[{USER_ID: user}]).to_dict()
        return tuple(row[name][0] or [] for name in HISTORY)

    user, length = FEEDBACK_USER, 50
    before = history(user)
    at = datetime.now(timezone.utc) - timedelta(seconds=5)
    answer = server.post("/feedback", json=[
        {"user_id": user, "item_id": 7, "scenario": 2, "clicked": True,
         "timestamp": at.isoformat()},
        {"user_id": user, "item_id": 8, "scenario": 1, "clicked": False}])
    assert answer.status_code == 200
    assert answer.json()["events"] == 2 and answer.json()["clicks"] == 1
    assert "reads no history" in answer.json()["note"]  # the server's mmoe: it says so
    after = history(user)
    assert [x[0] for x in after] == [7, 2, int(at.timestamp() * 1_000_000), *carried]
    assert len(carried) == len(after) - 3 > 0
    assert [x[1:] for x in after] == [x[:length - 1] for x in before]

    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    good = {"user_id": user, "item_id": 9, "scenario": 1, "clicked": True}
    for body, says in [
            ({**good, "scenario": "nope"}, "events[0].scenario: unknown scenario 'nope'"),
            ({**good, "clicked": "yes"}, "events[0].clicked: Input should be a valid boolean"),
            ({**good, "timestamp": future}, "events[0].timestamp: "),
            ({**good, "user_id": "x"}, "events[0].user_id: 'x' is not an ID"),
            ({**good, "item_id": 10 ** 9}, "events[0].item_id: 1000000000 is not an item"),
            ([good, {**good, "scenario": 99}], "events[1].scenario: unknown scenario 99"),
            ([], "send one event or a list of 1 to 1,000 events"),
            ({**good, "item": 3}, "events[0].item: not a known key (the keys: user_id, item_id, "
                                  "scenario, clicked, timestamp, request_id)")]:
        answer = server.post("/feedback", json=body)
        assert answer.status_code == 422 and says in answer.json()["error"], answer.text
    assert history(user) == after  # the good event of the refused batch was not written
    assert server.get("/health").status_code == 200
    # a generated repo's IDs are the store's: a user it has no row for yet is a new user,
    # whose click starts the history the next /score reads
    new = 10 ** 6
    assert history(new)[0] == []
    assert server.post("/feedback", json={**good, "user_id": new}).status_code == 200
    assert history(new)[0] == [9]
    assert server.post("/score", json={"user_id": new, "scenario": 1,
                                       "item_ids": [1, 2]}).status_code == 200


BAD = [
    ({"user_id": [3], "scenario": 1, "item_ids": [1]}, 422, "user_id: Input should be"),
    ({"user_id": 3, "scenario": 1, "item_ids": "1,2"}, 422, "item_ids: Input should be"),
    ({"user_id": 3, "scenario": 1.5, "item_ids": [1]}, 422, "scenario: Input should be"),
    ({"user_id": 3, "scenario": "ads", "item_ids": [1]}, 422, "unknown scenario 'ads'"),
    # a generated repo's IDs are whole numbers: a name is a client's bug, not a new user
    ({"user_id": "x", "scenario": 1, "item_ids": [1]}, 422, "user_id: 'x' is not an ID"),
    ({"user_id": 3, "scenario": 1, "item_ids": ["1", "y"]}, 422, "item_ids: 'y' is not an ID"),
    ({"user_id": 3, "scenario": 9, "item_ids": [1]}, 422, "unknown scenario 9"),
    ({"user_id": 3, "scenario": 1, "item_ids": []}, 422, "send 1 to 1,000 candidates"),
    ({"user_id": 3, "scenario": 1, "item_ids": list(range(MAX_CANDIDATES + 1))}, 422,
     "send 1 to 1,000 candidates"),
    ({"user_id": 3, "scenario": 1, "item_ids": [4, 5, 4]}, 422, "4 appears more than once"),
    ({"user_id": 3, "scenario": 1}, 422, "item_ids: missing"),
    ({"user": 3, "scenario": 1, "item_ids": [1]}, 422, "user: not a known key"),
    ({"user_id": 3, "scenario": 1, "item_ids": [1], "context": {"weather": 1}}, 422,
     "context.weather: not a context feature"),
    ({"user_id": 3, "scenario": 1, "item_ids": [1], "context": {"deep_features_0": 1.5}},
     422, "context.deep_features_0: 1.5 is not a code"),
    ({"user_id": 3, "scenario": 1, "item_ids": [1], "context": {"deep_features_22": "x"}},
     422, "context.deep_features_22: 'x' is not a number"),
]


@pytest.mark.parametrize("body, status, says", BAD)
def test_bad_requests_are_a_4xx_with_a_clear_message(server, body, status, says):
    response = server.post("/score", json=body)
    assert response.status_code == status and says in response.json()["error"], response.text
    assert server.get("/health").status_code == 200  # it goes on serving


def test_malformed_or_oversized_bodies(server):
    def post(content, **headers):
        return server.post("/score", content=content, headers={
            "content-type": "application/json", **headers})

    response = post(b'{"user_id": 3,')
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    big = json.dumps({"user_id": 3, "scenario": 1, "item_ids": [1],
                      "context": {"deep_features_0": "x" * MAX_BODY_BYTES}}).encode()
    response = post(big)
    assert response.status_code == 413 and "over 1,048,576 bytes" in response.json()["error"]
    response = post(iter([big[i:i + 65536] for i in range(0, len(big), 65536)]))  # chunked
    assert response.status_code == 413
    assert post(b"\xff\xfe").status_code == 400
    assert server.get("/health").status_code == 200
    metrics = server.get("/metrics").text
    assert 'recsys_refused_total{reason="body too large"}' in metrics


def test_unknown_users_and_items_take_the_cold_path(server, served):
    body = score_request(served["test"], 3)
    known = server.post("/score", json=body).json()["scores"][0]["score"]
    # (a name where the repo's IDs are whole numbers is a client's bug: a 422, in BAD)
    for change in ({"user_id": 10 ** 12}, {"user_id": str(10 ** 12)},
                   {"item_ids": [10 ** 9, 10 ** 9 + 1]},
                   {"context": {"deep_features_0": 10 ** 6}}):  # a code beyond the vocabulary
        response = server.post("/score", json={**body, **change})
        assert response.status_code == 200, response.text
        assert all(0 < s["score"] < 1 for s in response.json()["scores"])
    same = server.post("/score", json=body).json()["scores"][0]["score"]
    assert same == known


def test_a_new_materialization_reaches_the_item_cache(served, tmp_path):
    """A later item profile, materialized while the server runs, is served within the
    cache's refresh interval, without a restart."""
    repo = copy_applied(served["repo"], tmp_path / "repo")
    body = score_request(served["test"], 7)
    item = body["item_ids"][0]
    with recsys_server(served["runs"]["mmoe"], repo, "--refresh-seconds", "0.5") as client:
        before = client.post("/score", json=body).json()["scores"][0]["score"]
        profile = pq.read_table(next((repo / "data" / "offline" / "item_profile")
                                     .glob("*.parquet")))
        now = datetime.now(timezone.utc)
        changed = profile.filter(pa.compute.equal(profile["item_id"], item)).slice(0, 1)
        changed = changed.set_column(1, "event_timestamp", pa.array(
            [now], changed.schema.field("event_timestamp").type))
        for name in ("item_category", "item_brand", "item_price_level"):
            i = changed.schema.get_field_index(name)
            changed = changed.set_column(i, name, pa.array([(changed[name][0].as_py() + 7) % 10],
                                                           changed.schema.field(name).type))
        pq.write_table(changed, repo / "data" / "offline" / "item_profile" / "part-later.parquet")
        materialize(repo, now + timedelta(minutes=1))
        deadline = time.monotonic() + 60
        while client.get("/health").json()["reloads"] < 1:
            assert time.monotonic() < deadline, "the item cache never reloaded"
            time.sleep(0.2)
        after = client.post("/score", json=body).json()["scores"][0]["score"]
    assert after != before


@pytest.mark.skipif(redis_available() is not None, reason=str(redis_available()))
def test_redis_end_to_end(served, tmp_path):
    """A real redis-server as the online store: materialized into, served from, and the
    answers those of the SQLite store."""
    body = score_request(served["test"], 11)
    body["item_ids"] = list(range(100))
    with recsys_server(served["runs"]["mmoe"], served["repo"]) as client:
        sqlite = client.post("/score", json=body).json()["scores"]
    with redis_server(tmp_path) as port:
        repo = copy_applied(served["repo"], tmp_path / "repo", redis_port=port)
        materialize(repo, everything=True)
        with recsys_server(served["runs"]["mmoe"], repo) as client:
            assert client.post("/score", json=body).json()["scores"] == sqlite
            assert client.get("/metadata").json()["feature_service"] == "multi_modal"


def test_a_run_trained_on_data_the_repo_no_longer_holds_is_said(served, tmp_path):
    """After the repo's data is replaced (here: its world's seed), the server says its run was
    trained on other data (in /metadata's warnings and on stderr at start)."""
    from recsys.serve.metrics import ServerMetrics
    from recsys.serve.settings import Settings
    from recsys.serve.state import Serving

    repo = copy_applied(served["repo"], tmp_path / "repo")
    settings = Settings(str(served["runs"]["mmoe"]), str(repo), refresh_seconds=0,
                        log_served=False)
    serving = Serving(settings, ServerMetrics())
    try:
        assert not [w for w in serving.warnings() if "no longer holds" in w]
        path = repo / OFFLINE_DIR / "meta.json"
        meta = json.loads(path.read_text())
        path.write_text(json.dumps({**meta, "seed": meta["seed"] + 1}))
        [said] = [w for w in serving.warnings() if "no longer holds" in w]
        assert str(served["runs"]["mmoe"]) in said and "train on the repo's data again" in said
    finally:
        serving.close()


def test_serve_refuses_what_it_cannot_serve(served, tmp_path):
    for args, says in ((["--run", str(tmp_path / "nothing")], "not a finished run"),
                       (["--run", str(served["runs"]["mmoe"]), "--port", "0"], "'--port'"),
                       (["--run", str(served["runs"]["mmoe"]), "--repo", str(tmp_path)],
                        "not a Feast feature repository")):
        proc = run("recsys", "serve", "--repo", str(served["repo"]), *args, check=False)
        lines = error_lines(proc.stderr)
        assert proc.returncode == 2 and len(lines) == 1 and says in lines[0], proc.stderr


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_concurrent_clicks_on_two_workers_are_all_kept_after_a_kill(served, tmp_path, store):
    """400 clicks over 20 users sent at once to `--workers 2` (two processes, one merge rule:
    before it, two workers lost 14 of 40 clicks; the issue's 1,000 over 50 on 4 workers passes
    too, but costs CI about 40 s more): every one answered 200 is in
    its user's online history and in the feedback log, none twice, also after a kill -9 of
    the server right after the answers; and 100 /score answers, each the run's offline score
    whichever worker gave it, all counted by /metrics, in the served log after a kill -9 a
    flush interval later."""
    import os
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from feast import FeatureStore

    from recsys.data.serving_logs import read_feedback, read_served
    from recsys.serve.settings import Settings

    if store == "redis" and redis_available() is not None:
        pytest.skip(redis_available())
    offline = pq.read_table(served["runs"]["mmoe"] / SCORES.format(split="test"))["score"]
    offline = offline.to_numpy()
    users, per_user = list(range(100, 120)), 20
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    clicks = [(u, 1 + 7 * k + u % 7, start + timedelta(milliseconds=per_user * i + k))
              for i, u in enumerate(users) for k in range(per_user)]

    def check(repo) -> None:
        fs = FeatureStore(repo_path=str(repo))
        rows = fs.get_online_features(
            features=[f"{HISTORY_VIEW.name}:{HISTORY_ITEMS}", f"{HISTORY_VIEW.name}:{HISTORY[2]}"],
            entity_rows=[{USER_ID: u} for u in users]).to_dict()
        for i, u in enumerate(users):
            kept = set(zip(rows[HISTORY_ITEMS][i], rows[HISTORY[2]][i]))
            sent = {(item, int(at.timestamp() * 1_000_000)) for v, item, at in clicks if v == u}
            assert sent <= kept, (u, sent - kept)
        log = [e for e in read_feedback(repo).to_pylist() if e["user_id"] in users]
        assert sorted((e["user_id"], e["item_id"], e["event_timestamp"]) for e in log) == \
            sorted((u, item, int(at.timestamp() * 1_000_000)) for u, item, at in clicks)

    def serve_and_kill(repo) -> None:
        with recsys_server(served["runs"]["mmoe"], repo, "--workers", "2") as client:
            def send(click) -> int:
                u, item, at = click
                return client.post("/feedback", json={
                    "user_id": u, "item_id": item, "scenario": 1, "clicked": True,
                    "timestamp": at.isoformat()}).status_code
            with ThreadPoolExecutor(32) as pool:
                answers = [r.json() for r in pool.map(
                    lambda r: client.post("/score", json=score_request(served["test"], r)),
                    range(100))]
                answered = time.monotonic()
                assert set(pool.map(send, clicks)) == {200}
            # whichever worker answered, the run's own scores; /metrics counts every worker's
            assert 'recsys_requests_total{endpoint="/score",status="200"} 100.0' in \
                client.get("/metrics").text
            # the answers are a flush interval and its write old (the clicks took most of it)
            time.sleep(max(0.0, answered + 2 * Settings.log_flush_seconds + 0.5 -
                           time.monotonic()))
            os.killpg(client.proc.pid, signal.SIGKILL)
            client.proc.wait(timeout=30)
        np.testing.assert_allclose([a["scores"][0]["score"] for a in answers], offline[:100],
                                   atol=1e-5, rtol=0)
        check(repo)
        # every answer older than the flush interval was on disk before the kill
        log = read_served(repo)
        scored = [a["request_id"] for a in answers]
        ours = log.filter(pc.is_in(log["request_id"], pa.array(scored)))["request_id"]
        assert sorted(ours.to_pylist()) == sorted(scored)  # each once: one item a request

    if store == "sqlite":
        serve_and_kill(copy_applied(served["repo"], tmp_path / "repo"))
        return
    with redis_server(tmp_path) as port:
        repo = copy_applied(served["repo"], tmp_path / "repo", redis_port=port)
        materialize(repo, everything=True)
        serve_and_kill(repo)
