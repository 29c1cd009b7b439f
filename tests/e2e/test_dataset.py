"""build-dataset: Feast's point-in-time join checked against an independent DuckDB ASOF join, the
aggregates against the raw log, and the split and cold-start flags against their definitions."""

from __future__ import annotations

import json

import duckdb
import pyarrow.parquet as pq
import pytest

from recsys.data.offline import table_glob
from recsys.schema import COLD_START_FLAGS, FEW_SHOT_MAX, INTERACTIONS
from recsys.antm2c import ENTITY_BY_NAME, MODEL_VIEWS, SCENARIOS, VIEWS, dataset_schema, \
    view_features


@pytest.fixture(scope="module")
def con(tiny):
    """DuckDB over the built dataset (`ds`) and the raw offline tables, read independently."""
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    meta = json.loads((tiny["offline"] / "meta.json").read_text())
    c.execute(f"""CREATE VIEW ds AS SELECT *, CAST((epoch_us(event_timestamp)
                  - {meta['start_epoch']}::BIGINT * 1000000) // 86400000000 AS INTEGER) AS day
                  FROM read_parquet('{tiny['dataset']}/*/*.parquet', filename = true)""")
    for v in VIEWS:
        c.execute(f"CREATE VIEW {v.name} AS SELECT * FROM read_parquet('"
                  f"{table_glob(tiny['offline'], v.name)}')")
    c.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet('"
              f"{table_glob(tiny['offline'], INTERACTIONS)}', hive_partitioning = false)")
    return c


def test_every_impression_lands_once_with_the_dataset_schema(tiny, con):
    n_raw, n_ds, n_ids = con.execute(
        "SELECT (SELECT count(*) FROM raw), count(*), count(DISTINCT request_id) FROM ds"
    ).fetchone()
    assert n_raw == n_ds == n_ids
    for part in tiny["dataset"].glob("*/*.parquet"):
        assert pq.read_schema(part).equals(dataset_schema(), check_metadata=False), part


@pytest.mark.parametrize("view", [v.name for v in MODEL_VIEWS])
def test_feast_join_equals_an_independent_asof_join(con, view):
    key = ENTITY_BY_NAME[next(v.entity for v in VIEWS if v.name == view)].join_key
    feats = [f.name for f in view_features(view)]
    same = " AND ".join(f"ds.{f} IS NOT DISTINCT FROM a.{f}" for f in feats)
    mismatches, matched = con.execute(f"""
        WITH a AS (SELECT ds.request_id, {', '.join(f'v.{f}' for f in feats)},
                          v.event_timestamp AS snapshot_ts
                   FROM ds ASOF LEFT JOIN {view} v
                   ON ds.{key} = v.{key} AND ds.event_timestamp >= v.event_timestamp)
        SELECT count(*) FILTER (WHERE NOT ({same})), count(a.snapshot_ts)
        FROM ds JOIN a USING (request_id)""").fetchone()
    assert mismatches == 0
    assert matched > 0


@pytest.mark.parametrize("view,column", [("user_agg", "user_impressions_7d"),
                                         ("item_agg", "item_impressions_7d"),
                                         ("user_text", "query_entity_seq")])
def test_a_naive_latest_value_join_would_differ(con, view, column):
    """The check above has teeth: joining each entity's latest row (ignoring time) gives other
    values on many rows, so a leaking join could not pass it."""
    key = ENTITY_BY_NAME[next(v.entity for v in VIEWS if v.name == view)].join_key
    differ, total = con.execute(f"""
        WITH latest AS (SELECT * FROM {view} QUALIFY row_number() OVER
                        (PARTITION BY {key} ORDER BY event_timestamp DESC) = 1)
        SELECT count(*) FILTER (WHERE ds.{column} IS DISTINCT FROM latest.{column}), count(*)
        FROM ds LEFT JOIN latest USING ({key})""").fetchone()
    assert differ > 0.05 * total


def test_aggregates_only_count_earlier_days(con):
    """user_clicks_7d_s* / user_impressions_7d equal the raw log's counts over the 7 days before
    the row's day: no label of the row's own day or later leaks in."""
    clicks = ", ".join(f"coalesce(sum(r.label) FILTER (WHERE r.scenario = {s.code}), 0) "
                       f"AS c{s.code}" for s in SCENARIOS)
    same = " AND ".join(f"coalesce(ds.user_clicks_7d_s{s.code}, 0) = t.c{s.code}"
                        for s in SCENARIOS)
    bad, busy = con.execute(f"""
        WITH rd AS (SELECT r.*, d.day AS rday FROM raw r JOIN ds d USING (request_id)),
             t AS (SELECT ds.request_id, {clicks}, count(r.request_id) AS imp
                   FROM ds LEFT JOIN rd r ON r.user_id = ds.user_id
                        AND r.rday BETWEEN ds.day - 7 AND ds.day - 1
                   GROUP BY ds.request_id)
        SELECT count(*) FILTER (WHERE NOT ({same} AND coalesce(ds.user_impressions_7d, 0) =
                                           t.imp)),
               count(*) FILTER (WHERE t.imp > 0)
        FROM ds JOIN t USING (request_id)""").fetchone()
    assert bad == 0
    assert busy > 0


def test_split_is_chronological(tiny, con):
    """Generated data has every day: the last is test, the one before validation."""
    info = json.loads((tiny["dataset"] / "meta.json").read_text())
    last = con.execute("SELECT max(day) FROM ds").fetchone()[0]
    days = {"train": set(range(last - 1)), "val": {last - 1}, "test": {last}}
    for split in ("train", "val", "test"):
        got = {d for (d,) in con.execute(
            f"SELECT DISTINCT day FROM ds WHERE filename LIKE '%/{split}/%'").fetchall()}
        assert got == days[split]
        n = con.execute(f"SELECT count(*) FROM ds WHERE filename LIKE '%/{split}/%'").fetchone()
        assert info["splits"][split]["rows"] == n[0]


def test_cold_start_flags_follow_their_definition(tiny, con):
    df = con.execute("SELECT * FROM ds").df()
    n_train_days = int(df["day"].max()) - 1
    train = df[df["day"] < n_train_days]
    for who, key in (("user", "user_id"), ("item", "item_id")):
        counts = df[key].map(train[key].value_counts()).fillna(0)
        assert (df[f"zero_shot_{who}"] == (counts == 0)).all()
        assert (df[f"few_shot_{who}"] == counts.between(1, FEW_SHOT_MAX)).all()
    assert not train["zero_shot_user"].any()
    later = df[df["day"] >= n_train_days]
    for flag in COLD_START_FLAGS:
        assert later[flag].any(), flag
