"""A hash-keyed store of sentence embeddings that survives reruns (and regenerated data): one
folder per model (named by the model's fingerprint), Parquet parts of (key, vector) where key is
the 16-byte BLAKE2b digest of the text. Each batch of new vectors lands as its own part, written
to a temporary name and renamed, so an interrupted run keeps what it encoded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import DataError
from recsys.files import replacing

KEY = "key"
VECTOR = "vector"


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def text_keys(texts: list[str]) -> np.ndarray:
    """(N,) fixed 16-byte keys, sortable and searchable with numpy. (Python conversions of
    numpy's "S" type drop trailing zero bytes, so keys cross to Arrow as raw buffers.)"""
    return np.frombuffer(b"".join(text_key(t) for t in texts), dtype="S16")


def _keys_to_arrow(keys: np.ndarray) -> pa.Array:
    raw = np.ascontiguousarray(keys, dtype="S16").tobytes()
    return pa.Array.from_buffers(pa.binary(16), len(keys), [None, pa.py_buffer(raw)])


def _keys_from_arrow(array: pa.FixedSizeBinaryArray) -> np.ndarray:
    data = array.buffers()[1]
    return np.frombuffer(data, dtype="S16", count=len(array), offset=array.offset * 16).copy()


class TextCache:
    def __init__(self, folder: Path, dim: int):
        self.folder, self.dim = folder, dim
        parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        keys, vectors = [np.empty(0, dtype="S16")], [np.empty((0, dim), dtype=np.float32)]
        for part in parts:
            try:
                table = pq.read_table(part)
                k = _keys_from_arrow(table[KEY].combine_chunks())
                v = np.stack(table[VECTOR].to_numpy(zero_copy_only=False)).astype(np.float32)
            except Exception as e:  # a damaged part: say which, and how to recover
                raise DataError(f"{part}: unreadable text-cache part ({e}); delete it and "
                                f"run again (its texts are re-encoded)") from None
            if v.shape[1] != dim:
                raise DataError(f"{part}: vectors of size {v.shape[1]}, the model makes {dim}; "
                                f"delete {folder} and run again")
            keys.append(k)
            vectors.append(v)
        # batches not yet merged into the sorted arrays: merging is deferred to the next lookup,
        # so a run that adds thousands of batches sorts once, not once per batch
        self._keys, self._vectors = keys, vectors
        self.n_parts = len(parts)

    def _merge(self) -> None:
        if len(self._keys) == 1:
            return
        keys, vectors = np.concatenate(self._keys), np.concatenate(self._vectors)
        order = np.argsort(keys, kind="stable")
        self._keys, self._vectors = [keys[order]], [vectors[order]]

    @property
    def keys(self) -> np.ndarray:
        self._merge()
        return self._keys[0]

    @property
    def vectors(self) -> np.ndarray:
        self._merge()
        return self._vectors[0]

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in the cache, -1 where it is missing."""
        if len(self) == 0:
            return np.full(len(keys), -1)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, pos, -1)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Vectors of keys that are all present."""
        index = self.find(keys)
        assert (index >= 0).all(), "get() of keys missing from the cache"
        return self.vectors[index]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Persist a batch of new vectors as one part; the next lookup finds them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{self.n_parts:06d}-{os.getpid()}.parquet"
        flat = pa.array(vectors.astype(np.float32).ravel())
        table = pa.table({KEY: _keys_to_arrow(keys),
                          VECTOR: pa.FixedSizeListArray.from_arrays(flat, self.dim)})
        with replacing(path) as tmp:
            pq.write_table(table, tmp)
        self.n_parts += 1
        self._keys.append(keys)
        self._vectors.append(vectors.astype(np.float32))
