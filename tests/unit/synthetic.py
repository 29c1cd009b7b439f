"""A hand-made dataset in memory: a Layout of a few features and rows whose label the IDs
decide, so a model on it learns in a few steps. No files, no Feast, no processes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys.dataset.layout import Layout
from recsys.dataset.loader import SplitData

USERS, ITEMS, CONTEXT = 40, 30, 5


def layout() -> Layout:
    columns = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()),
                         ("scenario", pa.int64()), ("user_gender", pa.int64()),
                         ("item_kind", pa.int64()), ("context_0", pa.int64()),
                         ("user_clicks", pa.int64()), ("price", pa.float32())])
    return Layout(sparse=("user_id", "item_id", "scenario", "user_gender", "item_kind",
                          "context_0"),
                  num_embeddings=(USERS + 1, ITEMS + 1, 3 + 1, 2 + 1, 4 + 1, CONTEXT + 1),
                  dense=("user_clicks", "price"), scenarios=("a", "b", "c"), columns=columns,
                  widths=(1, 1, 1, 1, 1, 1),
                  owners=("user", "item", "scenario", "user", "item", "context"),
                  scales=(None, (10.0, 5.0)), dense_owners=("user", "item"))


def split(rows: int = 512, seed: int = 0) -> SplitData:
    """Rows whose click depends on the user's and the item's parity and the scenario: there is
    something to learn."""
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, USERS, rows), rng.integers(0, ITEMS, rows)
    scenario = rng.integers(0, 3, rows)
    ids = np.stack([user, item, scenario, user % 2, item % 4, rng.integers(0, CONTEXT, rows)],
                   axis=1).astype(np.int64)
    dense = np.stack([np.log1p(rng.integers(0, 20, rows)), rng.normal(0, 1, rows)],
                     axis=1).astype(np.float32)
    labels = ((user + item + scenario) % 2 == 0).astype(np.float32)
    return SplitData(ids=ids, dense=dense, vectors=np.zeros((rows, 0), np.float32),
                     labels=labels, scenario=scenario.astype(np.int64),
                     p_true=np.zeros(rows, np.float32), flags={},
                     time=np.arange(rows, dtype=np.int64))
