"""The schema and entity views of an interaction log imported with its own columns
(`recsys import interactions`): scenarios named by the data, the log's other columns as
context features, a users / items table's columns as profile and text views.

Categorical values of any type become codes 0..n-1, most frequent first, with the vocabulary
saved in `vocabularies/<feature>.parquet` (value, code, rows); a value the vocabulary lacks
(at build or serving time) takes the embedding table's unknown row. A multi-valued column
(genres: Action|Comedy) becomes a list of codes. Numeric features keep their values and record
the (mean, std) the loader standardizes them with. A users / items table's rows are snapshots
stamped at the start of the log, so every impression sees them; its users and items that never
interacted still get ID rows, for serving them cold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.append import Base
from recsys.data.import_columns import MAX_LIST_VALUES, MAX_SCENARIOS, Column
from recsys.data.import_writer import DUPLICATES_PER_BATCH, Counts
from recsys.data.offline import VOCABULARIES, write_query
from recsys.schema import AGGREGATE_VIEWS, COLD_START_FLAGS, EVENT_TIMESTAMP, HISTORY_VIEW, \
    ITEM_ID, LABEL, P_TRUE, REQUEST_ID, RETRIEVAL_VIEW, SCENARIO, TEXT_VECTOR_VIEWS, USER_ID, \
    Entity, Feature, Scenario, Schema, View, aggregate_features, history_features, id_features, \
    retrieval_features, text_vector_features
from recsys.antm2c import ENTITIES

KEY = "k"  # a staged users / items row's raw ID
# names no imported feature may take (the platform's own columns and features)
RESERVED = {REQUEST_ID, EVENT_TIMESTAMP, LABEL, P_TRUE, USER_ID, ITEM_ID, SCENARIO,
            *COLD_START_FLAGS, *(f.name for f in history_features()),
            *(f.name for v in AGGREGATE_VIEWS for f in aggregate_features(
                v, tuple(Scenario(i, str(i), 0.0) for i in range(MAX_SCENARIOS))))}
ENTITY_TABLES = {"users": ("user", USER_ID, "raw_user"), "items": ("item", ITEM_ID,
                                                                       "raw_item")}
# How long an aggregate stays true. Feast's point-in-time join pairs an impression with every
# row of its key within the view's TTL before it keeps the latest, so over months of data a
# long TTL makes the join quadratic (a daily scenario row joined to every later impression).
# These are exact: a 7-day count that has not changed for 8 days is zero (as a null is to the
# loader), and a scenario's statistics describe the day before.
AGGREGATE_TTL = {"user_agg": timedelta(days=8), "item_agg": timedelta(days=8),
                 "scenario_stats": timedelta(days=1)}
# The same bound for the history, a row per instant a user clicked: a user whose last click is
# older than this has an empty history.
HISTORY_TTL = timedelta(days=30)


@dataclass
class Side:
    """A staged users / items table: the file, its staged Parquet parts, its rows' counts."""

    path: Path
    staging: Path
    counts: Counts


