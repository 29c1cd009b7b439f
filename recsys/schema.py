"""The single source of truth's types: scenarios, entities, feature views, features and the
`Schema` that holds a repo's, with what every schema has (the join keys, the aggregate, text
vector, history and retrieval views, the log's columns).

A repo's facts live in its `schema.yaml` (a `Schema`), written by `recsys generate` and
`recsys import` and read by the Feast definitions (feature_repo/features.py). The built-in
AntM2C instance, which the generator and the AntM2C importer write, is `recsys.antm2c`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from functools import cache
from typing import TYPE_CHECKING, Literal


from recsys.errors import STRICT, DataError

if TYPE_CHECKING:  # pyarrow is imported where a table is made: a refusal answers without it
    import pyarrow as pa

# history: the user's last clicks before an instant (a list per row, in the user_history view)
# "retrieval": an item's vector in a retrieval run's space (recsys index), in no feature
# service and never a model's input
Kind = Literal["id", "categorical", "numeric", "text", "vector", "history", "retrieval"]
Owner = Literal["user", "item", "context", "scenario"]
# Arrow type names; list<int64>: a multi-valued categorical feature (genres, tags) or a history
Dtype = Literal["int64", "int32", "float32", "string", "list<int64>", "list<float32>"]


@dataclass(frozen=True)
class Scenario:
    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    code: int
    name: str
    share: float  # share of impressions in the public AntM2C release


@dataclass(frozen=True)
class Entity:
    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    name: str
    join_key: str
    description: str


# the entities' join keys: the columns the log, the feature tables and a request are keyed by
USER_ID, ITEM_ID, SCENARIO = "user_id", "item_id", "scenario"


@dataclass(frozen=True)
class View:
    """A Feast feature view: one entity, one Parquet table under the offline store."""

    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    name: str
    entity: str
    description: str
    # Snapshots stay valid until replaced; aggregates are written whenever they change (including
    # back to zero), so a long TTL is exact and lets `feast materialize-incremental` see the data.
    ttl: timedelta = timedelta(days=3650)


# The views every repo has, whatever its data: aggregates written by recsys itself
AGGREGATE_VIEWS = {
    "user_agg": View("user_agg", "user",
                     "User clicks per scenario and impressions over the previous 7 days"),
    "item_agg": View("item_agg", "item", "Item clicks and impressions over the previous 7 days"),
    "scenario_stats": View("scenario_stats", "scenario",
                           "Scenario CTR and impressions of the previous day"),
}
# Written by `recsys encode-text` (empty until then), stamped like the text they encode.
TEXT_VECTOR_VIEWS = {
    "user": View("user_text_vec", "user", "Sentence embeddings of the user's text fields"),
    "item": View("item_text_vec", "item", "Sentence embeddings of the item's text fields"),
}

# Written by recsys from the log: after each instant a user clicked, his last clicks, stamped a
# microsecond later so that an impression at that very instant never sees its own click (nor a
# sibling's). The point-in-time join then gives every row the clicks strictly before it.
HISTORY_VIEW = View("user_history", "user", "The user's last clicks, most recent first, as of "
                    "each instant")
# its lists, aligned element by element: the clicked items, their scenarios, their times (µs)
HISTORY_ITEMS, HISTORY_SCENARIOS, HISTORY_TIMES = \
    "history_item_ids", "history_scenarios", "history_click_times"
HISTORY_LENGTH = 50  # clicks a history keeps, unless a repo's schema says otherwise
MAX_HISTORY_LENGTH = 1000
# how a model reads the history (`recsys train --history`): DIN's target attention of the
# candidate item over the clicked items, or their mean
HISTORY_POOLINGS = ("attention", "mean")
NO_HISTORY = "none"  # `--history none`: a model that reads it where present does not


# Written by `recsys index` (empty until then): each item's vector by the item tower of the
# retrieval run it indexed last, stamped at indexing, so the feature store holds them too
RETRIEVAL_VIEW = View("item_retrieval", "item", "Item vectors of the retrieval run `recsys "
                      "index` indexed last")
RETRIEVAL_VECTOR = "item_retrieval_vec"


def retrieval_features() -> tuple["Feature", ...]:
    return (Feature(RETRIEVAL_VECTOR, "retrieval", "item", "list<float32>", None,
                    RETRIEVAL_VIEW.name, "The item tower's vector of the item"),)


def history_column(feature: str) -> str:
    """The history's list of an item feature's values, one per click."""
    return f"history_{feature}"


@dataclass(frozen=True)
class Feature:
    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    name: str
    kind: Kind
    owner: Owner
    dtype: Dtype
    # Vocabulary size of a categorical feature; None for numeric and text features and for IDs,
    # whose size comes from the data (the preset's user and item counts).
    cardinality: int | None = None
    view: str | None = None  # None: rides with the interaction row (IDs and context)
    description: str = ""
    # Features coded from data by `recsys import interactions`: the file (in the offline
    # store) mapping raw values to codes; the most values a multi-valued row keeps; and the
    # (mean, std) a numeric feature is standardized with.
    vocabulary: str | None = None
    max_values: int | None = None
    scale: tuple[float, float] | None = None

    @property
    def multi_valued(self) -> bool:
        """A categorical feature of several values a row (a history is a list too, but not a
        bag of codes)."""
        return self.dtype == "list<int64>" and self.kind == "categorical"


def vector_name(text_field: str) -> str:
    """The feature holding the sentence embedding of a text field."""
    return f"{text_field}_vec"


def aggregate_features(view: str, scenarios: tuple[Scenario, ...]) -> tuple[Feature, ...]:
    """The features of an aggregate view (AGGREGATE_VIEWS): one click count per scenario."""
    if view == "user_agg":
        return (*(Feature(f"user_clicks_7d_s{s.code}", "numeric", "user", "int32", None,
                          "user_agg", f"User clicks in scenario {s.code} ({s.name}) over the "
                          f"previous 7 days") for s in scenarios),
                Feature("user_impressions_7d", "numeric", "user", "int32", None, "user_agg",
                        "User impressions over the previous 7 days"))
    if view == "item_agg":
        return (Feature("item_clicks_7d", "numeric", "item", "int32", None, "item_agg",
                        "Item clicks over the previous 7 days"),
                Feature("item_impressions_7d", "numeric", "item", "int32", None, "item_agg",
                        "Item impressions over the previous 7 days"))
    return (Feature("scenario_ctr_1d", "numeric", "scenario", "float32", None, "scenario_stats",
                    "Scenario click-through rate of the previous day"),
            Feature("scenario_impressions_1d", "numeric", "scenario", "int64", None,
                    "scenario_stats", "Scenario impressions of the previous day"))


def text_vector_features(texts: tuple[Feature, ...]) -> tuple[Feature, ...]:
    """One sentence-embedding feature per text feature, in its owner's TEXT_VECTOR_VIEWS."""
    return tuple(Feature(vector_name(f.name), "vector", f.owner, "list<float32>", None,
                         TEXT_VECTOR_VIEWS[f.owner].name, f"Sentence embedding of {f.name}")
                 for f in texts)


