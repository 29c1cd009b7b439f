"""build-dataset (Feast point-in-time join + flags + Parquet) next to a raw DuckDB ASOF join of
the same tables written to Parquet: the price of going through the feature store."""

from __future__ import annotations

import duckdb

from conftest import RESULTS
from recsys.data.store import connect, offline_dir, read_meta
from recsys.dataset.build import build_dataset
from recsys.schema import ENTITY_BY_NAME, VIEWS, view_features


def test_build_dataset(benchmark, applied_repo, tmp_path):
    out = tmp_path / "ds"
    benchmark.group = "point-in-time join"
    benchmark.pedantic(lambda: build_dataset(applied_repo, out, force=True, progress=False),
                       rounds=2, iterations=1)
    RESULTS["build-dataset (Feast)"] = benchmark.stats.stats.mean


def raw_asof_sql(target: str) -> str:
    joins, cols = [], []
    for v in VIEWS:
        key = ENTITY_BY_NAME[v.entity].join_key
        joins.append(f"ASOF LEFT JOIN {v.name} ON i.{key} = {v.name}.{key} "
                     f"AND i.event_timestamp >= {v.name}.event_timestamp")
        cols += [f"{v.name}.{f.name}" for f in view_features(v.name)]
    return (f"COPY (SELECT i.* EXCLUDE (day_index), {', '.join(cols)} FROM interactions i "
            f"{' '.join(joins)}) TO '{target}' (FORMAT parquet)")


def test_raw_duckdb_asof_join(benchmark, applied_repo, tmp_path):
    meta = read_meta(applied_repo)
    con: duckdb.DuckDBPyConnection = connect(offline_dir(applied_repo), meta["start_epoch"])
    sql = raw_asof_sql(str(tmp_path / "raw.parquet"))
    benchmark.group = "point-in-time join"
    benchmark.pedantic(lambda: con.execute(sql), rounds=2, iterations=1)
    rows = duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'raw.parquet'}'").fetchone()[0]
    assert rows == meta["n_rows"]
    RESULTS["raw DuckDB ASOF join"] = benchmark.stats.stats.mean
