"""The daily cycle through real processes, on a world grown after the tour's `feast
materialize-incremental` to now (whose interval then ends after every day the world will ever
add): each new day's clicks reach the users' online histories through `recsys materialize`;
a server says how fresh it is in /metadata; what it served and the clicks sent back become, in
one cycle of `recsys follow`, new rows of the log, a training set of exactly those impressions
and a run warm-started from the serving one, published beside it."""

from __future__ import annotations

import json
import time
from datetime import datetime

import duckdb
import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore

from conftest import copy_repo, error_lines, run
from recsys.config import UPDATE_DENSE_LR_SHARE, TrainConfig
from recsys.data.offline import read_schema
from recsys.data.online import pending_days
from recsys.data.serving_logs import read_served
from recsys.schema import AGGREGATE_VIEWS, COLD_START_FLAGS, EVENT_TIMESTAMP, HISTORY_ITEMS, \
    HISTORY_VIEW, INTERACTIONS, ITEM_ID, LABEL, USER_ID
from recsys.serve.scorer import Request, Scorer
from recsys.train.loop import train
from serving import materialize, recsys_server, score_request

QUIET = {"progress": False, "log": lambda *a, **k: None}


def _last_clicks(repo, day: str) -> dict[int, int]:
    """Each user's latest click of `day`: user -> item."""
    rows = duckdb.sql(f"""
        SELECT {USER_ID}, arg_max({ITEM_ID}, ({EVENT_TIMESTAMP}, request_id, {ITEM_ID}))
        FROM read_parquet('{repo}/data/offline/{INTERACTIONS}/day={day}/*.parquet')
        WHERE {LABEL} = 1 GROUP BY ALL""").fetchall()
    return dict(rows)


def _history_heads(repo, users: list[int]) -> list:
    rows = FeatureStore(repo_path=str(repo)).get_online_features(
        features=[f"{HISTORY_VIEW.name}:{HISTORY_ITEMS}"],
        entity_rows=[{USER_ID: u} for u in users]).to_dict()[HISTORY_ITEMS]
    return [r[0] if r else None for r in rows]


def _sorted_table(dataset):
    return pads.dataset(sorted(str(p) for p in dataset.glob("*/*.parquet"))).to_table(
        ).sort_by([("request_id", "ascending"), (ITEM_ID, "ascending")])


def _rows(files) -> list:
    """The rows' (request, user, item, label), sorted: a row twice is there twice."""
    table = pads.dataset(sorted(str(p) for p in files), format="parquet").to_table(
        columns=["request_id", USER_ID, ITEM_ID, LABEL])
    return sorted(zip(*(table[c].to_pylist() for c in table.column_names)))


def _grow_two_days(tiny, repo) -> None:
    """The tiny world (the fixture's seed) up to day 4, the tour's materialization, then two
    days appended, each followed by `recsys materialize`."""
    grow = ["recsys", "generate", "--preset", "tiny", "--seed", "7", "--repo", str(repo),
            "--workers", "2"]
    run(*grow, "--until", "4")
    run("feast", "apply", cwd=repo)
    materialize(repo)  # the tour: materialize-incremental up to now
    for until, day in ((5, "2026-01-05"), (6, "2026-01-06")):
        run(*grow, "--until", str(until), "--append")
        clicks = _last_clicks(repo, day)
        users = sorted(clicks)
        assert len(users) > 20
        if until == 6:  # the cycle ran before: it knows which day is new
            assert pending_days(repo) == [day]
            # the day is behind the incremental interval's end: not online yet
            assert _history_heads(repo, users) != [clicks[u] for u in users]
        assert "materialized" in run("recsys", "materialize", "--repo", str(repo)).stdout
        assert _history_heads(repo, users) == [clicks[u] for u in users]
        assert pending_days(repo) == []
    assert "every day" in run("recsys", "materialize", "--repo", str(repo)).stdout


