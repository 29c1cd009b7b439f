"""The features a served request needs, from the repo's Feast online store (SQLite, or Redis
when feature_store.yaml says so), in the model's own columns and types:

- the user's row, read from the online store for each request;
- every item's and every scenario's row, read once into a cache (one Arrow table each, row i
  the item i, and a last all-null row for the unknown) and read again when a view of theirs has
  been materialized since: the registry's materialization intervals are checked every
  `refresh_seconds` by a background thread, and the new cache replaces the old in one
  assignment, so a request sees one or the other, never half;
- raw IDs as the data knows them -> the store's IDs, through the import's ID maps (a repo of
  generated data has none: its IDs are the store's), and categorical context values -> codes
  through their vocabularies. An unknown ID or value maps to nothing: the model's cold path.

Memory: the item cache holds every item's model features (items x row width: 20,000 items of
`small` with text vectors take about 6 MB); the ID maps hold one entry per user and item.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.offline import ID_MAPS, offline_dir
from recsys.errors import RepoError
from recsys.schema import ITEM_ID, SCENARIO, Schema, USER_ID

CHUNK = 10_000  # entity rows per online read while filling a cache
NO_ID = np.iinfo(np.int64).min  # stands for an ID that cannot be one
WHOLE = re.compile(r"-?\d{1,18}")  # a whole-number ID written as digits


@dataclass(frozen=True)
class Views:
    """The feature service's views by entity, each with the model's columns it holds."""

    by_entity: dict[str, dict[str, list[str]]]  # entity -> view -> feature names

    @classmethod
    def of(cls, schema: Schema, service: str, wanted: set[str]) -> "Views":
        out: dict[str, dict[str, list[str]]] = {}
        for view in schema.services[service]:
            names = [f.name for f in schema.view_features(view) if f.name in wanted]
            if names:
                entity = next(v.entity for v in schema.views if v.name == view)
                out.setdefault(entity, {})[view] = names
        return cls(out)

    def refs(self, entity: str) -> list[str]:
        return [f"{v}:{n}" for v, names in self.by_entity.get(entity, {}).items() for n in names]

    def names(self, entity: str) -> list[str]:
        return [n for names in self.by_entity.get(entity, {}).values() for n in names]


class IdIndex:
    """Raw IDs -> the store's IDs: a sorted array of an import's ID map (whole numbers as
    int64, other IDs as strings); without a map, an ID is its own store ID."""

    def __init__(self, path: Path | None):
        self.raw = self.rows = self.by_row = None
        if path is None or not path.is_file():
            return
        table = pq.read_table(path)
        raw, rows = table["raw_id"].combine_chunks(), table.column(1).to_numpy()
        whole = pc.all(pc.match_substring_regex(raw, r"^-?\d{1,18}$")).as_py()
        keys = pc.cast(raw, pa.int64()).to_numpy() if whole else \
            np.asarray(raw.to_pylist(), dtype=object)
        order = np.argsort(keys, kind="stable")
        self.raw, self.rows, self.whole = keys[order], rows[order], whole
        self.by_row = np.empty(int(rows.max()) + 1 if len(rows) else 0, dtype=keys.dtype)
        self.by_row[rows] = keys  # store ID -> raw ID

    def misfit(self, values: list[int] | list[str]):
        """The first of `values` that cannot be an ID of this index (a string other than
        digits where the IDs are whole numbers), or None: a client's bug to be told, not a
        new user to be scored cold."""
        if self.raw is not None and not self.whole:
            return None  # IDs of any kind
        return next((v for v in values if isinstance(v, str) and not WHOLE.fullmatch(v)), None)

    def raw_ids(self, rows: np.ndarray) -> list:
        """The raw IDs of store IDs (the inverse of lookup), as a client sent them."""
        if self.raw is None:
            return [int(r) for r in rows]
        return [v.item() if hasattr(v, "item") else v for v in self.by_row[rows]]

    def lookup(self, values: list[int] | list[str]) -> np.ndarray:
        """The store IDs of `values` (all ints or all strings), -1 where unknown; vectorized."""
        values = pa.array(values, pa.int64() if values and isinstance(values[0], int)
                          else pa.string())
        if self.raw is None or self.whole:  # whole numbers, given as numbers or digits
            if pa.types.is_string(values.type):
                digits = pc.match_substring_regex(values, r"^-?\d{1,18}$")
                values = pc.cast(pc.if_else(digits, values, None), pa.int64())
            keys = values.fill_null(NO_ID).to_numpy()
            if self.raw is None:  # generated data: the IDs are the store's
                return np.where(keys >= 0, keys, -1)
        else:
            keys = np.asarray(pc.cast(values, pa.string()).to_pylist(), dtype=object)
        if not len(self.raw):
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.raw, keys), 0, len(self.raw) - 1)
        return np.where(self.raw[pos] == keys, self.rows[pos], -1).astype(np.int64)


class OnlineFeatures:
    def __init__(self, repo: Path, schema: Schema, service: str, columns: pa.Schema,
                 n_items: int, refresh_seconds: float = 10.0, prepare=None):
        """`prepare(caches)`: what to derive from a fresh cache (the model's inputs of every
        item), kept with it and replaced with it."""
        from recsys.features.feature_store import open_store

        self.store = open_store(repo)
        self.columns = columns  # the model's columns, with their types
        self.views = Views.of(schema, service, set(columns.names))
        self.n_items, self.n_scenarios = n_items, len(schema.scenarios)
        maps = offline_dir(repo) / ID_MAPS
        self.users, self.items = IdIndex(maps / "user_id.parquet"), \
            IdIndex(maps / "item_id.parquet")
        self.refresh_seconds, self.reloads = refresh_seconds, 0
        self.read_seconds = 0.0  # of the last request's user read (the metrics' share)
        self.prepare = prepare
        self._stop = threading.Event()
        self._state = self._materialized()
        self._caches = self._read_caches()
        if refresh_seconds > 0:
            threading.Thread(target=self._watch, daemon=True, name="feature-cache").start()

    # ---- per request ------------------------------------------------------------------------
    def user(self, user_id: int) -> pa.Table:
        """The user's row (one row; nulls for an unknown user or one not in the store)."""
        names = self.views.names("user")
        if user_id < 0 or not names:
            return self._typed(pa.table({n: pa.nulls(1) for n in names}), names)
        start = time.perf_counter()
        row = self.store.get_online_features(features=self.views.refs("user"),
                                             entity_rows=[{USER_ID: int(user_id)}]).to_arrow()
        self.read_seconds = time.perf_counter() - start
        return self._typed(row, names)

    @property
    def caches(self) -> dict:
        """The item and scenario tables (row i: item / scenario i; then an all-null row) and
        what `prepare` derived from them: one consistent set, even while a refresh runs."""
        return self._caches

    # ---- the caches ---------------------------------------------------------------------------
    def _read_caches(self) -> dict:
        caches = {"item": self._read_all("item", ITEM_ID, self.n_items),
                  SCENARIO: self._read_all(SCENARIO, SCENARIO, self.n_scenarios)}
        return {**caches, **(self.prepare(caches) if self.prepare else {})}

    def _read_all(self, entity: str, key: str, n: int) -> pa.Table:
        """Rows 0..n-1 of an entity's views from the online store, then one null row."""
        names = self.views.names(entity)
        parts = []
        for lo in range(0, n, CHUNK) if names else ():
            rows = [{key: i} for i in range(lo, min(lo + CHUNK, n))]
            parts.append(self._typed(self.store.get_online_features(
                features=self.views.refs(entity), entity_rows=rows).to_arrow(), names))
        parts.append(self._typed(pa.table({c: pa.nulls(1) for c in names}), names))
        return pa.concat_tables(parts).combine_chunks()

    def _typed(self, table: pa.Table, names: list[str]) -> pa.Table:
        fields = [self.columns.field(n) for n in names]
        return pa.table([table[n].cast(f.type) for n, f in zip(names, fields)],
                        schema=pa.schema(fields))

    def _materialized(self) -> tuple:
        """What the registry says of the cached views' materializations."""
        self.store.refresh_registry()
        views = [v for e in ("item", SCENARIO) for v in self.views.by_entity.get(e, {})]
        return tuple((v, tuple((a.isoformat(), b.isoformat()) for a, b in
                               self.store.get_feature_view(v).materialization_intervals))
                     for v in views)

    def refresh(self) -> bool:
        """Read the caches again if a cached view was materialized since; whether it was."""
        state = self._materialized()
        if state == self._state:
            return False
        caches = self._read_caches()
        self._caches, self._state = caches, state  # one assignment: old or new, never half
        self.reloads += 1
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # a registry being written right now: try at the next tick
                continue

    def close(self) -> None:
        self._stop.set()


def check_online(repo: Path) -> None:
    """The repo has a Feast registry to serve from (`feast apply` writes it)."""
    from recsys.files import read_yaml

    config = read_yaml(repo / "feature_store.yaml", "fix or restore it") or {}
    registry = config.get("registry")
    path = registry.get("path") if isinstance(registry, dict) else registry
    if isinstance(path, str) and "://" not in path and not (repo / path).exists():
        raise RepoError(f"{repo}: no Feast registry at {repo / path}; run `feast apply` and "
                        f"`feast materialize-incremental` in the repo before serving")
