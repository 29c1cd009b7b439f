"""Raw IDs -> table rows by hashing, for ID spaces larger than the table a user can afford
(`recsys train --user-rows N`): any non-negative int64 ID lands on one of N rows, so an ID far
beyond the table still gets its own (possibly shared) embedding instead of the unknown row.

The hash is splitmix64's finalizer: consecutive IDs spread uniformly, so the share of IDs that
share a row with another is close to the birthday bound 1 - (1 - 1/N)^(n - 1) for n IDs;
`collisions` measures it on the data."""

from __future__ import annotations

import numpy as np


def hash_rows(ids: np.ndarray, rows: int) -> np.ndarray:
    """Row in [0, rows) of each ID (int64 in, int64 out)."""
    x = ids.astype(np.uint64)
    with np.errstate(over="ignore"):  # multiplication modulo 2^64 is the point
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x % np.uint64(rows)).astype(np.int64)


def collisions(ids: np.ndarray, rows: int) -> dict:
    """How hashing the distinct non-negative `ids` into `rows` rows went: the share of IDs
    sharing their row with another ID, measured and as expected from uniform hashing."""
    distinct = np.unique(ids[ids >= 0])
    _, counts = np.unique(hash_rows(distinct, rows), return_counts=True)
    n = distinct.size
    return {"rows": rows, "distinct_ids": int(n),
            "colliding_share": float(counts[counts > 1].sum() / max(n, 1)),
            "expected_share": float(1 - (1 - 1 / rows) ** max(n - 1, 0))}