def history_features(item_features: tuple[str, ...] = ()) -> tuple[Feature, ...]:
    """The user_history view's lists, aligned element by element, most recent click first:
    the items, scenarios and times, then each of `item_features` of the clicked item."""
    view = HISTORY_VIEW.name
    return (Feature(HISTORY_ITEMS, "history", "user", "list<int64>", None, view,
                    "Items the user clicked"),
            Feature(HISTORY_SCENARIOS, "history", "user", "list<int64>", None, view,
                    "Scenario of each click"),
            Feature(HISTORY_TIMES, "history", "user", "list<int64>", None, view,
                    "Time of each click, microseconds since the epoch"),
            *(Feature(history_column(f), "history", "user", "list<int64>", None, view,
                      f"{f} of each clicked item") for f in item_features))


def id_features(n_scenarios: int) -> tuple[Feature, ...]:
    return (Feature(USER_ID, "id", "user", "int64", description="User ID"),
            Feature(ITEM_ID, "id", "item", "int64", description="Item ID"),
            Feature(SCENARIO, "categorical", "scenario", "int64", n_scenarios, None,
                    "Scenario code of the impression"))


# Modalities a model may add to the IDs (`--text`, `--image`): the views holding their vectors.
MODALITIES = ("text", "image")
EVENT_TIMESTAMP = "event_timestamp"
LABEL = "label"
P_TRUE = "p_true"
REQUEST_ID = "request_id"
# a categorical value that is missing or unknown, where the store holds a code (a history's
# carried features, whose lists Feast cannot hold with null elements): the loader reads it,
# as any negative value, as the feature's unknown row
UNKNOWN_CODE = -1
# the order of a user's clicks (history_sql and /feedback's merge_clicks): by time, ties at one
# instant broken by request and then item; a history lists them latest first
HISTORY_ORDER = (EVENT_TIMESTAMP, REQUEST_ID, ITEM_ID)
COLD_START_FLAGS = ("zero_shot_user", "few_shot_user", "zero_shot_item", "few_shot_item")
FEW_SHOT_MAX = 4  # few-shot: 1..4 training interactions; zero-shot: none

