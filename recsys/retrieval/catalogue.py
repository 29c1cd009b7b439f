"""The repo's items as a retrieval model's inputs: every item (store IDs 0..n-1), its latest
row of each item view the model reads, from the offline store, streamed in batches by DuckDB
under a memory budget (never the catalogue as Python objects)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from recsys.data.offline import connect, offline_dir, read_repo_meta
from recsys.dataset.layout import Layout
from recsys.dataset.loader import SplitData, to_split_data
from recsys.memory import GiB
from recsys.schema import EVENT_TIMESTAMP, ITEM_ID, LABEL, SCENARIO, Schema

CATALOGUE_MEMORY = 1 * GiB  # DuckDB's share; it spills beyond it
# items a model call encodes: its memory (every input of every row, the towers' activations)
# is what the encoding's peak grows with, so a small fixed batch keeps it flat in items
BATCH_ITEMS = 4_096


def item_batches(repo: Path, schema: Schema, layout: Layout,
                 batch_items: int = BATCH_ITEMS) -> Iterator[tuple[np.ndarray, SplitData]]:
    """(store IDs, their rows as model inputs) in ID order; each row holds the item's features
    as the offline store has them last, every other input empty (null)."""
    meta = read_repo_meta(repo)
    owner = {f.name: f for f in schema.features}
    wanted = [c.name for c in layout.inputs if c.name in owner and c.name != ITEM_ID
              and owner[c.name].owner == "item" and owner[c.name].view is not None]
    views: dict[str, list[str]] = {}
    for name in wanted:
        views.setdefault(owner[name].view, []).append(name)
    latest = "".join(
        f"""
        LEFT JOIN (SELECT {ITEM_ID}, {', '.join(names)} FROM {view}
                   QUALIFY row_number() OVER (PARTITION BY {ITEM_ID}
                                              ORDER BY {EVENT_TIMESTAMP} DESC) = 1) v{j}
               ON v{j}.{ITEM_ID} = items.{ITEM_ID}""" for j, (view, names) in enumerate(
            views.items()))
    columns = "".join(f", v{j}.{n}" for j, names in enumerate(views.values()) for n in names)
    spill = offline_dir(repo) / ".catalogue-spill"
    con = connect(offline_dir(repo), meta.start_epoch, memory_bytes=CATALOGUE_MEMORY,
                  spill=spill)
    try:
        reader = con.execute(f"""
            SELECT items.{ITEM_ID}{columns}
            FROM (SELECT range AS {ITEM_ID} FROM range({meta.n_items})) items{latest}
            ORDER BY items.{ITEM_ID}""").fetch_record_batch(batch_items)
        for part in reader:
            yield part.column(ITEM_ID).to_numpy(), _as_inputs(pa.Table.from_batches([part]),
                                                              layout, repo)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _as_inputs(table: pa.Table, layout: Layout, repo: Path) -> SplitData:
    """The items' columns with the layout's other inputs null (as an unknown user's)."""
    n = table.num_rows
    table = table.append_column(LABEL, pa.array(np.zeros(n, np.int8))).append_column(
        SCENARIO, pa.array(np.zeros(n, np.int64)))  # neither reaches the item tower
    for c in layout.inputs:
        if c.name not in table.column_names:
            table = table.append_column(c.name, pa.nulls(n, layout.columns.field(c.name).type))
    return to_split_data(table, layout, offline_dir(repo))
