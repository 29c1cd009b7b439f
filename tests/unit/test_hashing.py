"""Hashed IDs spread over a table's rows like a uniform hash."""

import numpy as np
import pytest

from recsys.dataset.hashing import collisions, hash_rows


def test_hash_spreads_ids_like_a_uniform_hash():
    ids = np.arange(200_000, dtype=np.int64) * 7919 + 10 ** 15
    rows = hash_rows(ids, 100_000)
    assert rows.min() >= 0 and rows.max() < 100_000
    assert np.array_equal(rows, hash_rows(ids, 100_000))  # a pure function
    stats = collisions(ids, 100_000)
    assert stats["colliding_share"] == pytest.approx(stats["expected_share"], abs=0.01)
