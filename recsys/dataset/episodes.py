"""A split's rows grouped by user or item in time order: the histories that meta-learning
adapts on, the tasks (support rows, then query rows) it trains on, and the sampler that hands a
model an episode of tasks with every training batch.

The sampler, not the model, holds the training split and draws the tasks: draw n is a pure
function of (seed, n), and n is its whole state, checkpointed with the run, so a resumed run
draws the tasks an uninterrupted one would have."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.dataset.batch import Batch
from recsys.dataset.layout import Layout
from recsys.dataset.loader import rows_batch, SplitData
from recsys.errors import DataError
from recsys.schema import FEW_SHOT_MAX


class Histories:
    """Row indices of `data` grouped by the entity in sparse column `slot`, each group in
    time order."""

    def __init__(self, data: SplitData, slot: int):
        entity = data.ids[:, slot]
        self.rows = np.lexsort((data.time, entity))  # by entity, then by time
        sorted_entity = entity[self.rows]
        self.start = np.flatnonzero(np.r_[True, sorted_entity[1:] != sorted_entity[:-1]]) \
            if len(entity) else np.zeros(0, dtype=np.int64)  # no rows: no entity
        self.count = np.diff(np.r_[self.start, len(self.rows)])
        self.entity = sorted_entity[self.start]

    def of(self, entities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first (up to) k rows of each entity: (rows (E, k), mask (E, k)); entities
        without history get an all-False mask."""
        pos = np.clip(np.searchsorted(self.entity, entities), 0, len(self.entity) - 1)
        found = self.entity[pos] == entities
        n = np.where(found, np.minimum(self.count[pos], k), 0)
        mask = np.arange(k)[None, :] < n[:, None]
        index = np.where(mask, self.start[pos][:, None] + np.arange(k)[None, :], 0)
        return self.rows[index], mask


class Tasks:
    """Meta-learning tasks: an entity with at least 2k rows; k consecutive rows as support and
    the k after them as query (the support always precedes the query in time)."""

    def __init__(self, data: SplitData, slot: int, k: int, what: str):
        h = Histories(data, slot)
        keep = h.count >= 2 * k
        if not keep.any():
            raise DataError(f"no {what} has {2 * k} training rows, so meta-learning has no "
                            f"tasks: generate more interactions (rows) or a larger preset",
                            fields="rows")
        self.rows, self.start, self.count, self.k = h.rows, h.start[keep], h.count[keep], k

    def __len__(self) -> int:
        return len(self.start)

    def sample(self, rng: np.random.Generator, n_tasks: int) -> tuple[np.ndarray, np.ndarray]:
        """(support, query) row indices, each (n_tasks, k)."""
        task = rng.integers(0, len(self.start), n_tasks)
        offset = (rng.random(n_tasks) * (self.count[task] - 2 * self.k + 1)).astype(np.int64)
        first = (self.start[task] + offset)[:, None] + np.arange(2 * self.k)[None, :]
        window = self.rows[first]
        return window[:, :self.k], window[:, self.k:]


@dataclass
class Episode:
    """`tasks` tasks of `k` support rows each, then the `k` query rows that follow them: the
    support and query rows as batches, task by task (rows t*k .. t*k + k - 1 are task t's)."""

    support: Batch
    query: Batch
    tasks: int
    k: int


class EpisodeSampler:
    """One episode per entity (user_id / item_id) for each training step, from the training
    split (held here, in memory)."""

    def __init__(self, data: SplitData, layout: Layout, entities: tuple[str, ...],
                 n_tasks: int, seed: int, k: int = FEW_SHOT_MAX):
        self.data, self.layout, self.n_tasks, self.seed = data, layout, n_tasks, seed
        self.tasks = {name: Tasks(data, layout.slot(name), k, name.removesuffix("_id"))
                      for name in entities}
        self.draws = 0

    def next(self) -> dict[str, Episode]:
        rng = np.random.default_rng([self.seed, 7, self.draws])
        self.draws += 1
        out = {}
        for name, tasks in self.tasks.items():
            support, query = tasks.sample(rng, self.n_tasks)
            out[name] = Episode(rows_batch(self.data, self.layout, support.ravel()),
                                rows_batch(self.data, self.layout, query.ravel()),
                                self.n_tasks, tasks.k)
        return out

    def state_dict(self) -> dict:
        return {"draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        self.draws = int(state["draws"])
