"""Imported interactions -> the offline store the generator writes, shared by every importer.

An importer parses its input block by block into `Parsed` columns (a null where a value could
not be parsed) and hands each block to `Ingest.add`. Rows with a problem go to the quarantine
(`quarantine/part-*.parquet`: source file, row, reason, the raw fields as JSON); the rest are
staged as Parquet. `Ingest.finish` then builds every table with DuckDB, which spills to disk, so
memory stays bounded whatever the number of rows:
- raw user / item IDs -> rows 0..n-1 in order of first appearance (`id_maps/`);
- exact duplicate rows -> quarantine, the first one kept;
- interactions by day, with the features that ride with the row;
- the entity views (profiles, text): how they are made is the importer's `Tables`;
- the aggregate views, the metadata and the summary, as for generated data.
With a `Base` (`--append`, see data.append) the new rows extend the repo's store instead.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.aggregates import write_aggregates
from recsys.data.append import Base
from recsys.data.offline import ID_MAPS, QUARANTINE, table_files, write_query
from recsys.data.summary import summarize
from recsys.errors import DataError
from recsys.schema import EVENT_TIMESTAMP, INTERACTIONS, ITEM_ID, SCENARIO, TIMESTAMP_TYPE, \
    USER_ID, Schema
from recsys.antm2c import ANTM2C, DEEP_FEATURES, FEATURE_BY_NAME, SCENARIOS, TEXT_FIELDS

SCRATCH = ".scratch"  # staged rows, DuckDB's database and spill files: removed at the end
QUARANTINE_SCHEMA = pa.schema([("source", pa.string()), ("row", pa.int64()),
                               ("reason", pa.string()), ("raw", pa.string())])
KEYS = (("source", pa.string()), ("row", pa.int64()), ("raw_user", pa.string()),
        ("raw_item", pa.string()), ("ts", TIMESTAMP_TYPE), ("label", pa.int8()),
        (SCENARIO, pa.int64()))
ROW_KEY = ("source", "row")  # where a staged row came from; every other column is its content
DUCKDB_MEMORY = "1GB"
DUPLICATES_PER_BATCH = 100_000  # duplicates are quarantined a batch at a time


@dataclass
class Parsed:
    """One block of input rows, parsed. A null in user / item / ts / label / scenario marks a
    value that is missing or could not be parsed: the row is quarantined with that reason."""

    source: str
    row: pa.Array  # the row's number in its file (1 = the first data row)
    user: pa.Array
    item: pa.Array
    ts: pa.Array
    label: pa.Array
    scenario: pa.Array  # the scenario's code
    raw: pa.Table  # the input fields as read, for the quarantine
    extra: dict[str, pa.Array] = field(default_factory=dict)  # the staged columns, as text
    time_kinds: dict[str, int] = field(default_factory=dict)  # how the times were read


class Tables(Protocol):
    """What an importer adds to the shared frame: the staged columns beside the keys, the
    features of an interaction row, the entity views and the final schema."""

    staged: tuple[str, ...]  # columns staged as text with every row
    scenario_reason: str  # why a row whose scenario is null is quarantined

    def extra_ids(self, entity: str) -> str | None:
        """SQL of raw IDs (column `k`) that get rows after the log's own (entities known from
        elsewhere, such as a users table), or None."""

    def interaction_features(self, con) -> tuple[list[str], str]:
        """SELECT expressions of the row's features (over `joined`) and the JOINs they need."""

    def snapshots(self, con, tmp: Path, start_epoch: int, base: Base | None) -> None:
        """Write the entity views (every table but the interactions and the aggregates); with
        a base, only what the new rows add to them."""

    def schema(self) -> Schema:
        """The tables' facts (after `snapshots`, which may learn cardinalities)."""

    def describe(self) -> dict:
        """What the import adds to the metadata."""


