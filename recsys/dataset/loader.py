"""Parquet training sets -> `Batch` (TorchRec KeyedJaggedTensor + dense tensor + vectors +
labels).

A split is read once with pyarrow into column-major numpy arrays; a batch is a slice (or a
shuffled gather) of them, turned into tensors without per-row Python. A background thread
prepares the next batches while the model trains on the current one.
"""

from __future__ import annotations

import functools
import queue
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data import vectors as vector_columns
from recsys.data.store import check_parquet_files
from recsys.dataset.build import META
from recsys.dataset.hashing import hash_rows
from recsys.errors import DataError, UsageError
from recsys.schema import ANTM2C, COLD_START_FLAGS, EVENT_TIMESTAMP, LABEL, MODALITIES, P_TRUE, \
    Schema
from recsys.storage import read_json

ID_FEATURES = ("user_id", "item_id")
# Dense features whose values are counts: fed as log1p(count).
_COUNT_DTYPES = ("int32", "int64")


@dataclass(frozen=True)
class VectorGroup:
    """The vector features of one view (e.g. a user's three text vectors): the model projects
    their concatenation into one extra embedding slot of its owner (user / item)."""

    view: str
    owner: str  # the entity's join key: user_id / item_id
    columns: tuple[str, ...]
    dims: tuple[int, ...]

    @property
    def width(self) -> int:
        return sum(self.dims)


@dataclass(frozen=True)
class Layout:
    """Which columns feed the model, derived from the dataset's schema and sizes."""

    sparse: tuple[str, ...]  # one embedding table each; the multi-valued ones last
    num_embeddings: tuple[int, ...]  # the feature's values 0..n-1, then one unknown row
    dense: tuple[str, ...]
    scenarios: tuple[str, ...]  # the scenarios' names, by code: one tower (or net) each
    modalities: tuple[str, ...] = ()  # text / image: vectors beside the IDs
    vectors: tuple[VectorGroup, ...] = ()
    hashed: tuple[str, ...] = ()  # ID features whose raw values are hashed into their table
    # the dataset's columns (Arrow types), of the repo schema's feature service it was built with
    columns: pa.Schema = field(default_factory=ANTM2C.dataset_schema, compare=False)
    # per sparse feature: the values a row holds (1; a multi-valued one's max_values, pooled
    # by their mean) and its owner (user / item / context / scenario)
    widths: tuple[int, ...] = ()
    owners: tuple[str, ...] = ()
    # per dense feature: the (mean, std) it is standardized with, or None; and its owner
    scales: tuple[tuple[float, float] | None, ...] = ()
    dense_owners: tuple[str, ...] = ()

    @classmethod
    def from_meta(cls, meta: dict, modalities: tuple[str, ...] = (),
                  hashed_rows: dict[str, int] | None = None) -> "Layout":
        """`meta`: a dataset's meta.json, whose schema and feature service say its columns.
        `hashed_rows`: ID feature -> table rows its raw IDs are hashed into (any size of ID
        space then fits the table; see dataset.hashing)."""
        hashed_rows = hashed_rows or {}
        schema = dataset_facts(meta)
        columns = schema.dataset_schema(meta.get("feature_service"))
        ids = {"user_id": meta["n_users"], "item_id": meta["n_items"], **hashed_rows}
        features = [f for f in schema.features if f.name in columns.names]
        sparse = [f for f in features if f.kind in ("id", "categorical")]
        # one column each first, then the bags of several values (kjt relies on it)
        sparse.sort(key=lambda f: f.multi_valued and f.max_values > 1)
        dense = [f for f in features if f.kind == "numeric"]
        for name, rows in hashed_rows.items():
            if name not in ID_FEATURES or rows < 1:
                raise UsageError(f"hashed table {name}={rows}: only {', '.join(ID_FEATURES)} "
                                 f"can be hashed, into at least one row")
        return cls(sparse=tuple(f.name for f in sparse),
                   num_embeddings=tuple((ids.get(f.name) or f.cardinality) + 1 for f in sparse),
                   dense=tuple(f.name for f in dense), scenarios=schema.scenario_names,
                   modalities=tuple(modalities),
                   vectors=tuple(_vector_groups(meta, schema, modalities)),
                   hashed=tuple(n for n in ID_FEATURES if n in hashed_rows), columns=columns,
                   widths=tuple(f.max_values if f.multi_valued else 1 for f in sparse),
                   owners=tuple(f.owner for f in sparse),
                   scales=tuple(f.scale for f in dense),
                   dense_owners=tuple(f.owner for f in dense))

    def content(self, owner: str) -> tuple[str, ...]:
        """The sparse features describing a user / item besides its ID (its profile)."""
        return tuple(n for n, o in zip(self.sparse, self.owners)
                     if o == owner and n not in ID_FEATURES)

    @property
    def id_columns(self) -> int:
        """Columns of a batch's ID matrix: one per single-valued feature, then each
        multi-valued feature's `widths` (padded with -1)."""
        return sum(self.widths) if self.widths else len(self.sparse)

    def slot(self, name: str) -> int:
        """Slot of a sparse feature, or of a vector group (by its view), in the model's
        (B, slots, D) embeddings: the sparse features first, then the vector groups."""
        views = [g.view for g in self.vectors]
        return views.index(name) + len(self.sparse) if name in views else self.sparse.index(name)

    @property
    def vector_columns(self) -> tuple[str, ...]:
        return tuple(c for g in self.vectors for c in g.columns)

    def unknown_row(self, name: str) -> int:
        """The row every null, negative or out-of-range value of `name` maps to."""
        return self.num_embeddings[self.slot(name)] - 1

    @functools.cached_property
    def inputs(self) -> tuple["InputColumn", ...]:
        """Every column the model reads, with where it lands and how it is transformed."""
        out, at = [], 0
        for name, size, width in zip(self.sparse, self.num_embeddings,
                                     self.widths or (1,) * len(self.sparse)):
            out.append(InputColumn(name, "ids", at, width, size=size,
                                   hashed=name in self.hashed))
            at += width
        for j, (name, scale) in enumerate(zip(self.dense,
                                              self.scales or (None,) * len(self.dense))):
            counts = str(self.columns.field(name).type) in _COUNT_DTYPES
            out.append(InputColumn(name, "dense", j, 1, counts=counts, scale=scale))
        at = 0
        for group in self.vectors:
            for name, dim in zip(group.columns, group.dims):
                out.append(InputColumn(name, "vectors", at, dim))
                at += dim
        return tuple(out)


