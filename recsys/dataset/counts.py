"""Training interactions per ID row, the cold-start models' test of "seen": streamed over the
training split's row groups, so memory is the tables' length, not the split's rows."""

from __future__ import annotations

import numpy as np

from recsys.dataset.layout import Layout
from recsys.dataset.stream import SplitFiles, StreamLoader


def training_counts(files: SplitFiles, layout: Layout, names: tuple[str, ...],
                    batch_size: int = 65_536) -> dict[str, np.ndarray]:
    """For each ID feature in `names`: rows of the split per table row (unknown row last)."""
    slots = {name: layout.slot(name) for name in names}
    counts = {name: np.zeros(layout.num_embeddings[slot], dtype=np.int64)
              for name, slot in slots.items()}
    for batch in StreamLoader(files, layout, batch_size):
        ids = batch.ids.numpy()
        for name, slot in slots.items():
            counts[name] += np.bincount(ids[:, slot], minlength=len(counts[name]))
    return counts