class Counts:
    """Rows read and quarantined by reason, for the log or a users / items table."""

    def __init__(self, ingest: Ingest, table: str):
        self.ingest, self.table = ingest, table
        self.rows_read = 0
        self.quarantined: dict[str, int] = {}

    def count_read(self, n: int) -> None:
        """Rows the parser could not hand over as a block (they were rejected directly)."""
        self.rows_read += n

    def reject(self, source: str, rows, reasons, raw: pa.Table | list[str]) -> None:
        """Quarantine rows: `raw` is the rows' fields (a table) or their text (a list)."""
        if isinstance(raw, pa.Table):
            raw = [json.dumps(r, ensure_ascii=False, default=str) for r in raw.to_pylist()]
        reasons = pa.array(reasons, pa.string())
        table = pa.table({"source": pa.repeat(source, len(raw)),
                          "row": pa.array(rows, pa.int64()), "reason": reasons,
                          "raw": pa.array(raw, pa.string())})
        self.ingest.quarantine.write_table(table)
        for why, count in zip(*pc.value_counts(reasons).flatten()):
            self.quarantined[why.as_py()] = self.quarantined.get(why.as_py(), 0) + count.as_py()


class Ingest(Counts):
    def __init__(self, tmp: Path, tables: Tables, base: Base | None = None):
        self.tmp, self.tables, self.base = tmp, tables, base
        self.staging = tmp / SCRATCH / "staging"
        self.staging.mkdir(parents=True)
        (tmp / QUARANTINE).mkdir()
        part = base.quarantine_part() if base else "part-00000.parquet"
        self.quarantine = pq.ParquetWriter(tmp / QUARANTINE / part, QUARANTINE_SCHEMA)
        super().__init__(self, INTERACTIONS)
        self.parts = 0
        self.time_kinds: dict[str, int] = {}
        self.staged_schema = pa.schema(list(KEYS) + [(c, pa.string()) for c in tables.staged])
        # (column of Parsed, reason when it is null), checked in this order
        self.reasons = (("user", "empty user id"), ("item", "empty item id"),
                        ("ts", "unparseable time"), ("label", "label not 0/1"),
                        (SCENARIO, tables.scenario_reason))

    # ---- per block ------------------------------------------------------------------------
    def add(self, block: Parsed) -> None:
        n = len(block.row)
        self.rows_read += n
        for kind, count in block.time_kinds.items():
            self.time_kinds[kind] = self.time_kinds.get(kind, 0) + count
        reason = pa.nulls(n, pa.string())
        for column, why in reversed(self.reasons):  # the first failing check wins
            reason = pc.if_else(pc.is_null(getattr(block, column)), why, reason)
        bad = pc.is_valid(reason)
        if pc.any(bad).as_py():
            self.reject(block.source, pc.filter(block.row, bad), pc.filter(reason, bad),
                        block.raw.filter(bad))
        good = pc.invert(bad)
        columns = {"source": pa.array([block.source] * n, pa.string()), "row": block.row,
                   "raw_user": block.user, "raw_item": block.item, "ts": block.ts,
                   "label": block.label, SCENARIO: block.scenario}
        for name in self.tables.staged:
            columns[name] = block.extra.get(name, pa.nulls(n, pa.string()))
        staged = pa.table(columns).cast(self.staged_schema).filter(good)
        if staged.num_rows:
            pq.write_table(staged, self.staging / f"part-{self.parts:05d}.parquet")
            self.parts += 1

    # ---- at the end -----------------------------------------------------------------------
    def finish(self, info: dict) -> tuple[dict, Schema]:
        """Write every table of the offline store into tmp; return its metadata and schema."""
        scratch = self.tmp / SCRATCH
        con = duckdb.connect(str(scratch / "import.duckdb"))
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
        # a fixed budget, whatever the machine: beyond it DuckDB spills to the temp directory
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        con.execute("SET preserve_insertion_order = false")
        if not self.parts:
            raise DataError(f"no usable row in {', '.join(info['files'])}: every row was "
                            f"quarantined ({self._reasons()}); fix the input")
        con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet('{self.staging}/*.parquet')")
        self._drop_duplicates(con)
        per_day = con.execute("SELECT ts::DATE, count(*) FROM good GROUP BY 1 ORDER BY 1"
                              ).fetchall()
        days = [day for day, _ in per_day]
        base = self.base
        replaced = base.check_days(days, info["files"]) if base else []
        start = datetime.fromtimestamp(base.start_epoch, timezone.utc) if base else \
            datetime(days[0].year, days[0].month, days[0].day, tzinfo=timezone.utc)
        start_epoch = int(start.timestamp())
        last = max([days[-1], *(base.days()[-1:] if base else [])])
        n_days = (last - start.date()).days + 1
        counts = self._id_maps(con)
        self.tables.snapshots(con, self.tmp, start_epoch, base)
        schema = self.tables.schema()
        self._interactions(con, schema, per_day, base.next_request_id(con) if base else 0)
        imported = sum(n for _, n in per_day)
        self.quarantine.close()
        con.close()
        shutil.rmtree(scratch)
        if base:
            base.link_into(self.tmp, replaced)
        write_aggregates(self.tmp, start_epoch, n_days, schema)
        n_rows = sum(pq.read_metadata(p).num_rows for p in table_files(self.tmp, INTERACTIONS))
        meta = {"preset": f"import-{info['format']}", "seed": None, **counts,
                "n_rows": n_rows, "n_days": n_days, "start": start.isoformat(),
                "start_epoch": start_epoch,
                "import": {**info, "rows_read": self.rows_read, "imported": imported,
                           "times_read_as": self.time_kinds,
                           "quarantined": dict(sorted(self.quarantined.items())),
                           **self.tables.describe()}}
        if base:
            meta = base.record(meta, days, replaced)
        meta["summary"] = summarize(self.tmp, meta, schema.scenario_names)
        return meta, schema

    def _reasons(self) -> str:
        return ", ".join(f"{n:,} {why}" for why, n in self.quarantined.items()) or "none read"

    def _drop_duplicates(self, con) -> None:
        """Exact duplicates (every field equal, the time included) are found by a 64-bit hash
        of the fields. A grouping with a fixed-size state (which DuckDB spills) finds the
        hashes seen more than once; only those rows are ranked to keep the first."""
        fields = ", ".join(f'"{c}"' for c in self.staged_schema.names if c not in ROW_KEY)
        con.execute(f"""CREATE TABLE repeated AS SELECT hash({fields}) AS h FROM staged
                        GROUP BY h HAVING count(*) > 1""")
        con.execute(f"""CREATE TABLE dupes AS SELECT source, row FROM (
                            SELECT source, row, row_number() OVER (
                                PARTITION BY h ORDER BY source, row) AS copy
                            FROM (SELECT source, row, hash({fields}) AS h FROM staged)
                            SEMI JOIN repeated USING (h)) WHERE copy > 1""")
        copies = con.execute("SELECT source, row, to_json(s) AS raw FROM staged s SEMI JOIN "
                             "dupes USING (source, row) ORDER BY source, row")
        for batch in copies.fetch_record_batch(DUPLICATES_PER_BATCH):
            for source in pc.unique(batch["source"]).to_pylist():
                part = batch.filter(pc.equal(batch["source"], source))
                self.reject(source, part["row"],
                            pa.repeat("duplicate of an earlier row", part.num_rows), part["raw"])
        con.execute("CREATE TABLE good AS SELECT * FROM staged ANTI JOIN dupes USING (source, row)")
        con.execute("DROP TABLE dupes; DROP TABLE repeated; DROP VIEW staged")

    def _id_maps(self, con) -> dict:
        """Raw IDs -> rows, in order of first appearance; with a base, its IDs keep their
        rows and the new ones follow."""
        (self.tmp / ID_MAPS).mkdir()
        counts = {}
        for entity, raw in ((USER_ID, "raw_user"), (ITEM_ID, "raw_item")):
            ids = f"SELECT {raw}, min(ts) AS first FROM good GROUP BY {raw}"
            if extra := self.tables.extra_ids(entity):  # after the log's, by raw ID
                ids += (f" UNION ALL SELECT DISTINCT e.k, NULL FROM ({extra}) AS e ANTI JOIN "
                        f"(SELECT DISTINCT {raw} FROM good) AS g ON e.k = g.{raw}")
            known, offset = "", 0
            if self.base:
                old = self.base.id_map(entity)
                ids = f"SELECT * FROM ({ids}) AS n ANTI JOIN {old} AS b ON b.raw_id = n.{raw}"
                known = f"SELECT raw_id AS {raw}, {entity} FROM {old} UNION ALL "
                offset = self.base.n_ids(entity)
            con.execute(f"""CREATE TABLE map_{entity} AS {known} SELECT {raw},
                                {offset} + row_number() OVER (
                                    ORDER BY first NULLS LAST, {raw}) - 1 AS {entity}
                            FROM ({ids})""")
            con.execute(f"COPY (SELECT {raw} AS raw_id, {entity} FROM map_{entity} ORDER BY "
                        f"{entity}) TO '{self.tmp / ID_MAPS / entity}.parquet' (FORMAT parquet)")
            counts[f"n_{entity.removesuffix('_id')}s"] = \
                con.execute(f"SELECT count(*) FROM map_{entity}").fetchone()[0]
        con.execute("""CREATE VIEW joined AS SELECT * FROM good
                       JOIN map_user_id USING (raw_user) JOIN map_item_id USING (raw_item)""")
        return counts

    def _interactions(self, con, schema: Schema, per_day: list, first_id: int) -> None:
        """The log's rows, a folder a day (`per_day`: (day, rows) in order); request ids from
        `first_id` on."""
        features, joins = self.tables.interaction_features(con)
        columns = schema.interaction_schema()
        # request ids follow time: a day's ids start after the earlier days' rows, so each
        # day is numbered on its own (no window over every row, which DuckDB would not spill)
        first_ids = itertools.accumulate((n for _, n in per_day), initial=first_id)
        for (day, _), first_id in zip(per_day, first_ids):
            write_query(con, f"""
                SELECT {first_id} + row_number() OVER (ORDER BY ts, source, row) - 1
                           AS request_id, ts AS {EVENT_TIMESTAMP}, user_id, item_id, scenario,
                       {''.join(f'{f}, ' for f in features)}label, NULL::FLOAT AS p_true
                FROM joined {joins} WHERE ts::DATE = DATE '{day}' ORDER BY request_id""",
                self.tmp / INTERACTIONS / f"day={day.isoformat()}" / "part-00000.parquet",
                columns)