def check_modalities(modalities: tuple[str, ...]) -> None:
    for modality in modalities:
        if modality not in MODALITIES:
            raise UsageError(f"unknown modality '{modality}': choose from "
                             f"{', '.join(MODALITIES)}")


def dataset_facts(meta: dict) -> Schema:
    """The schema a dataset was built with (its meta.json); datasets built before schemas
    were recorded hold the built-in AntM2C one."""
    return Schema.from_json(meta["schema"]) if "schema" in meta else ANTM2C


def _vector_groups(meta: dict, schema: Schema,
                   modalities: tuple[str, ...]) -> list[VectorGroup]:
    """The vector groups of the asked modalities, with sizes the dataset recorded."""
    check_modalities(modalities)
    dims = meta.get("vector_dims", {})
    groups = []
    for modality in modalities:
        views = schema.modality_views(modality)
        if not views:
            raise DataError(f"the dataset's schema has no {modality} vectors (--{modality}): "
                            f"train without --{modality}")
        for view in views:
            columns = tuple(f.name for f in schema.view_features(view))
            if not all(dims.get(c) for c in columns):
                how = ("run `recsys encode-text`, then `recsys build-dataset --force`"
                       if modality == "text" else
                       "generate or import item image vectors, then `recsys build-dataset "
                       "--force`")
                raise DataError(f"the dataset has no {modality} vectors ({view}): {how}")
            groups.append(VectorGroup(view, schema.join_key(view), columns,
                                      tuple(dims[c] for c in columns)))
    return groups


@dataclass
class Batch:
    """One mini-batch: sparse IDs as a KJT (one value per feature and row), dense features,
    vector features (text / image; zero columns without them), labels and the scenario of each
    row."""

    sparse: KeyedJaggedTensor
    # (B, Layout.id_columns) the same IDs as a matrix, for routing rows by scenario: column j
    # is sparse feature j for the single-valued ones (they come first)
    ids: torch.Tensor
    dense: torch.Tensor  # (B, D) float32
    labels: torch.Tensor  # (B,) float32
    scenario: torch.Tensor  # (B,) int64
    vectors: torch.Tensor  # (B, V) float32: the Layout's vector groups, concatenated
    widths: tuple[int, ...] = ()  # Layout.widths

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device) -> "Batch":
        if device.type == "cpu":
            return self
        return Batch(self.sparse.to(device), *(getattr(self, f.name).to(device)
                                               for f in fields(self)[1:-1]), self.widths)

    def select(self, mask: torch.Tensor) -> "Batch":
        ids = self.ids[mask]
        return Batch(kjt(self.sparse.keys(), ids, self.widths), ids, self.dense[mask],
                     self.labels[mask], self.scenario[mask], self.vectors[mask], self.widths)


