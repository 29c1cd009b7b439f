"""Vector features between numpy and Arrow: a (N, d) float32 matrix <-> a `list<float32>`
column (the offline store's and Feast's Array(Float32) type), nulls where a row has no vector."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.errors import DataError

VECTOR_TYPE = pa.list_(pa.float32())


def to_arrow(matrix: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """(N, d) -> list<float32>; rows where `valid` is False become null."""
    n, d = matrix.shape
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).ravel())
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    return pa.ListArray.from_arrays(offsets, flat, mask=mask).cast(VECTOR_TYPE)


def to_numpy(column: pa.ChunkedArray | pa.Array, dim: int, where: str) -> np.ndarray:
    """list<float> column -> (N, dim) float32, null rows as zeros. Every non-null row must hold
    exactly `dim` values (`where` names the column in the error)."""
    column = pa.chunked_array([column]) if isinstance(column, pa.Array) else column
    out = np.zeros((len(column), dim), dtype=np.float32)
    if len(column) == 0:
        return out
    column = column.combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if (lengths[valid] != dim).any():
        bad = int(lengths[valid][lengths[valid] != dim][0])
        raise DataError(f"{where}: a vector has {bad} values, expected {dim}; re-encode "
                        f"(`recsys encode-text --force`) and rebuild the dataset")
    values = pc.list_flatten(column.filter(pa.array(valid))).to_numpy(zero_copy_only=False)
    out[valid] = values.astype(np.float32).reshape(-1, dim)
    return out


def dim_of(column: pa.ChunkedArray | pa.Array) -> int:
    """Length of the first non-null vector of a column; 0 when every row is null."""
    lengths = pc.drop_null(pc.list_value_length(column))
    return int(lengths[0].as_py()) if len(lengths) else 0
