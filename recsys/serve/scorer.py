"""A trained run scoring candidates: the request's rows are assembled in the columns and types
of the dataset the run trained on (the user's, items' and scenario's features from the online
store, the context from the request) and go through the loader's own `to_split_data` and
`rows_batch` into one model call, so a served row is transformed exactly as a training row
was. Unknown users, items and categorical values are nulls there: the model's cold path. The
request's rows share one history, whose tables are read once a request (Batch.one_history)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.data.offline import offline_dir
from recsys.dataset.batch import Batch
from recsys.dataset.loader import needed_columns, rows_batch, SplitData
from recsys.errors import RecsysError
from recsys.serve.features import OnlineFeatures, check_online
from recsys.run import Run
from recsys.schema import ITEM_ID, SCENARIO, USER_ID

RAW = Path("request")  # what the loader's messages name as the rows' origin


class RequestError(RecsysError):
    """A request the server refuses (HTTP 422), with the reason."""


@dataclass
class Request:
    user_id: int | str
    scenario: int | str
    item_ids: list[int] | list[str]
    context: dict[str, object] = field(default_factory=dict)


@dataclass
class Seen:
    """What one request's rows were made of, in the store's terms (-1: unknown): enough to
    write down later, off the request's path, the features the model saw (`features`)."""

    user: int
    scenario: int
    items: np.ndarray
    user_row: pa.Table  # the user's row of the online store (nulls: unknown)
    context: dict  # the context's values given, as the dataset holds them
    context_types: dict  # every context feature's Arrow type
    caches: dict  # the item and scenario tables the rows were placed from
    left_out: tuple = ()  # columns `features` leaves out (the text vectors: the item's text says)

    def take(self, order: np.ndarray) -> "Seen":
        """The same request's rows in `order` (a subset: the items shown)."""
        return Seen(self.user, self.scenario, self.items[order], self.user_row, self.context,
                    self.context_types, self.caches, self.left_out)

    def cache_rows(self) -> dict[str, np.ndarray]:
        """Each row's row of the item and the scenario caches (an unknown item: the cache's
        last, all-null row)."""
        unknown = self.caches["item"].num_rows - 1
        return {"item": np.where((self.items >= 0) & (self.items < unknown), self.items,
                                 unknown), SCENARIO: np.full(len(self.items), self.scenario)}

    def layout(self) -> tuple:
        """What decides `features_of`'s columns: requests of one layout go into one table."""
        return (id(self.caches), tuple(self.user_row.column_names), tuple(self.context_types),
                self.left_out)

    @staticmethod
    def features_of(seens: list["Seen"]) -> dict[str, pa.Array]:
        """Each feature column the rows of `seens` (one layout) were assembled from, one value
        per item, the requests one after the other, in the dataset's types: the user's, the
        context's, each item's and the scenario's (the IDs and the scenario themselves are not
        among them). One take per column for all the requests: the served log's writer builds
        a flush's rows in a few calls, not a few per request."""
        first, counts = seens[0], [len(s.items) for s in seens]
        request = pa.array(np.repeat(np.arange(len(seens)), counts))  # each row's request
        users = pa.concat_tables([s.user_row for s in seens])
        out = {c: users[c].take(request) for c in users.column_names}
        out.update({c: pa.array([s.context.get(c) for s in seens], t).take(request)
                    for c, t in first.context_types.items()})  # a context left out: null
        rows = [s.cache_rows() for s in seens]
        for part in ("item", SCENARIO):
            table = first.caches[part]
            at = np.concatenate([r[part] for r in rows])
            out.update({c: table[c].take(at) for c in table.column_names if c not in out})
        return {c: v for c, v in out.items() if c not in first.left_out}


@dataclass
class Scores:
    item_ids: list
    scores: np.ndarray  # click probabilities, the items' order
    feature_seconds: float  # reading and assembling the features
    model_seconds: float
    seen: Seen | None = None


