"""Which dataset columns feed a model and how: the `Layout` (embedding tables, dense and vector
columns, derived from a dataset's schema and sizes) and each column's `InputColumn` transform,
the one place training, evaluation and serving turn a column into model inputs."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data import vectors as vector_columns
from recsys.dataset.hashing import hash_rows
from recsys.dataset.meta import DatasetMeta
from recsys.errors import DataError, UsageError
from recsys.schema import HISTORY_ITEMS, HISTORY_POOLINGS, HISTORY_SCENARIOS, HISTORY_VIEW, \
    ITEM_ID, MODALITIES, NO_HISTORY, SCENARIO, USER_ID, Schema, history_column

ID_FEATURES = (USER_ID, ITEM_ID)
# the history's lists a model reads, each looked up in the table of the feature it holds values
# of: one table, two features (the candidate's and the history's), never a copy
HISTORY_TABLES = ((HISTORY_ITEMS, ITEM_ID), (HISTORY_SCENARIOS, SCENARIO))
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
    columns: pa.Schema | None = field(default=None, compare=False)
    # per sparse feature: the values a row holds (1; a multi-valued one's max_values, pooled
    # by their mean) and its owner (user / item / context / scenario)
    widths: tuple[int, ...] = ()
    owners: tuple[str, ...] = ()
    # per dense feature: the (mean, std) it is standardized with, or None; and its owner
    scales: tuple[tuple[float, float] | None, ...] = ()
    dense_owners: tuple[str, ...] = ()
    # the user's history (`--history`): its last `history_length` clicks, pooled by
    # `history_pooling` (HISTORY_POOLINGS) into one more slot; 0 / "": not read
    history_length: int = 0
    history_pooling: str = ""

    @classmethod
    def from_meta(cls, meta: DatasetMeta, modalities: tuple[str, ...] = (),
                  hashed_rows: dict[str, int] | None = None, history: str = "") -> "Layout":
        """`meta`: a dataset's, whose schema and feature service say its columns.
        `hashed_rows`: ID feature -> table rows its raw IDs are hashed into (any size of ID
        space then fits the table; see dataset.hashing). `history`: how the user's history
        is pooled ("": not read)."""
        hashed_rows = hashed_rows or {}
        schema = meta.schema
        columns = schema.dataset_schema(meta.feature_service)
        ids = {USER_ID: meta.n_users, ITEM_ID: meta.n_items, **hashed_rows}
        features = [f for f in schema.features if f.name in columns.names]
        sparse = [f for f in features if f.kind in ("id", "categorical")]
        # one column each first, then the bags of several values (kjt relies on it)
        sparse.sort(key=lambda f: f.multi_valued and f.max_values > 1)
        dense = [f for f in features if f.kind == "numeric"]
        for name, rows in hashed_rows.items():
            if name not in ID_FEATURES or rows < 1:
                raise UsageError(f"hashed table {name}={rows}: only {', '.join(ID_FEATURES)} "
                                 f"can be hashed, into at least one row")
        check_history(history)
        history = "" if history == NO_HISTORY else history
        if history and not has_history(meta):
            raise DataError(f"the dataset has no user history (the {HISTORY_VIEW.name} view; "
                            f"--history): rebuild it with a feature service that reads the "
                            f"view (`recsys build-dataset --feature-service "
                            f"{schema.default_service} --force`), or train without --history",
                            fields="history")
        return cls(sparse=tuple(f.name for f in sparse),
                   num_embeddings=tuple((ids.get(f.name) or f.cardinality) + 1 for f in sparse),
                   dense=tuple(f.name for f in dense), scenarios=schema.scenario_names,
                   modalities=tuple(modalities),
                   vectors=tuple(_vector_groups(meta, schema, modalities)),
                   hashed=tuple(n for n in ID_FEATURES if n in hashed_rows), columns=columns,
                   widths=tuple(f.max_values if f.multi_valued else 1 for f in sparse),
                   owners=tuple(f.owner for f in sparse),
                   scales=tuple(f.scale for f in dense),
                   dense_owners=tuple(f.owner for f in dense),
                   history_length=schema.history_length if history else 0,
                   history_pooling=history)

    def content(self, owner: str) -> tuple[str, ...]:
        """The sparse features describing a user / item besides its ID (its profile)."""
        return tuple(n for n, o in zip(self.sparse, self.owners)
                     if o == owner and n not in ID_FEATURES)

    @property
    def id_columns(self) -> int:
        """Columns of a batch's ID matrix: one per single-valued feature, then each
        multi-valued feature's `widths` (padded with -1), then the history's positions."""
        return (sum(self.widths) if self.widths else len(self.sparse)) + \
            len(self.history_keys)

    @functools.cached_property  # read on every batch: worked out once
    def history_tables(self) -> tuple[tuple[str, str], ...]:
        """(history column, the feature whose table it is looked up in) of the history read."""
        if not self.history_length:
            return ()
        # and each item feature the clicks carry (the schema's history_item_features)
        carried = tuple((history_column(f), f) for f in self.sparse
                        if history_column(f) in self.columns.names)
        return tuple((c, f) for c, f in HISTORY_TABLES + carried if f in self.sparse)

    @functools.cached_property
    def history_keys(self) -> tuple[str, ...]:
        """The KJT features of the history: one per list and position ("history_item_ids_0"),
        at most one value a row (none past the user's last click)."""
        return tuple(f"{c}_{i}" for c, _ in self.history_tables for i in range(self.history_length))

    @property
    def kjt_keys(self) -> tuple[str, ...]:
        """A batch's KJT features: the sparse features, then the history's."""
        return self.sparse + self.history_keys

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
        for name, table in self.history_tables:
            out.append(InputColumn(name, "ids", at, self.history_length,
                                   size=self.num_embeddings[self.sparse.index(table)],
                                   hashed=table in self.hashed, history=True))
            at += self.history_length
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


def check_history(history: str) -> None:
    if history and history not in (*HISTORY_POOLINGS, NO_HISTORY):
        raise UsageError(f"history {history!r}: choose one of "
                         f"{', '.join((*HISTORY_POOLINGS, NO_HISTORY))}", fields="history")


def has_history(meta: DatasetMeta) -> bool:
    """The dataset's rows carry the user's history (its feature service reads the view)."""
    return HISTORY_ITEMS in meta.schema.dataset_schema(meta.feature_service).names


def _vector_groups(meta: DatasetMeta, schema: Schema,
                   modalities: tuple[str, ...]) -> list[VectorGroup]:
    """The vector groups of the asked modalities, with sizes the dataset recorded."""
    check_modalities(modalities)
    dims = meta.vector_dims
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
    history: bool = False  # ids: a history list, whose missing values stay missing (-1)
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
            return bag_matrix(column, self.width, unknown, empty=not self.history,
                              hashed=self.hashed)
        col = _filled(column, -1).astype(np.int64)
        if self.hashed:
            return np.where(col >= 0, hash_rows(col, unknown), unknown)[:, None]
        # unknown values share one row, never trained on real data: a defined cold path
        return np.where((col >= 0) & (col < unknown), col, unknown)[:, None]


def _filled(column: pa.ChunkedArray | pa.Array, value) -> np.ndarray:
    """A column as numpy, nulls replaced by `value` (pyarrow's fill_null only where there are
    nulls: on the columns without, it cost as much as the rest of the conversion)."""
    return (column.fill_null(value) if column.null_count else column).to_numpy()


def bag_matrix(column: pa.ChunkedArray, width: int, unknown: int, empty: bool = True,
               hashed: bool = False) -> np.ndarray:
    """A list<int64> column -> (N, width) codes, -1 after a row's values; values beyond the
    table give the unknown row (`hashed`: raw IDs hashed into it), and so does a row with none
    (null, empty) when `empty` (a bag), where a history stays empty."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    out = np.full((n, width), -1, dtype=np.int64)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column).fill_null(-1).to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = pos < width
    values = values[keep]
    known = hash_rows(values, unknown) if hashed else values
    out[row[keep], pos[keep]] = np.where((values >= 0) & (hashed | (values < unknown)), known,
                                         unknown)
    if empty:
        out[lengths == 0, 0] = unknown
    return out