class AntM2CTables:
    """The public AntM2C release: its deep features ride with the row, its texts give one
    snapshot per distinct text of a user / item, and the profiles are unknown."""

    staged = (*DEEP_FEATURES, *TEXT_FIELDS)
    scenario_reason = f"scenario not in 0..{len(SCENARIOS) - 1}"

    def extra_ids(self, entity: str) -> None:
        return None

    def interaction_features(self, con) -> tuple[list[str], str]:
        deep = []
        for name in DEEP_FEATURES:
            value = f"nullif(trim({name}), '')"
            card = FEATURE_BY_NAME[name].cardinality
            if card is None:
                deep.append(f"TRY_CAST({value} AS FLOAT) AS {name}")
            else:  # codes already in range are kept; any other value is hashed into range
                deep.append(f"""CASE WHEN {value} IS NULL THEN NULL
                    WHEN TRY_CAST({value} AS BIGINT) BETWEEN 0 AND {card - 1}
                        THEN TRY_CAST({value} AS BIGINT)
                    ELSE CAST(hash({value}) % {card} AS BIGINT) END AS {name}""")
        return deep, ""

    def snapshots(self, con, tmp: Path, start_epoch: int, base: Base | None) -> None:
        tables = ANTM2C.tables()
        for view, key in (("user_profile", USER_ID), ("item_profile", ITEM_ID),
                          ("user_text", USER_ID), ("item_text", ITEM_ID)):
            names = [f.name for f in ANTM2C.view_features(view)]
            if view.endswith("profile"):  # first appearance, no profile known
                new = f"WHERE {key} >= {base.n_ids(key)}" if base else ""  # new IDs follow
                sql = f"""SELECT {key}, min(ts) AS {EVENT_TIMESTAMP},
                              {', '.join(f'NULL AS {n}' for n in names)}
                          FROM joined {new} GROUP BY {key} ORDER BY {key}"""
            else:  # each distinct text, stamped at its first appearance
                sql = f"""SELECT {key}, min(ts) AS {EVENT_TIMESTAMP}, {', '.join(names)}
                          FROM joined GROUP BY {key}, {', '.join(names)}"""
                if base:  # a text the base holds keeps its first stamp
                    same = " AND ".join(f"t.{n} IS NOT DISTINCT FROM b.{n}" for n in names)
                    sql = f"""SELECT t.* FROM ({sql}) AS t ANTI JOIN {base.table(view)} AS b
                              ON b.{key} = t.{key} AND {same}"""
                sql += f" ORDER BY {key}, {EVENT_TIMESTAMP}"
            part = base.next_part(view) if base else "part-00000.parquet"
            write_query(con, sql, tmp / view / part, tables[view])

    def schema(self) -> Schema:
        return ANTM2C

    def describe(self) -> dict:
        return {}