class DeclaredTables:
    """`ingest.Tables` for a log with declared (or inferred) columns."""

    scenario_reason = "empty scenario"

    def __init__(self, scenarios: list[tuple[str, int]], columns: list[Column],
                 sides: dict[str, Side]):
        self.scenarios = scenarios  # (name, rows), by code
        self.columns = [c for c in columns if c.kind != "ignore"]
        self.ignored = [c for c in columns if c.kind == "ignore"]
        self.sides = sides
        self.context = [c for c in self.columns if c.table == "interactions"]
        self.staged = tuple(c.name for c in self.context)
        self.cardinality: dict[str, int] = {}
        self.max_values: dict[str, int] = {}
        self.cut_lists: dict[str, int] = {}  # rows whose list was longer than max_values
        self.schema_: Schema | None = None  # known once the vocabularies are counted

    # ---- the ID maps take the users / items that never interacted -----------------------
    def extra_ids(self, entity: str) -> str | None:
        """SQL of the raw IDs of a users / items table (for the ID map)."""
        for table, (_, key, _) in ENTITY_TABLES.items():
            if key == entity and table in self.sides:
                return f"SELECT {KEY} FROM read_parquet('{self.sides[table].staging}/*.parquet')"
        return None

    # ---- the interaction row --------------------------------------------------------------
    def interaction_features(self, con) -> tuple[list[str], str]:
        features, joins = [], []
        for c in self.context:
            if c.kind == "numeric":
                features.append(f"TRY_CAST({_clean(c.name)} AS DOUBLE)::FLOAT AS {c.name}")
            else:
                features.append(f"v_{c.name}.code AS {c.name}")
                joins.append(f"LEFT JOIN vocab_{c.name} AS v_{c.name} "
                             f"ON v_{c.name}.value = {_clean(c.name)}")
        return features, " ".join(joins)

    # ---- vocabularies and entity views -----------------------------------------------------
    def snapshots(self, con, tmp: Path, start_epoch: int, base: Base | None) -> None:
        self._dedupe_sides(con)
        (tmp / VOCABULARIES).mkdir()
        for c in self.columns:  # (an append reads no users / items table: its own stay)
            if c.kind == "categorical" and (c.table == "interactions" or c.table in self.sides):
                self._vocabulary(con, tmp, c, base)
        self.schema_ = base.schema.with_cardinalities(self.cardinality) if base \
            else self._schema()
        tables = self.schema_.tables()
        stamp = f"to_timestamp({start_epoch})"
        for table, (owner, key, raw) in ENTITY_TABLES.items():
            if table not in self.sides:
                continue
            for view in (f"{owner}_profile", f"{owner}_text"):
                cols = [c for c in self.columns if c.table == table and
                        (c.kind == "text") == view.endswith("_text")]
                if not cols:
                    continue
                values, joins = [], []
                for c in cols:
                    value, join = self._entity_value(c)
                    values.append(f"{value} AS {c.name}")
                    joins += [join] if join else []
                write_query(con, f"""
                    SELECT m.{key}, {stamp} AS {EVENT_TIMESTAMP}, {', '.join(values)}
                    FROM side_{table} AS s JOIN map_{key} AS m ON m.{raw} = s.{KEY}
                    {' '.join(joins)} ORDER BY m.{key}""",
                            tmp / view / "part-00000.parquet", tables[view])

    def _dedupe_sides(self, con) -> None:
        """A users / items table's first row of each ID is kept; later ones are quarantined."""
        for table, side in self.sides.items():
            con.execute(f"CREATE VIEW staged_{table} AS SELECT * FROM "
                        f"read_parquet('{side.staging}/*.parquet')")
            con.execute(f"""CREATE TABLE repeated_{table} AS SELECT {KEY}, min(row) AS first
                            FROM staged_{table} GROUP BY {KEY} HAVING count(*) > 1""")
            later = con.execute(f"""SELECT s.source, s.row, to_json(s) AS raw
                FROM staged_{table} s JOIN repeated_{table} r USING ({KEY})
                WHERE s.row > r.first ORDER BY s.row""")
            why = f"{ENTITY_TABLES[table][0]} id seen before in the table (its first row is kept)"
            for batch in later.fetch_record_batch(DUPLICATES_PER_BATCH):
                side.counts.reject(side.path.name, batch["row"],
                                   pa.repeat(why, batch.num_rows), batch["raw"].to_pylist())
            con.execute(f"""CREATE VIEW side_{table} AS SELECT s.* FROM staged_{table} s
                ANTI JOIN (SELECT s.{KEY}, s.row FROM staged_{table} s
                           JOIN repeated_{table} r USING ({KEY}) WHERE s.row > r.first) d
                USING ({KEY}, row)""")

    def _vocabulary(self, con, tmp: Path, c: Column, base: Base | None) -> None:
        """Codes by frequency (then value), saved; the cardinality and list sizes noted. With
        an append's base, its values keep their codes (their rows counted on); new follow."""
        source = "good" if c.table == "interactions" else f"side_{c.table}"
        if c.separator:
            split = f"string_split({_clean(c.name)}, '{_sql(c.separator)}')"
            values = f"SELECT trim(unnest({split})) AS value FROM {source}"
            longest = con.execute(f"SELECT max(len({split})) FROM {source}").fetchone()[0] or 1
            self.max_values[c.name] = min(longest, MAX_LIST_VALUES)
            self.cut_lists[c.name] = con.execute(
                f"SELECT count(*) FROM {source} WHERE len({split}) > "
                f"{MAX_LIST_VALUES}").fetchone()[0]
        else:
            values = f"SELECT {_clean(c.name)} AS value FROM {source}"
        counted = f"""SELECT value, count(*) AS rows FROM ({values})
                      WHERE value IS NOT NULL AND value <> '' GROUP BY value"""
        known, offset = "", 0
        if base:
            old = f"read_parquet('{base.vocabulary(c.name)}')"
            known = f"""SELECT o.value, o.code, o.rows + coalesce(n.rows, 0) AS rows
                        FROM {old} AS o LEFT JOIN ({counted}) AS n USING (value) UNION ALL """
            counted = f"SELECT n.* FROM ({counted}) AS n ANTI JOIN {old} AS o USING (value)"
            offset = pq.read_metadata(base.vocabulary(c.name)).num_rows
        con.execute(f"""CREATE TABLE vocab_{c.name} AS {known}
            SELECT value, {offset} + row_number() OVER (ORDER BY rows DESC, value) - 1 AS code,
                   rows
            FROM ({counted})""")
        con.execute(f"COPY (SELECT * FROM vocab_{c.name} ORDER BY code) TO "
                    f"'{tmp / VOCABULARIES / c.name}.parquet' (FORMAT parquet)")
        self.cardinality[c.name] = max(
            con.execute(f"SELECT count(*) FROM vocab_{c.name}").fetchone()[0], 1)

    def _entity_value(self, c: Column) -> tuple[str, str | None]:
        """SQL of a users / items feature over `side_<table> AS s`, and the JOIN it needs."""
        if c.kind == "numeric":
            return f"TRY_CAST({_clean(c.name, 's.')} AS DOUBLE)::FLOAT", None
        if c.kind == "text":
            return _clean(c.name, "s."), None
        if not c.separator:
            return f"v_{c.name}.code", (f"LEFT JOIN vocab_{c.name} AS v_{c.name} "
                                        f"ON v_{c.name}.value = {_clean(c.name, 's.')}")
        split = f"string_split({_clean(c.name)}, '{_sql(c.separator)}')"
        # a missing value: no codes (the loader reads an empty list as the unknown row)
        return f"coalesce(l_{c.name}.codes, []::BIGINT[])", f"""LEFT JOIN (
            SELECT {KEY}, list_slice(list(v.code ORDER BY pos), 1, {self.max_values[c.name]})
                       AS codes
            FROM (SELECT {KEY}, trim(unnest({split})) AS value,
                         generate_subscripts({split}, 1) AS pos FROM side_{c.table})
            JOIN vocab_{c.name} AS v USING (value) GROUP BY {KEY}) AS l_{c.name}
            ON l_{c.name}.{KEY} = s.{KEY}"""

    # ---- the schema ------------------------------------------------------------------------
    def schema(self) -> Schema:
        return self.schema_

    def _schema(self) -> Schema:
        scenarios = tuple(Scenario(code, name, round(n / max(sum(r for _, r in self.scenarios),
                                                          1), 4))
                          for code, (name, n) in enumerate(self.scenarios))
        feats = [*id_features(len(scenarios)),
                 *(self._feature(c, None) for c in self.context)]
        views = []
        for owner, table in (("user", "users"), ("item", "items")):
            for view, kinds, what in (
                    (f"{owner}_profile", ("categorical", "numeric"),
                     f"The {owner}s table's features"),
                    (f"{owner}_text", ("text",), f"The {owner}s table's text")):
                cols = [c for c in self.columns if c.table == table and c.kind in kinds]
                if cols:
                    views.append(View(view, owner, what))
                    feats += [self._feature(c, view) for c in cols]
            agg = replace(AGGREGATE_VIEWS[f"{owner}_agg"], ttl=AGGREGATE_TTL[f"{owner}_agg"])
            views.append(agg)
            feats += aggregate_features(agg.name, scenarios)
        views.append(replace(AGGREGATE_VIEWS["scenario_stats"],
                             ttl=AGGREGATE_TTL["scenario_stats"]))
        feats += aggregate_features("scenario_stats", scenarios)
        texts = tuple(f for f in feats if f.kind == "text")
        for owner in ("user", "item"):
            if any(f.owner == owner for f in texts):
                views.append(TEXT_VECTOR_VIEWS[owner])
        feats += text_vector_features(texts)
        views.append(RETRIEVAL_VIEW)  # a run's vectors: in no service
        feats += retrieval_features()
        views.append(replace(HISTORY_VIEW, ttl=HISTORY_TTL))
        feats += history_features()  # last: Schema.with_history replaces them
        names = [v.name for v in views if v != RETRIEVAL_VIEW]
        no_vectors = [n for n in names if not n.endswith("_vec") and n != HISTORY_VIEW.name]
        services = {"multi_scenario": tuple(n for n in no_vectors if not n.endswith("_text")),
                    "cold_start": tuple(n for n in no_vectors if n != "scenario_stats"),
                    "multi_modal": tuple(names)}
        entities = (Entity("user", USER_ID, "A user of the imported log"),
                    Entity("item", ITEM_ID, "An item of the imported log"),
                    Entity(SCENARIO, SCENARIO, "A scenario of the imported log"))
        assert [e.name for e in entities] == [e.name for e in ENTITIES]
        return Schema("imported", scenarios, entities, tuple(views), tuple(feats), services,
                      "multi_modal")

    def _feature(self, c: Column, view: str | None) -> Feature:
        what = f"column '{c.source}' of {c.path.name}"
        if c.kind == "numeric":
            return Feature(c.name, "numeric", c.owner, "float32", None, view, what,
                           scale=c.stats.scale())
        if c.kind == "text":
            return Feature(c.name, "text", c.owner, "string", None, view, what)
        return Feature(c.name, "categorical", c.owner,
                       "list<int64>" if c.separator else "int64", self.cardinality[c.name],
                       view, what, vocabulary=f"{VOCABULARIES}/{c.name}.parquet",
                       max_values=self.max_values.get(c.name))

    def describe(self) -> dict:
        return {"columns": [{**c.describe(),
                             **({"values": self.cardinality[c.name]}
                                if c.name in self.cardinality else {}),
                             **({"max_values": self.max_values[c.name],
                                 "rows_cut": self.cut_lists[c.name]}
                                if c.name in self.max_values else {})}
                            for c in self.columns + self.ignored],
                "tables": {t: {"file": str(s.path), "rows_read": s.counts.rows_read,
                               "quarantined": dict(sorted(s.counts.quarantined.items()))}
                           for t, s in self.sides.items()}}


def _clean(column: str, prefix: str = "") -> str:
    """SQL of a staged text value, trimmed, empty as NULL."""
    return f"nullif(trim({prefix}{column}), '')"


def _sql(text: str) -> str:
    return text.replace("'", "''")


def staged_side_schema(columns: list[Column]) -> pa.Schema:
    """A staged users / items row: source file, row number, raw ID, its columns as text."""
    return pa.schema([("source", pa.string()), ("row", pa.int64()), (KEY, pa.string())] +
                     [(c.name, pa.string()) for c in columns])
