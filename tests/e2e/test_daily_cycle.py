"""The documented daily cycle on a grown world, after the tour's `feast materialize-incremental`
to now (whose interval then ends after every day the world will ever add): each new day's
clicks reach the users' online histories through `recsys materialize`, and the server's
/metadata says up to when the log and the views go."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import FeatureStore

from conftest import copy_repo, run
from recsys.config import TrainConfig
from recsys.data.online import pending_days
from recsys.schema import EVENT_TIMESTAMP, HISTORY_ITEMS, HISTORY_VIEW, INTERACTIONS, ITEM_ID, \
    LABEL, USER_ID
from recsys.train.loop import train
from serving import materialize, recsys_server

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


def test_each_new_day_reaches_the_online_store_and_metadata_says_so(tiny, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    grow = ["recsys", "generate", "--preset", "tiny", "--seed", "7", "--repo", str(repo),
            "--workers", "2"]
    run(*grow, "--until", "4")
    run("feast", "apply", cwd=repo)
    materialize(repo)  # the tour: materialize-incremental up to now
    for until, day in ((5, "2026-01-05"), (6, "2026-01-06")):
        run(*grow, "--until", str(until), "--append")
        clicks = _last_clicks(repo, day)
        assert len(clicks) > 20
        users = sorted(clicks)
        if until == 6:  # the cycle ran before: it knows which day is new
            assert pending_days(repo) == [day]
            # what the docs said before: the new day is behind the interval's end, not taken
            assert _history_heads(repo, users) != [clicks[u] for u in users]
        done = run("recsys", "materialize", "--repo", str(repo)).stdout
        assert "materialized" in done, done
        assert _history_heads(repo, users) == [clicks[u] for u in users]
        assert pending_days(repo) == []
    assert "every day" in run("recsys", "materialize", "--repo", str(repo)).stdout
    served = tmp_path / "mmoe"
    train(tiny["dataset"], served, TrainConfig(model="mmoe", epochs=1, batch_size=1024),
          **QUIET)
    with recsys_server(served, repo) as client:
        fresh = client.get("/metadata").json()["freshness"]
    latest = max(pc.max(pq.read_table(f, columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP]).as_py()
                 for f in (repo / "data" / "offline" / INTERACTIONS / "day=2026-01-06").glob(
                     "*.parquet"))
    assert fresh["pending_days"] == [] and \
        datetime.fromisoformat(fresh["log_latest"]) >= latest
    assert datetime.fromisoformat(fresh["views"][HISTORY_VIEW.name]) > latest