class Scorer:
    def __init__(self, run: Path, repo: Path, refresh_seconds: float = 10.0):
        trained = Run(run).check_trained()
        check_online(repo)
        self.repo = repo
        cfg, meta = trained.config(), trained.dataset_meta()
        self.layout = trained.layout()
        self.schema = meta.schema
        self.service = meta.feature_service or self.schema.default_service
        self.columns = needed_columns(self.layout, for_metrics=False)
        self.model = trained.load_model(self.layout).eval()
        # a column the request leaves out (a context feature, the unknown user's) is null:
        # its inputs are the same every time
        self.null_inputs = {c.name: c.transform(pa.nulls(1, self.columns.field(c.name).type),
                                                RAW) for c in self.layout.inputs}
        self.features = OnlineFeatures(repo, self.schema, self.service, self.columns,
                                       meta.n_items, refresh_seconds, prepare=self._prepare)
        by_name = {f.name: f for f in self.schema.features}
        entities = {e.join_key for e in self.schema.entities}
        self.context = {n: by_name[n] for n in self.columns.names
                        if n in by_name and by_name[n].view is None and n not in entities}
        self.vocabularies = {n: _vocabulary(offline_dir(repo) / f.vocabulary)
                             for n, f in self.context.items() if f.vocabulary}
        self.scenarios = {s.name: s.code for s in self.schema.scenarios}
        self.trained_on = meta.raw.get("origin")  # what data the run's dataset was built of
        came = trained.provenance
        self.info = {"run": str(run), "model": cfg.model, "name": cfg.name,
                     "model_fingerprint": trained.fingerprint(), "dataset": came.dataset,
                     "dataset_fingerprint": came.dataset_fingerprint,
                     "feature_service": self.service, "schema": self.schema.name,
                     "scenarios": list(self.schema.scenario_names),
                     "context": list(self.context), "code": came.code,
                     "config": cfg.to_json()}

    # ---- the request's parts ------------------------------------------------------------------
    def scenario_code(self, value: int | str) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and \
                0 <= value < len(self.schema.scenarios):
            return value
        if isinstance(value, str) and value in self.scenarios:
            return self.scenarios[value]
        raise RequestError(f"scenario: unknown scenario {value!r}; the model's are "
                           + ", ".join(f"{c} ({n})" for n, c in self.scenarios.items()))

    def context_values(self, context: dict) -> dict[str, object]:
        """The context's values as the dataset holds them (codes through the vocabularies);
        an unknown key or a value of the wrong kind is a RequestError."""
        out = {}
        for name, value in context.items():
            feature = self.context.get(name)
            if feature is None:
                raise RequestError(f"context.{name}: not a context feature of the model; its "
                                   f"context features are {', '.join(self.context) or 'none'}")
            if value is None:
                out[name] = None
            elif name in self.vocabularies:  # any value; an unseen one takes the unknown row
                out[name] = self.vocabularies[name].get(_as_text(value))
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    (feature.kind == "categorical" and not float(value).is_integer()):
                what = "code (a whole number)" if feature.kind == "categorical" else "number"
                raise RequestError(f"context.{name}: {value!r} is not a {what}")
            else:
                out[name] = int(value) if feature.kind == "categorical" else float(value)
        return out

    def store_ids(self, user_id, item_ids: list, where: str = "",
                  items_key: str = "item_ids") -> tuple[int, np.ndarray]:
        """The store's user and item IDs of a request (-1: unknown); an ID that cannot be one
        of this repo's (a name where its IDs are whole numbers) is a RequestError naming the
        key (after `where`)."""
        for name, index, values in ((USER_ID, self.features.users, [user_id]),
                                    (items_key, self.features.items, item_ids)):
            if (bad := index.misfit(values)) is not None:
                raise RequestError(f"{where}{name}: {bad!r} is not an ID of this repo, whose "
                                   f"IDs are whole numbers")
        return int(self.features.users.lookup([user_id])[0]), \
            self.features.items.lookup(item_ids)

    # ---- scoring --------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, request: Request) -> Scores:
        start = time.perf_counter()
        scenario = self.scenario_code(request.scenario)
        context = self.context_values(request.context)
        user, items = self.store_ids(request.user_id, request.item_ids)
        seen = self.seen(user, scenario, items, context)
        batch = rows_batch(self._inputs(seen), self.layout, slice(None), one_history=True)
        middle = time.perf_counter()
        probs = torch.sigmoid(self.model(batch)).numpy()
        return Scores(request.item_ids, probs, middle - start, time.perf_counter() - middle,
                      seen)

    # ---- the model's inputs ----------------------------------------------------------------------
    # Each column is transformed by the loader's own InputColumn.transform: an item's or a
    # scenario's once per cache load, the request's own (the user's, the context's) per
    # request, and the results placed side by side. The transforms act on each column and
    # each row alone, so this equals transforming the assembled rows.
    def _prepare(self, caches: dict) -> dict:
        """The model's inputs of every item (then the unknown one) and every scenario."""
        items, scenarios = caches["item"], caches[SCENARIO]
        n, s = items.num_rows - 1, scenarios.num_rows - 1  # then each an all-null row
        values = {"item": {ITEM_ID: pa.array(np.arange(n + 1), mask=np.arange(n + 1) == n,
                                               type=pa.int64()),
                           **{c: items[c] for c in items.column_names}},
                  SCENARIO: {SCENARIO: pa.array(np.arange(s + 1), mask=np.arange(s + 1) == s,
                                                    type=pa.int64()),
                               **{c: scenarios[c] for c in scenarios.column_names}}}
        return {"inputs": {part: [(c, c.transform(v[c.name], RAW))
                                  for c in self.layout.inputs if c.name in v]
                           for part, v in values.items()}}

    def batch(self, user: int, scenario: int, items: np.ndarray,
              context: dict[str, object] | None = None) -> Batch:
        """The model's batch of one request in the store's terms (user -1: unknown)."""
        return rows_batch(self._inputs(self.seen(user, scenario, items, context or {})),
                          self.layout, slice(None), one_history=True)

    def seen(self, user: int, scenario: int, items: np.ndarray,
             context: dict[str, object]) -> Seen:
        """A request's parts: the user's row read from the online store, the caches of now."""
        # an unknown user's row: typed nulls (no read), so every answer logs the same columns
        return Seen(user, scenario, items, self.features.user(user), context,
                    {c: self.columns.field(c).type for c in self.context},
                    self.features.caches, self.layout.vector_columns)

    def _inputs(self, seen: Seen) -> SplitData:
        """One row per candidate: the request's own inputs repeated, each item's and the
        scenario's placed from the caches."""
        caches, user_row = seen.caches, seen.user_row
        placed = {c.name for part in caches["inputs"].values() for c, _ in part}
        values = {**({USER_ID: pa.array([seen.user], pa.int64())} if seen.user >= 0 else {}),
                  **{c: user_row[c] for c in user_row.column_names},
                  **{c: pa.array([v], seen.context_types[c]) for c, v in seen.context.items()}}
        n = len(seen.items)
        out = {"ids": np.empty((n, self.layout.id_columns), dtype=np.int64),
               "dense": np.empty((n, len(self.layout.dense)), dtype=np.float32),
               "vectors": np.empty((n, sum(g.width for g in self.layout.vectors)),
                                   dtype=np.float32)}
        for c in self.layout.inputs:
            if c.name not in placed:  # the request's own: one row, repeated
                value = values.get(c.name)
                out[c.matrix][:, c.start:c.start + c.width] = self.null_inputs[c.name] \
                    if value is None else c.transform(value, RAW)
        rows = seen.cache_rows()
        for part, columns in caches["inputs"].items():
            for c, inputs in columns:
                out[c.matrix][:, c.start:c.start + c.width] = inputs[rows[part]]
        return SplitData(**out, labels=np.zeros(n, np.float32),
                         scenario=np.full(n, seen.scenario, dtype=np.int64),
                         p_true=np.zeros(n, np.float32), flags={},
                         time=np.zeros(n, np.int64))

    def close(self) -> None:
        self.features.close()


def _as_text(value) -> str:
    """A context value as the import's vocabulary wrote it (the text of the value)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _vocabulary(path: Path) -> dict[str, int]:
    table = pq.read_table(path, columns=["value", "code"])
    return dict(zip(table["value"].to_pylist(), table["code"].to_pylist()))

