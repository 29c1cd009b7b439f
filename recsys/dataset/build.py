"""`recsys build-dataset`: point-in-time training sets from the feature repo.

Each day's impressions are the entity rows of one Feast `get_historical_features` call (the
DuckDB offline store does the point-in-time join), so memory stays bounded by a day. Rows are
then flagged zero-shot / few-shot and written to <out>/{train,val,test}/part-DDD.parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data import vectors
from recsys.data.store import connect, offline_dir, read_meta, validate_offline_store
from recsys.dataset.split import SPLITS, cold_start_flags_sql, split_of_day
from recsys.errors import DataError
from recsys.features.store import feature_service, open_store
from recsys.schema import COLD_START_FLAGS, DEFAULT_FEATURE_SERVICE, EVENT_TIMESTAMP, \
    REQUEST_ID, dataset_schema
from recsys.storage import atomic_dir, check_output_free

META = "meta.json"


def default_out(repo: Path, meta: dict | None = None) -> Path:
    return Path("datasets") / (meta or read_meta(repo))["preset"]


def build_dataset(repo: Path, out: Path | None = None, force: bool = False,
                  service_name: str = DEFAULT_FEATURE_SERVICE, progress: bool = True) -> dict:
    meta = read_meta(repo)  # checks the repo first
    offline = offline_dir(repo)
    validate_offline_store(offline)
    out = out or default_out(repo, meta)
    check_output_free(out, force)
    store = open_store(repo)
    service = feature_service(store, repo, service_name)
    schema = dataset_schema(service_name)
    n_days = meta["n_days"]

    con = connect(offline, meta["start_epoch"])
    con.execute(f"CREATE TEMP TABLE flags AS {cold_start_flags_sql('interactions', n_days)}")
    rows = {split: 0 for split in SPLITS}
    # size of each vector feature (0 until some row has one: text not encoded yet)
    vector_dims = {f.name: 0 for f in schema if pa.types.is_list(f.type)}
    with atomic_dir(out, force) as tmp:
        for day in tqdm(range(n_days), desc="point-in-time join", unit="day",
                        disable=not progress):
            entity_df = con.execute("SELECT * EXCLUDE (day_index) FROM interactions "
                                    f"WHERE day_index = {day}").df()
            if entity_df.empty:
                raise DataError(f"{offline}/interactions: day {day} has no rows; "
                                f"regenerate with `recsys generate --force`")
            joined = store.get_historical_features(entity_df=entity_df,
                                                   features=service).to_arrow()
            con.register("joined", joined)
            flagged = con.execute(f"""
                SELECT j.*, {', '.join(f'f.{flag}' for flag in COLD_START_FLAGS)}
                FROM joined j JOIN flags f USING ({REQUEST_ID})
                ORDER BY j.{EVENT_TIMESTAMP}, j.{REQUEST_ID}""").fetch_arrow_table()
            con.unregister("joined")
            split = split_of_day(day, n_days)
            (tmp / split).mkdir(exist_ok=True)
            pq.write_table(_conform(flagged, schema), tmp / split / f"part-{day:03d}.parquet")
            rows[split] += flagged.num_rows
            for name in vector_dims:
                vector_dims[name] = vector_dims[name] or vectors.dim_of(flagged[name])
        info = {"preset": meta["preset"], "seed": meta["seed"], "repo": str(repo.resolve()),
                "feature_service": service_name, "n_users": meta["n_users"],
                "n_items": meta["n_items"], "n_days": n_days,
                "splits": {s: {"rows": rows[s], "days": [d for d in range(n_days)
                                                         if split_of_day(d, n_days) == s]}
                           for s in SPLITS},
                "columns": schema.names, "vector_dims": vector_dims}
        (tmp / META).write_text(json.dumps(info, indent=2))
    con.close()
    return info


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast to the dataset schema (a feature absent for a whole day comes back from
    the join untyped)."""
    return pa.table([table[f.name].cast(f.type) for f in schema], schema=schema)