def kjt(keys: list[str] | tuple[str, ...], ids: torch.Tensor,
        widths: tuple[int, ...] = ()) -> KeyedJaggedTensor:
    """KJT from a (B, columns) ID matrix: one value per (feature, row) for the single-valued
    features; a multi-valued one's `widths[j]` columns give its values, -1 padding left out."""
    single = sum(1 for w in widths if w == 1) if widths else len(keys)
    values = [ids[:, :single].t().reshape(-1)]
    lengths = [torch.ones(ids.shape[0] * single, dtype=torch.int32)]
    at = single
    for width in widths[single:]:
        bag = ids[:, at:at + width]
        held = bag >= 0
        values.append(bag[held])  # row-major: each row's values in order
        lengths.append(held.sum(1, dtype=torch.int32))
        at += width
    if len(values) == 1:
        return KeyedJaggedTensor(keys=list(keys), values=values[0], lengths=lengths[0])
    return KeyedJaggedTensor(keys=list(keys), values=torch.cat(values),
                             lengths=torch.cat(lengths))


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


def read_meta(dataset: Path) -> dict:
    path = dataset / META
    if not path.is_file():
        raise DataError(f"no dataset at {dataset} (missing meta.json): run "
                        f"`recsys build-dataset` or pass --dataset")
    return read_json(path, "build the dataset again with `recsys build-dataset --force`")


def needed_columns(layout: Layout, for_metrics: bool = True) -> pa.Schema:
    """The dataset columns a split is read with: the model's inputs, the label and the
    scenario, and (`for_metrics`) what evaluation needs besides."""
    columns = (*layout.sparse, *layout.dense, *layout.vector_columns, LABEL, "scenario",
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
                     scenario=table["scenario"].to_numpy().astype(np.int64),
                     p_true=np.zeros(n, np.float32), flags={}, time=np.zeros(n, np.int64))


@dataclass(frozen=True)
class InputColumn:
    """Where a dataset column lands in the model's input matrices (`matrix`: ids, dense or
    vectors; columns start..start + width) and how its values are turned into inputs: the one
    place training, evaluation and serving transform a column."""

    name: str
    matrix: str
    start: int
    width: int
    size: int = 0  # ids: the table's rows, the last one the unknown row
    hashed: bool = False  # ids: raw IDs hashed into the table
    counts: bool = False  # dense: a count, fed as log1p
    scale: tuple[float, float] | None = None  # dense: (mean, std) it is standardized with

    def transform(self, column: pa.ChunkedArray | pa.Array, folder: Path) -> np.ndarray:
        """(N, width) inputs of the column's N values."""
        if self.matrix == "vectors":
            return vector_columns.to_numpy(column, self.width, f"{folder}: column "
                                                               f"'{self.name}'")
        if self.matrix == "dense":
            if self.scale is not None:  # standardized; a missing value is the mean
                col = column.to_numpy(zero_copy_only=False).astype(np.float32)
                return np.nan_to_num((col - self.scale[0]) / self.scale[1], nan=0.0)[:, None]
            col = _filled(column, 0).astype(np.float32)
            return (np.log1p(np.maximum(col, 0)) if self.counts else col)[:, None]
        unknown = self.size - 1
        if self.width > 1 or pa.types.is_list(column.type):
            return bag_matrix(column, self.width, unknown)
        col = _filled(column, -1).astype(np.int64)
        if self.hashed:
            return np.where(col >= 0, hash_rows(col, unknown), unknown)[:, None]
        # unknown values share one row, never trained on real data: a defined cold path
        return np.where((col >= 0) & (col < unknown), col, unknown)[:, None]


def _filled(column: pa.ChunkedArray | pa.Array, value) -> np.ndarray:
    """A column as numpy, nulls replaced by `value` (pyarrow's fill_null only where there are
    nulls: on the columns without, it cost as much as the rest of the conversion)."""
    return (column.fill_null(value) if column.null_count else column).to_numpy()


def bag_matrix(column: pa.ChunkedArray, width: int, unknown: int) -> np.ndarray:
    """A list<int64> column -> (N, width) codes, -1 after a row's values; values beyond the
    table and a row with none (null, empty) give the unknown row."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    out = np.full((n, width), -1, dtype=np.int64)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column).fill_null(-1).to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = pos < width
    values = values[keep]
    out[row[keep], pos[keep]] = np.where((values >= 0) & (values < unknown), values, unknown)
    out[lengths == 0, 0] = unknown
    return out


def metric_columns(table: pa.Table, ids: np.ndarray, dense: np.ndarray,
                   vectors: np.ndarray) -> SplitData:
    """The rows of `table` with the given model inputs and what the metrics need (labels,
    scenario, p_true, flags, time)."""
    return SplitData(ids=ids, dense=dense, vectors=vectors,
                     labels=table[LABEL].to_numpy().astype(np.float32),
                     scenario=table["scenario"].to_numpy().astype(np.int64),
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


def rows_batch(data: SplitData, layout: Layout, rows: np.ndarray | slice) -> Batch:
    """One batch of the given rows of a split."""
    ids = torch.from_numpy(data.ids[rows])
    return Batch(kjt(layout.sparse, ids, layout.widths), ids,
                 torch.from_numpy(data.dense[rows]), torch.from_numpy(data.labels[rows]),
                 torch.from_numpy(data.scenario[rows]), torch.from_numpy(data.vectors[rows]),
                 layout.widths)


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