def test_the_daily_cycle_from_a_new_day_to_a_model_of_what_was_served(tiny, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    _grow_two_days(tiny, repo)
    first = tmp_path / "runs" / "mmoe"
    train(tiny["dataset"], first, TrainConfig(model="mmoe", epochs=1, batch_size=1024), **QUIET)
    test = pads.dataset(sorted(str(p) for p in (tiny["dataset"] / "test").glob("*.parquet"))
                        ).to_table()
    clicked = set()
    with recsys_server(first, repo, "--log-flush-seconds", "0.2") as client:
        fresh = client.get("/metadata").json()["freshness"]
        for r in range(30):
            body = score_request(test, r)
            body["item_ids"] = list(dict.fromkeys(body["item_ids"] + [1, 2, 3]))
            answer = client.post("/score", json=body).json()
            top = answer["scores"][0]["item_id"]
            if r % 3 == 0:  # a click on the top item, naming its request (or, once, not)
                event = {"user_id": body["user_id"], "item_id": top, "clicked": True,
                         "scenario": body["scenario"]}
                if r != 0:
                    event["request_id"] = answer["request_id"]
                assert client.post("/feedback", json=event).status_code == 200
                clicked.add((answer["request_id"], body["user_id"], top))
    last_day = repo / "data" / "offline" / INTERACTIONS / "day=2026-01-06"
    latest = max(pc.max(pq.read_table(f, columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP]).as_py()
                 for f in last_day.glob("*.parquet"))
    assert fresh["pending_days"] == [] and datetime.fromisoformat(fresh["log_latest"]) == latest
    assert datetime.fromisoformat(fresh["views"][HISTORY_VIEW.name]) > latest

    # the server stopped cleanly: every answer is in the served log
    served = read_served(repo)
    assert served.num_rows == sum(len(set(score_request(test, r)["item_ids"] + [1, 2, 3]))
                                  for r in range(30))
    time.sleep(1.5)  # past the label window given below
    # one cycle of `recsys follow`: import, materialize, build, warm-start, check, publish
    watch = first.parent
    said = run("recsys", "follow", "--once", "--repo", str(repo), "--watch", str(watch),
               "--label-window", "1").stdout
    assert "published" in said, said
    want = sorted((q, u, i, int((q, u, i) in clicked)) for q, u, i in zip(
        served["request_id"].to_pylist(), served[USER_ID].to_pylist(),
        served[ITEM_ID].to_pylist()))
    log = repo / "data" / "offline" / INTERACTIONS
    assert _rows(log.glob("day=*/part-served-*.parquet")) == want
    assert sum(label for *_, label in want) == len(clicked)
    assert pending_days(repo) == []  # the served day materialized
    # tomorrow's training set: the served day, point in time, every row a served impression
    [dataset] = (watch / ".follow").glob("dataset-*")
    assert _rows(dataset.glob("*/*.parquet")) == want
    # the same rows built from the served log: the features the serving model saw
    logged = tmp_path / "logged"
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(logged), "--features",
        "logged")
    assert _rows(logged.glob("*/*.parquet")) == want
    joined, as_logged = (_sorted_table(d) for d in (dataset, logged))
    schema = read_schema(repo)
    own = {*served.column_names, *schema.tables()[INTERACTIONS].names, *COLD_START_FLAGS}
    unread = [c for c in joined.column_names if c not in own and c != "split"]
    kept = [c for c in unread if as_logged[c].null_count < as_logged.num_rows]
    assert unread and not kept, kept
    differ = {c for c in joined.column_names if c not in unread and c != "split"
              and not joined[c].equals(as_logged[c])}
    # nothing the model read differs but (perhaps) the 7-day counts: the online store's
    # values as of the last materialization, the build's as of each row's instant
    aggregates = {f.name for f in schema.features if f.view in AGGREGATE_VIEWS}
    assert differ <= aggregates, differ
    [second] = [p for p in watch.iterdir() if p.name.startswith("follow-")]
    config = json.loads((second / "config.json").read_text())
    assert config["init_from"] == str(first) and config["dense_lr"] == pytest.approx(
        json.loads((first / "config.json").read_text())["dense_lr"] * UPDATE_DENSE_LR_SHARE)
    scorer = Scorer(second, repo, refresh_seconds=0)
    body = score_request(test, 0)
    scores = scorer.score(Request(body["user_id"], body["scenario"], body["item_ids"])).scores
    scorer.close()
    assert np.isfinite(scores).all() and ((0 < scores) & (scores < 1)).all()
    # nothing new: the next cycle says so; the import alone refuses in one line
    assert "nothing new" in run("recsys", "follow", "--once", "--repo", str(repo), "--watch",
                                str(watch), "--label-window", "1").stdout
    again = run("recsys", "import", "served", "--repo", str(repo), "--label-window", "1",
                check=False)
    assert again.returncode != 0 and len(error_lines(again.stderr)) == 1, again.stderr
    assert "nothing new to import" in again.stderr