_OPTIONAL = ("vocabulary", "max_values", "scale")  # left out of a schema's JSON when unset


@cache
def _arrow_types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {"int64": pa.int64(), "int32": pa.int32(), "float32": pa.float32(),
            "string": pa.string(), "int8": pa.int8(), "list<int64>": pa.list_(pa.int64()),
            "list<float32>": pa.list_(pa.float32()), "timestamp": pa.timestamp("us", tz="UTC")}


def arrow_type(dtype: str) -> pa.DataType:
    return _arrow_types()[dtype]


# Offline store layout (relative to the feature repo): one folder of Parquet parts per table.
OFFLINE_DIR = "data/offline"
INTERACTIONS = "interactions"


# ---- a repo's schema file ------------------------------------------------------------------
SCHEMA_FILE = "schema.yaml"  # in the feature repo, beside features.py


@dataclass(frozen=True)
class Schema:
    """A repo's feature facts: its scenarios, entities, Feast views, every feature and the
    feature services (the views each task reads)."""

    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    name: str
    scenarios: tuple[Scenario, ...]
    entities: tuple[Entity, ...]
    views: tuple[View, ...]
    features: tuple[Feature, ...]
    services: dict[str, tuple[str, ...]]
    default_service: str
    history_length: int = HISTORY_LENGTH  # clicks the user_history view keeps
    # the item features (categorical, one value) each click of the view carries
    history_item_features: tuple[str, ...] = ()

    @property
    def scenario_names(self) -> tuple[str, ...]:
        """The scenarios' names, by code (codes are 0..N-1)."""
        return tuple(s.name for s in sorted(self.scenarios, key=lambda s: s.code))

    def with_history(self, length: int, item_features: tuple[str, ...]) -> Schema:
        """This schema with its user_history view keeping `length` clicks and `item_features`
        of each (when it has the view)."""
        from dataclasses import replace

        features = self.features
        if any(v.name == HISTORY_VIEW.name for v in self.views):
            features = tuple(f for f in features if f.view != HISTORY_VIEW.name) + \
                history_features(item_features)
        return replace(self, history_length=length, history_item_features=item_features,
                       features=features)

    def with_cardinalities(self, sizes: dict[str, int]) -> Schema:
        """This schema with the categorical features of `sizes` taking those cardinalities
        (an append's grown vocabularies)."""
        from dataclasses import replace

        return replace(self, features=tuple(
            replace(f, cardinality=sizes[f.name]) if f.name in sizes else f
            for f in self.features))

    def carried_item_features(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `names` a click of the history can carry: the item's categorical features
        of one value, in a view."""
        by_name = {f.name: f for f in self.features}
        return tuple(n for n in names if (f := by_name.get(n)) is not None and
                     f.owner == "item" and f.kind == "categorical" and not f.max_values and
                     f.view is not None)

    def view_features(self, view: str) -> list[Feature]:
        return [f for f in self.features if f.view == view]

    def modality_views(self, modality: str) -> tuple[str, ...]:
        """The views holding a modality's vectors (MODALITIES): text, the sentence embeddings
        of the text features; image, every other vector feature."""
        texts = {vector_name(f.name) for f in self.features if f.kind == "text"}
        views = []
        for view in self.views:
            vecs = [f for f in self.view_features(view.name) if f.kind == "vector"]
            if vecs and all((f.name in texts) == (modality == "text") for f in vecs):
                views.append(view.name)
        return tuple(views)

    def join_key(self, view: str) -> str:
        entity = next(v.entity for v in self.views if v.name == view)
        return next(e.join_key for e in self.entities if e.name == entity)

    def view_schema(self, view: str) -> pa.Schema:
        """Arrow schema of a view's offline table: join key, event timestamp, features."""
        import pyarrow as pa

        fields = [pa.field(self.join_key(view), pa.int64()),
                  pa.field(EVENT_TIMESTAMP, arrow_type("timestamp"))]
        fields += [pa.field(f.name, arrow_type(f.dtype)) for f in self.view_features(view)]
        return pa.schema(fields)

    def interaction_schema(self) -> pa.Schema:
        """Arrow schema of the interaction log: one impression per row, with the features that
        ride with it (IDs and context)."""
        import pyarrow as pa

        fields = [pa.field(REQUEST_ID, pa.int64()),
                  pa.field(EVENT_TIMESTAMP, arrow_type("timestamp"))]
        fields += [pa.field(f.name, arrow_type(f.dtype)) for f in self.features
                   if f.view is None]
        fields += [pa.field(LABEL, pa.int8()), pa.field(P_TRUE, pa.float32())]
        return pa.schema(fields)

    def tables(self) -> dict[str, pa.Schema]:
        """Every table of the offline store: the interaction log and one per view."""
        return {INTERACTIONS: self.interaction_schema(),
                **{v.name: self.view_schema(v.name) for v in self.views}}

    def dataset_schema(self, service: str | None = None) -> pa.Schema:
        """Arrow schema of a built training set: the interaction row, the service's features
        (the default service's without one), and the cold-start flags."""
        import pyarrow as pa

        fields = list(self.interaction_schema())
        for view in self.services[service or self.default_service]:
            fields += [pa.field(f.name, arrow_type(f.dtype)) for f in self.view_features(view)]
        fields += [pa.field(flag, pa.bool_()) for flag in COLD_START_FLAGS]
        return pa.schema(fields)

    def to_json(self) -> dict:
        data = _adapter().dump_python(self, mode="json")
        for f in data["features"]:
            for key in _OPTIONAL:
                if f[key] is None:
                    del f[key]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Schema:
        return _adapter().validate_python(data)

    def problems(self) -> list[str]:
        """What refers to nothing, or is named twice."""
        found = []
        for what, names in (("scenario code", [s.code for s in self.scenarios]),
                            ("entity", [e.name for e in self.entities]),
                            ("view", [v.name for v in self.views]),
                            ("feature", [f.name for f in self.features])):
            found += [f"{what} {n!r} is declared twice" for n in sorted(
                {n for n in names if names.count(n) > 1}, key=str)]
        codes = sorted(s.code for s in self.scenarios)
        if not codes or codes != list(range(len(codes))):
            found.append(f"scenario codes {codes} must be 0..N-1, N at least 1")
        entities, views = {e.name for e in self.entities}, {v.name for v in self.views}
        found += [f"view {v.name!r}: entity {v.entity!r} is not declared"
                  for v in self.views if v.entity not in entities]
        found += [f"feature {f.name!r}: view {f.view!r} is not declared"
                  for f in self.features if f.view is not None and f.view not in views]
        found += [f"feature {f.name!r}: a categorical feature needs a cardinality"
                  for f in self.features if f.kind == "categorical" and not f.cardinality]
        found += [f"feature {f.name!r}: dtype list<int64> is for categorical features, with "
                  f"max_values of at least 1, and for histories"
                  for f in self.features if f.dtype == "list<int64>" and f.kind != "history"
                  and (f.kind != "categorical" or not f.max_values or f.max_values < 1)]
        if not 1 <= self.history_length <= MAX_HISTORY_LENGTH:
            found.append(f"history_length {self.history_length}: must be 1..{MAX_HISTORY_LENGTH}")
        found += [f"history_item_features: {n!r} must be an item's categorical feature of one "
                  f"value, in a view" for n in self.history_item_features
                  if n not in self.carried_item_features(self.history_item_features)]
        found += [f"feature {f.name!r}: scale (mean, std) needs a std above 0"
                  for f in self.features if f.scale is not None and not f.scale[1] > 0]
        found += [f"service {name!r}: view {v!r} is not declared"
                  for name, vs in self.services.items() for v in vs if v not in views]
        if self.default_service not in self.services:
            found.append(f"default_service {self.default_service!r} is not a declared service")
        return found

    def save(self, path: Path) -> None:
        """To YAML, one line per scenario, entity, view and feature (written whole or not at
        all)."""
        import yaml

        from recsys.files import replacing

        def dump(value, flow=None) -> str:
            return yaml.safe_dump(value, sort_keys=False, default_flow_style=flow,
                                  width=1 << 16)

        lines = []
        for key, value in self.to_json().items():
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                lines.append(f"{key}: {dump(value, True).strip()}")  # names: one line
            elif isinstance(value, list):  # an entry a line, however nested
                lines += [f"{key}:"] + [f"- {dump(v, True).strip()}" for v in value]
            else:  # a scalar, or the services (a flow list each)
                lines.append(dump({key: value}, None if isinstance(value, dict) else False)
                             .rstrip("\n"))
        text = "\n".join(lines) + "\n"
        with replacing(path) as tmp:
            tmp.write_text(text)

    @classmethod
    def load(cls, path: Path) -> Schema:
        """A schema file, checked: a bad key, type or reference is one DataError naming it."""
        from recsys.files import read_yaml

        fix = ("fix the file, or write it again with `recsys generate` / `recsys import ... "
               "--force`")
        if not path.is_file():
            raise DataError(f"{path}: no schema file; {fix}")
        data = read_yaml(path, fix)
        from pydantic import ValidationError

        try:
            schema = _adapter().validate_python(data)
        except ValidationError as e:
            error = e.errors()[0]
            what = _PLAIN.get(error["type"], error["msg"])
            raise DataError(f"{path}: {_where(data, error['loc'])}: {what}; {fix}") from None
        if problems := schema.problems():
            raise DataError(f"{path}: {problems[0]}; {fix}")
        return schema


@cache
def _adapter():
    """pydantic's validator of a Schema, made on first use (pydantic waits until then)."""
    from pydantic import TypeAdapter

    return TypeAdapter(Schema)


_PLAIN = {"missing": "missing (it is required)", "missing_argument": "missing (it is required)",
          "unexpected_keyword_argument": "not a known key (check its spelling)"}


def _where(data, loc: tuple) -> str:
    """A pydantic error location as a person reads it: features[3] (user_gender).kind."""
    parts, node = [], data
    for key in loc:
        found = isinstance(node, dict) and key in node or \
            isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        node = node[key] if found else None
        if isinstance(key, int) and parts:
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1] += f"[{key}]" + (f" ({name})" if name else "")
        else:
            parts.append(str(key))
    return ".".join(parts) or "the file"


def __getattr__(name: str):
    """The Arrow-typed names, made on first use (they need pyarrow)."""
    if name == "TIMESTAMP_TYPE":
        return arrow_type("timestamp")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
