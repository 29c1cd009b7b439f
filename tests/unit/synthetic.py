"""A hand-made dataset in memory: a Layout of a few features and rows whose label the IDs
decide, so a model on it learns in a few steps. No files, no Feast, no processes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys.dataset.layout import Layout
from recsys.dataset.loader import SplitData
from recsys.schema import HISTORY_ITEMS, HISTORY_SCENARIOS, history_column

USERS, ITEMS, CONTEXT = 40, 30, 5
HISTORY = 4  # clicks a row's history holds


def layout(history: str = "") -> Layout:
    """`history`: its pooling; the rows then carry the user's last clicks."""
    columns = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()),
                         ("scenario", pa.int64()), ("user_gender", pa.int64()),
                         ("item_kind", pa.int64()), ("context_0", pa.int64()),
                         ("user_clicks", pa.int64()), ("price", pa.float32()),
                         (HISTORY_ITEMS, pa.list_(pa.int64())),
                         (HISTORY_SCENARIOS, pa.list_(pa.int64())),
                         (history_column("item_kind"), pa.list_(pa.int64()))])
    return Layout(history_length=HISTORY if history else 0, history_pooling=history,
                  sparse=("user_id", "item_id", "scenario", "user_gender", "item_kind",
                          "context_0"),
                  num_embeddings=(USERS + 1, ITEMS + 1, 3 + 1, 2 + 1, 4 + 1, CONTEXT + 1),
                  dense=("user_clicks", "price"), scenarios=("a", "b", "c"), columns=columns,
                  widths=(1, 1, 1, 1, 1, 1),
                  owners=("user", "item", "scenario", "user", "item", "context"),
                  scales=(None, (10.0, 5.0)), dense_owners=("user", "item"))


def split(rows: int = 512, seed: int = 0, history: bool = False,
          label_in_history: bool = False) -> SplitData:
    """Rows whose click depends on the user's and the item's parity and the scenario: there is
    something to learn. `history`: each row also holds 0..HISTORY clicked items and their
    scenarios (-1 past the last); `label_in_history`: a click is the candidate being among
    them, which only the history can tell."""
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, USERS, rows), rng.integers(0, ITEMS, rows)
    scenario = rng.integers(0, 3, rows)
    ids = np.stack([user, item, scenario, user % 2, item % 4, rng.integers(0, CONTEXT, rows)],
                   axis=1).astype(np.int64)
    dense = np.stack([np.log1p(rng.integers(0, 20, rows)), rng.normal(0, 1, rows)],
                     axis=1).astype(np.float32)
    labels = ((user + item + scenario) % 2 == 0).astype(np.float32)
    if history:
        lengths = rng.integers(0, HISTORY + 1, rows)
        held = np.arange(HISTORY)[None, :] < lengths[:, None]
        clicked = np.where(held, rng.integers(0, ITEMS, (rows, HISTORY)), -1)
        if label_in_history:  # half the candidates from the history, where there is one
            pick = (rng.random(rows) < 0.5) & (lengths > 0)
            item = np.where(pick, clicked[np.arange(rows), rng.integers(0, 9, rows) %
                                          np.maximum(lengths, 1)], item)
            ids[:, 1], ids[:, 4] = item, item % 4
            labels = (clicked == item[:, None]).any(1).astype(np.float32)
        where = np.where(held, rng.integers(0, 3, (rows, HISTORY)), -1)
        ids = np.concatenate([ids, clicked, where, np.where(held, clicked % 4, -1)], axis=1)
    return SplitData(ids=ids, dense=dense, vectors=np.zeros((rows, 0), np.float32),
                     labels=labels, scenario=scenario.astype(np.int64),
                     p_true=np.zeros(rows, np.float32), flags={},
                     time=np.arange(rows, dtype=np.int64))


def one_request(data: SplitData, lay: Layout, rows: int = 64) -> SplitData:
    """`data` with its first `rows` rows made one served request's candidates: the user, the
    scenario, the context, their dense features and the history of the row with the longest
    history on every one of them (Batch.one_history's contract); the items stay each row's."""
    import dataclasses

    ids, dense, scenario = data.ids.copy(), data.dense.copy(), data.scenario.copy()
    start = ids.shape[1] - len(lay.history_keys)
    first = int((ids[:rows, start:] >= 0).sum(1).argmax()) if lay.history_keys else 0
    shared = [j for j, owner in enumerate(lay.owners) if owner != "item"] + \
        list(range(start, ids.shape[1]))
    ids[:rows, shared] = ids[first, shared]
    users = [j for j, owner in enumerate(lay.dense_owners) if owner != "item"]
    dense[:rows, users] = dense[first, users]
    scenario[:rows] = scenario[first]
    return dataclasses.replace(data, ids=ids, dense=dense, scenario=scenario)
