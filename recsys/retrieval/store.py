"""A retrieval run's item vectors in the repo's feature store: the `item_retrieval` view
(schema.RETRIEVAL_VIEW), offline (its Parquet table, replaced whole through a temporary name)
and online (Feast's write_to_online_store, where the registry has the view), so that any
consumer of the store can read an item's vector by its ID. The view holds the vectors of one
run, the one indexed last; the table names it in its Parquet metadata, and replacing another
run's vectors takes `force`."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.offline import offline_dir, read_schema
from recsys.errors import OutputExistsError
from recsys.schema import EVENT_TIMESTAMP, ITEM_ID, RETRIEVAL_VECTOR, RETRIEVAL_VIEW

RUN_KEY = b"recsys_run"  # the table's Parquet metadata: the run whose vectors it holds
CHUNK = 10_000  # items a write to the online store carries


def _table(repo: Path) -> Path:
    return offline_dir(repo) / RETRIEVAL_VIEW.name / "part-00000.parquet"


def holds(repo: Path) -> str | None:
    """The run whose vectors the repo's view holds, or None (empty, or no such view)."""
    path = _table(repo)
    if not path.is_file():
        return None
    meta = pq.read_schema(path).metadata or {}
    return meta[RUN_KEY].decode() if RUN_KEY in meta else None


def check_free(repo: Path, run: Path, force: bool) -> None:
    """Refuse, before any work, to replace another run's vectors without `force`."""
    held = holds(repo)
    if held is not None and held != str(run) and not force:
        raise OutputExistsError(f"{_table(repo)}: the feature store holds the item vectors of "
                                f"run {held}; pass force=True to replace them with {run}'s",
                                fields="force")


def publish(repo: Path, run: Path, index) -> str:
    """Write the index's vectors (row i: store ID i) as the repo's view; what was done."""
    schema = read_schema(repo)
    if RETRIEVAL_VIEW.name not in {v.name for v in schema.views}:
        return (f"not in the feature store: {repo}'s schema has no {RETRIEVAL_VIEW.name} view "
                f"(its data predates it; generate or import it again to get one)")
    n, now = index.ntotal, datetime.now(timezone.utc)
    columns = schema.tables()[RETRIEVAL_VIEW.name].with_metadata({RUN_KEY: str(run).encode()})
    path = _table(repo)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(tmp, columns) as writer:  # item batches: never every row in Python
        for lo in range(0, n, CHUNK):
            writer.write_table(pa.table(_rows(index, lo, min(lo + CHUNK, n), now), columns))
    tmp.replace(path)
    from recsys.features.feature_store import open_store

    store = open_store(repo)
    if RETRIEVAL_VIEW.name not in {v.name for v in store.list_feature_views()}:
        return (f"offline in {path}; not online: the registry has no {RETRIEVAL_VIEW.name} "
                f"view yet (`cd {repo} && feast apply`, then `recsys index` again)")
    for lo in range(0, n, CHUNK):
        store.write_to_online_store(RETRIEVAL_VIEW.name, pa.table(
            _rows(index, lo, min(lo + CHUNK, n), now), columns).to_pandas())
    return f"offline in {path} and online ({n:,} items)"


def _rows(index, lo: int, hi: int, now: datetime) -> dict:
    vectors = index.reconstruct_n(lo, hi - lo).astype(np.float32)
    return {ITEM_ID: np.arange(lo, hi, dtype=np.int64), EVENT_TIMESTAMP: [now] * (hi - lo),
            RETRIEVAL_VECTOR: pa.FixedSizeListArray.from_arrays(vectors.ravel(),
                                                                vectors.shape[1]).cast(
                pa.list_(pa.float32()))}
