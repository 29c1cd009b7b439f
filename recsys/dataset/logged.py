"""`build-dataset --features logged`: a training set whose features are the ones the serving
model saw, read from the served log (data.serving_logs), instead of joined again point in time.

Its rows are the window's impressions that the served log holds (`recsys import served` made
them rows of the log, with their request ID, item and time); each takes the log's values of
every dataset column the serving model read (the user's online row, history included, the
item's and the scenario's cached rows). A column the model did not read is not in the log: it
is null. What differs from the joined build on the same rows is the train / serve skew: an
online row older or newer than the point in time, a click the history had online before the
log did.

The log's Arrow files are copied into Parquet under the build's spill folder (a file per run of
one layout), which DuckDB reads by name: memory follows a batch, not the log."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.serving_logs import SERVED_FIELDS, served_batches
from recsys.dataset.history_join import ROW
from recsys.errors import DataError
from recsys.schema import ITEM_ID, REQUEST_ID

SERVED = "served_rows"  # the DuckDB view of the staged log
SOURCES = ("joined", "logged")  # where a build's features come from


def stage(con, repo: Path, folder: Path) -> list[str]:
    """Copy the repo's served log into Parquet under `folder` and make it the view SERVED of
    `con`; the feature columns it holds (beyond the log's own fields)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer, files = None, 0
    for batch in served_batches(repo):
        if writer is None or not writer.schema.equals(batch.schema):
            if writer is not None:
                writer.close()
            writer = pq.ParquetWriter(str(folder / f"served-{files:05d}.parquet"), batch.schema)
            files += 1
        writer.write_batch(batch)
    if writer is None:
        raise DataError(f"{repo}: no served log (data/served/) to read the logged features "
                        f"from: serve the repo with `recsys serve`, or build with --features "
                        f"joined", fields="features")
    writer.close()
    con.execute(f"CREATE TEMP VIEW {SERVED} AS SELECT * FROM read_parquet("
                f"'{folder}/served-*.parquet', union_by_name = true)")
    names = [r[0] for r in con.execute(f"DESCRIBE {SERVED}").fetchall()]
    return [n for n in names if n not in SERVED_FIELDS.names]


def served_only(relation: str) -> str:
    """The rows of `relation` (interactions) that the served log holds."""
    return (f"SELECT * FROM {relation} i WHERE EXISTS (SELECT 1 FROM {SERVED} s WHERE "
            f"s.{REQUEST_ID} = i.{REQUEST_ID} AND s.{ITEM_ID} = i.{ITEM_ID})")


def joiner(con, logged: list[str], keys: list[str], dataset: pa.Schema, row_columns: list[str]):
    """entity rows (Arrow: ROW and `keys`) -> the same rows with the logged values of the
    dataset's columns that are not the row's own (`row_columns`: the interactions'); a column
    the log lacks is left out (the build writes it null)."""
    taken = [c for c in logged if c in dataset.names and c not in row_columns]
    select = ", ".join([f"e.{ROW}", *(f"e.{k}" for k in keys), *(f"s.{c}" for c in taken)])

    def join(entity: pa.Table) -> pa.Table:
        con.register("entity_rows", entity)
        try:
            return con.execute(f"SELECT {select} FROM entity_rows e JOIN {SERVED} s ON "
                               f"s.{REQUEST_ID} = e.{REQUEST_ID} AND s.{ITEM_ID} = e.{ITEM_ID}"
                               ).fetch_arrow_table()
        finally:
            con.unregister("entity_rows")

    return join
