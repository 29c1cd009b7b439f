"""Parquet training sets -> model inputs: a split's rows as numpy arrays (`SplitData`) and
`Batch`es of them.

A split is read once with pyarrow into column-major numpy arrays; a batch is a slice (or a
shuffled gather) of them, turned into tensors without per-row Python. A background thread
prepares the next batches while the model trains on the current one.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch

from recsys.data.offline import check_parquet_files
from recsys.dataset.batch import Batch, kjt
from recsys.dataset.layout import Layout
from recsys.errors import DataError
from recsys.schema import COLD_START_FLAGS, EVENT_TIMESTAMP, LABEL, P_TRUE, SCENARIO


@dataclass
class SplitData:
    """A whole split as numpy arrays (the model's inputs plus what evaluation needs)."""

    ids: np.ndarray  # (N, F) int64
    dense: np.ndarray  # (N, D) float32
    vectors: np.ndarray  # (N, V) float32 (V = 0 without text / image)
    labels: np.ndarray  # (N,) float32
    scenario: np.ndarray  # (N,) int64
    p_true: np.ndarray  # (N,) float32
    flags: dict[str, np.ndarray]
    time: np.ndarray  # (N,) int64 event time (µs): the order of a user's or item's history

    def __len__(self) -> int:
        return self.labels.shape[0]

    def take(self, rows: np.ndarray) -> "SplitData":
        return self._each(lambda v: v[rows])

    def rows(self, start: int, stop: int) -> "SplitData":
        """Rows [start, stop), as views (no copy)."""
        return self._each(lambda v: v[start:stop])

    def _each(self, pick) -> "SplitData":
        return SplitData(**{f.name: ({k: pick(v) for k, v in value.items()}
                                     if isinstance(value := getattr(self, f.name), dict)
                                     else pick(value)) for f in fields(self)})

    @staticmethod
    def concat(parts: list["SplitData"]) -> "SplitData":
        first = parts[0]
        return SplitData(**{f.name: ({k: np.concatenate([p.flags[k] for p in parts])
                                      for k in first.flags} if f.name == "flags" else
                                     np.concatenate([getattr(p, f.name) for p in parts]))
                            for f in fields(first)})


def needed_columns(layout: Layout, for_metrics: bool = True) -> pa.Schema:
    """The dataset columns a split is read with: the model's inputs, the label and the
    scenario, and (`for_metrics`) what evaluation needs besides."""
    columns = (*layout.sparse, *(c for c, _ in layout.history_tables), *layout.dense,
               *layout.vector_columns, LABEL, SCENARIO,
               *((P_TRUE, EVENT_TIMESTAMP, *COLD_START_FLAGS) if for_metrics else ()))
    return pa.schema([f for f in layout.columns if f.name in columns])


def load_split(dataset: Path, split: str, layout: Layout) -> SplitData:
    """A whole split in memory (the cold-start models' training data; everything else
    streams it: dataset.stream)."""
    folder = dataset / split
    files = sorted(folder.glob("*.parquet"))
    # every part, not just the first: a dataset scan fills a part's missing column with nulls
    needed = needed_columns(layout)
    check_parquet_files(files, needed, folder,
                        "rebuild with `recsys build-dataset --force`", check_types=False)
    table = pads.dataset([str(f) for f in files], format="parquet").to_table(
        columns=needed.names)
    if table.num_rows == 0:
        raise DataError(f"{folder}: the {split} split is empty; rebuild it with more data")
    check_labels(table[LABEL], folder)
    return to_split_data(table, layout, folder)


def check_labels(labels: pa.ChunkedArray | pa.Array, folder: Path) -> None:
    if pc.any(pc.is_null(labels, nan_is_null=True)).as_py() or \
            not pc.all(pc.is_in(labels, pa.array([0, 1], labels.type))).as_py():
        raise DataError(f"{folder}: column '{LABEL}' must be 0 or 1 on every row (found null, "
                        f"NaN or other values); fix the data or rebuild the dataset")


def to_split_data(table: pa.Table, layout: Layout, folder: Path) -> SplitData:
    """Arrow rows -> the model's arrays: IDs mapped to table rows (unknown and out-of-range
    values to the unknown row; hashed features hashed), counts as log1p, standardized
    numbers, vectors concatenated (see InputColumn)."""
    n = table.num_rows
    out = {"ids": np.empty((n, layout.id_columns), dtype=np.int64),
           "dense": np.empty((n, len(layout.dense)), dtype=np.float32),
           "vectors": np.empty((n, sum(g.width for g in layout.vectors)), dtype=np.float32)}
    for column in layout.inputs:
        out[column.matrix][:, column.start:column.start + column.width] = \
            column.transform(table[column.name], folder)
    ids, dense, vectors = out["ids"], out["dense"], out["vectors"]
    if P_TRUE in table.column_names:
        return metric_columns(table, ids, dense, vectors)
    # a training stream reads no metric columns: zeros, no flags
    return SplitData(ids=ids, dense=dense, vectors=vectors,
                     labels=table[LABEL].to_numpy().astype(np.float32),
                     scenario=table[SCENARIO].to_numpy().astype(np.int64),
                     p_true=np.zeros(n, np.float32), flags={}, time=np.zeros(n, np.int64))


def metric_columns(table: pa.Table, ids: np.ndarray, dense: np.ndarray,
                   vectors: np.ndarray) -> SplitData:
    """The rows of `table` with the given model inputs and what the metrics need (labels,
    scenario, p_true, flags, time)."""
    return SplitData(ids=ids, dense=dense, vectors=vectors,
                     labels=table[LABEL].to_numpy().astype(np.float32),
                     scenario=table[SCENARIO].to_numpy().astype(np.int64),
                     p_true=table[P_TRUE].to_numpy().astype(np.float32),
                     flags={f: table[f].to_numpy(zero_copy_only=False).astype(bool)
                            for f in COLD_START_FLAGS},
                     time=table[EVENT_TIMESTAMP].cast(pa.int64()).to_numpy())


def distinct_values(dataset: Path, split: str, name: str) -> np.ndarray:
    """The distinct non-null values of one column of a split as stored (raw IDs before any
    mapping to rows), by DuckDB: as many as there are entities, not rows."""
    import duckdb

    con = duckdb.connect()
    values = con.execute(f"SELECT DISTINCT {name} FROM "
                         f"read_parquet('{dataset / split}/*.parquet') "
                         f"WHERE {name} IS NOT NULL").fetchnumpy()[name]
    con.close()
    return np.asarray(values, dtype=np.int64)


def rows_batch(data: SplitData, layout: Layout, rows: np.ndarray | slice,
               one_history: bool = False) -> Batch:
    """One batch of the given rows of a split (`one_history`: the rows are one request's,
    sharing row 0's history; see Batch)."""
    ids = torch.from_numpy(data.ids[rows])
    history = len(layout.history_keys)
    return Batch(kjt(layout.kjt_keys, ids, layout.widths, history, one_history), ids,
                 torch.from_numpy(data.dense[rows]), torch.from_numpy(data.labels[rows]),
                 torch.from_numpy(data.scenario[rows]), torch.from_numpy(data.vectors[rows]),
                 layout.widths, history, one_history)


class BatchLoader:
    """Iterates a split in batches; shuffled per epoch from (seed, epoch); prefetches in a
    background thread.

    In a job of `world` processes, rank r takes every world-th row of the epoch's shuffle
    (the remainder of len / world is left out), so all ranks run the same number of equal
    batches, as sharded lookups need; together they cover the split once."""

    def __init__(self, data: SplitData, layout: Layout, batch_size: int, shuffle: bool = False,
                 seed: int = 0, prefetch: int = 4, rank: int = 0, world: int = 1):
        if world > 1 and not shuffle:
            raise ValueError("a loader shared by several ranks must shuffle")
        self.data, self.layout = data, layout
        self.batch_size, self.shuffle, self.seed, self.prefetch = batch_size, shuffle, seed, \
            prefetch
        self.rank, self.world = rank, world
        self.epoch = 0

    @property
    def rows(self) -> int:
        """Rows this rank iterates per epoch."""
        return len(self.data) // self.world

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def batch(self, rows: np.ndarray | slice) -> Batch:
        return rows_batch(self.data, self.layout, rows)

    def _row_sets(self) -> Iterator[np.ndarray | slice]:
        n, b = len(self.data), self.batch_size
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            if self.world > 1:
                order = order[:n - n % self.world][self.rank::self.world]
            return (np.sort(order[i:i + b]) for i in range(0, len(order), b))
        return (slice(i, min(i + b, n)) for i in range(0, n, b))

    def __iter__(self) -> Iterator[Batch]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        done = object()

        def produce():
            for rows in self._row_sets():
                q.put(self.batch(rows))
            q.put(done)

        threading.Thread(target=produce, daemon=True).start()
        while (item := q.get()) is not done:
            yield item
        self.epoch += 1
