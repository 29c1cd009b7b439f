"""`recsys build-dataset`: point-in-time training sets from the feature repo, out of core.

The interaction log is cut into partitions that fit a memory budget: runs of whole days, and a
day still too large for the budget is cut further into buckets of a hash of the user ID. Each
partition's rows are the entity rows of one Feast `get_historical_features` call (the
point-in-time join), then flagged zero-shot / few-shot, cut by split (see data.split; a
partition may hold rows of several) and written, sorted by time, to
<out>/<split>/part-NNNNN.parquet through a temporary name. The partitions are built inside a
hidden `.NAME.partial` folder, so a killed build resumes where it stopped, and the finished
dataset replaces <out> in one rename.

Engines: `duckdb` (Feast's DuckDB offline store, one machine, under the budget; DuckDB spills
beyond it) and `spark` (Feast's Spark offline store: local mode here, a cluster by config).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data import vectors
from recsys.data.offline import RepoMeta, connect, offline_dir, read_repo_meta, read_schema, \
    table_files, validate_offline_store
from recsys.dataset import logged
from recsys.dataset.history_join import ROW, HistoryJoin
from recsys.dataset.meta import DATASET_META
from recsys.data.split import DAY_US, SPLITS, Split, SplitSpec, Window, choose_split, \
    train_counts_sql, with_cold_start_flags
from recsys.errors import UsageError
from recsys.features.feature_store import feature_service, open_store
from recsys.memory import DEFAULT_MEMORY_GB, GiB, check_fits, machine_memory
from recsys.schema import EVENT_TIMESTAMP, HISTORY_ORDER, HISTORY_VIEW, INTERACTIONS, ITEM_ID, \
    LABEL, REQUEST_ID, USER_ID, Schema
from recsys.files import check_output_free, resumable_dir, write_parquet

ENGINES = ("duckdb", "spark")
WINDOW = "window_rows"  # the build's rows: the interactions inside --from / --to
# Bytes a partition's row costs at the peak, as a multiple of its width in Parquet. Feast's
# join in DuckDB, which gets half the budget, spills little, and pairs each row with every
# earlier row of its entity in each view before keeping the latest; the other half holds the
# entity frame, the Arrow result and the flagged, sorted copy. Measured on `small`'s
# multi_scenario service (134 bytes a row): under 1.5 GB, 500k rows a partition ran out of
# memory, 300k peaked at 1.43 GiB; under 1 GB, 200k peaked at 0.98 GiB: 40 x the width.
ROW_COST = 40
# The user's history is not joined by Feast: its join pairs each row with every earlier history
# row of its user before keeping the latest, each carrying the lists (on `small` that spilled
# past 40 GB). DuckDB's ASOF join takes the latest directly; its bytes a row, as a multiple of
# the history's width: the joined lists, the row's copy and the sorted copy
HISTORY_COST = 4
MIN_MEMORY_GB = 0.5  # below this Feast's join of the ten views does not run

ROW_GROUP_ROWS = 65_536  # the loader's unit of reading and of sharing among ranks
_DAY_FOLDER = re.compile(r"day=(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Partition:
    """The log's rows with event times in [start, end) (µs) and, when `buckets` > 1,
    hash(user_id) % buckets == bucket; `rows` of them per split that has any."""

    start: int
    end: int
    bucket: int
    buckets: int
    rows: dict[str, int]

    def where(self) -> str:
        cond = (f"epoch_us({EVENT_TIMESTAMP}) >= {self.start} AND "
                f"epoch_us({EVENT_TIMESTAMP}) < {self.end}")
        if self.buckets > 1:
            cond += f" AND hash(user_id) % {self.buckets} = {self.bucket}"
        return cond

    def paths(self, root: Path, index: int) -> dict[str, Path]:
        """Where each split's rows of partition `index` go."""
        return {s: root / s / f"part-{index:05d}.parquet" for s in self.rows}


def default_out(repo: Path, meta: RepoMeta | None = None) -> Path:
    return Path("datasets") / (meta or read_repo_meta(repo)).preset


def build_dataset(repo: Path, out: Path | None = None, force: bool = False,
                  service_name: str | None = None, progress: bool = True,
                  memory_gb: float = DEFAULT_MEMORY_GB, engine: str = "duckdb",
                  partition_rows: int | None = None,
                  split_spec: SplitSpec = SplitSpec(), window: Window = Window(),
                  features: str = "joined") -> dict:
    """`service_name`: the feature service to join (default: the repo schema's default).
    `features`: joined point in time, or "logged": the served impressions with the features
    the serving model saw (dataset.logged).
    `partition_rows`: the most rows one join takes (default: what `memory_gb` allows).
    `split_spec`: how validation and test are cut off (see data.split). `window`: the days
    whose rows to build (default: all); their history still reaches back before it."""
    meta = read_repo_meta(repo)  # checks the repo first
    split_spec.check()
    repo_schema = read_schema(repo)
    service_name = repo_schema.default_service if service_name is None else service_name
    if features not in logged.SOURCES:
        raise UsageError(f"features {features!r}: unknown; choose one of "
                         f"{', '.join(logged.SOURCES)}", fields="features")
    if engine not in ENGINES:
        raise UsageError(f"engine {engine!r}: unknown; choose one of {', '.join(ENGINES)}",
                         fields="engine")
    if not memory_gb >= MIN_MEMORY_GB:
        raise UsageError(f"memory_gb {memory_gb}: the join needs at least {MIN_MEMORY_GB} "
                         f"GB; pass a larger budget", fields="memory_gb")
    check_fits(f"memory_gb {memory_gb}", int(memory_gb * GiB), machine_memory(),
               "memory on this machine", "pass a smaller memory_gb", fields="memory_gb")
    if partition_rows is not None and partition_rows < 1:
        raise UsageError(f"partition_rows {partition_rows}: must be at least 1",
                         fields="partition_rows")
    offline = offline_dir(repo)
    validate_offline_store(offline, repo_schema, meta)
    out = out or default_out(repo, meta)
    check_output_free(out, force)
    store = open_store(repo)
    service = feature_service(store, repo, service_name, repo_schema)
    schema = repo_schema.dataset_schema(service_name)

    budget = int(memory_gb * GiB)  # half to Feast's DuckDB, a quarter to ours
    spill = out.parent / f".{out.name}.spill"  # DuckDB's, removed at the end
    spill.parent.mkdir(parents=True, exist_ok=True)
    con = connect(offline, meta.start_epoch, memory_bytes=budget // 4, spill=spill)
    rows = f"(SELECT * FROM {INTERACTIONS} WHERE {window.where()})"
    if features == "logged":
        in_log = logged.stage(con, repo, spill / "served")
        rows = f"({logged.served_only(rows)})"
    con.execute(f"CREATE TEMP VIEW {WINDOW} AS SELECT * FROM {rows}")
    _check_window(con, window)
    split = choose_split(con, WINDOW, spec=split_spec)
    views = repo_schema.services[service_name]
    history = HISTORY_VIEW.name in views and features == "joined"  # logged: as served
    width = ROW_COST * row_width(offline, tuple(v for v in views if v != HISTORY_VIEW.name)) + \
        HISTORY_COST * (table_width(offline, HISTORY_VIEW.name) if history else 0)
    max_rows = partition_rows or max(1, budget // width)
    partitions = plan_partitions(con, split, max_rows, WINDOW, window)
    plan = {"engine": engine, "features": features, "feature_service": service_name,
            "split": asdict(split),
            "offline": _fingerprint(offline), "partitions": [asdict(p) for p in partitions]}
    join = _joiner(engine, repo, store, service, budget // 2, spill) if features == "joined" \
        else logged.joiner(con, in_log, _keys(repo_schema), schema,
                           repo_schema.tables()[INTERACTIONS].names)
    ttl = next(v.ttl for v in repo_schema.views if v.name == HISTORY_VIEW.name) \
        if history else None
    try:
        with resumable_dir(out, force, plan) as tmp:
            info = _build(con, tmp, offline, split, partitions, join, repo_schema, schema,
                          progress, ttl, spill)
            info.update(_describe(meta, repo, repo_schema, service_name, split, partitions,
                                  memory_gb, engine, max_rows), window=window.to_json(),
                        features=features)
            (tmp / DATASET_META).write_text(json.dumps(info, indent=2))
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return info


def _build(con, tmp: Path, offline: Path, split: Split, partitions: list[Partition], join,
           repo_schema: Schema, schema: pa.Schema, progress: bool,
           history_ttl: timedelta | None = None, spill: Path | None = None) -> dict:
    """Write every partition not written yet; return the dataset's columns and vector sizes.
    `schema`: the dataset's Arrow schema (of `repo_schema`'s service); `history_ttl`: the
    history view's, when the service reads it; `spill`: the build's folder for what does not
    stay in memory."""
    keys = _keys(repo_schema)
    history = HistoryJoin(con, offline, history_ttl, repo_schema, spill) \
        if history_ttl else None
    dictionary = _dictionary_columns(repo_schema, schema)
    con.execute(f"CREATE TEMP TABLE tu AS {train_counts_sql(INTERACTIONS, split, USER_ID)}")
    con.execute(f"CREATE TEMP TABLE ti AS {train_counts_sql(INTERACTIONS, split, ITEM_ID)}")
    files = _interaction_files(offline)
    # one partition is written in the background while the next one is joined
    with ThreadPoolExecutor(1, thread_name_prefix="build-writer") as writer:
        writing = None
        for i, part in enumerate(tqdm(partitions, desc="point-in-time join", unit="part",
                                      disable=not progress)):
            paths = part.paths(tmp, i)
            if all(p.exists() for p in paths.values()):  # written before a kill: resume after
                continue
            try:
                table = _build_partition(con, files, part, split, join, keys, history)
            except duckdb.OutOfMemoryException:
                raise UsageError(f"the point-in-time join of partition {i} "
                                 f"({sum(part.rows.values()):,} rows) ran out of memory: pass "
                                 f"a larger memory_gb or a smaller partition_rows (the "
                                 f"partitions written so far are kept)",
                                 fields=("memory_gb", "partition_rows")) from None
            if writing is not None:
                writing.result()  # raises the writer's error, if any
            writing = writer.submit(_write_splits, table, paths, schema, dictionary)
        if writing is not None:
            writing.result()
    vector_dims = {f.name: 0 for f in schema if pa.types.is_list(f.type)}
    for name in vector_dims:  # size of each vector feature (0 while text is not encoded)
        for path in sorted(tmp.glob("*/part-*.parquet")):
            if dim := vectors.dim_of(pq.read_table(path, columns=[name])[name]):
                vector_dims[name] = dim
                break
    return {"columns": schema.names, "vector_dims": vector_dims}


def _keys(repo_schema: Schema) -> list[str]:
    """A row's keys in a join: its request ID, its time and its entities' join keys."""
    return [REQUEST_ID, EVENT_TIMESTAMP, *(e.join_key for e in repo_schema.entities)]


def plan_partitions(con, split: Split, max_rows: int, rows: str = INTERACTIONS,
                    window: Window = Window()) -> list[Partition]:
    """Runs of whole days of the relation `rows` up to `max_rows` rows each, in time order; a
    day above `max_rows` becomes hash buckets of about `max_rows` rows. A partition's span
    ends where `window` does (a window of instants, as `recsys follow` builds, is not days)."""

    def span(start: int, end: int) -> tuple[int, int]:
        return (start if window.start is None else max(start, window.start),
                end if window.end is None else min(end, window.end))

    per_day: dict[int, dict[str, int]] = {}  # one entry per day with rows
    for day, name, n in con.execute(f"""
            SELECT epoch_us({EVENT_TIMESTAMP}) // {DAY_US} AS day, {split.of()} AS split,
                   count(*) AS n
            FROM {rows} GROUP BY ALL ORDER BY day""").fetchall():
        per_day.setdefault(day, {})[name] = n
    parts: list[Partition] = []
    run: list[int] = []

    def close_run():
        if run:
            rows = {s: sum(per_day[d].get(s, 0) for d in run) for s in SPLITS}
            parts.append(Partition(*span(run[0] * DAY_US, (run[-1] + 1) * DAY_US), 0, 1,
                                   {s: n for s, n in rows.items() if n}))
            run.clear()

    run_rows = 0
    for day, counts in per_day.items():
        n = sum(counts.values())
        if run and run_rows + n > max_rows:
            close_run()
            run_rows = 0
        if n <= max_rows:
            run.append(day)
            run_rows += n
            continue
        buckets = math.ceil(n / max_rows)
        start, end = span(day * DAY_US, (day + 1) * DAY_US)
        by_bucket: dict[int, dict[str, int]] = {}
        for b, name, k in con.execute(f"""
                SELECT hash(user_id) % {buckets} AS b, {split.of()} AS split, count(*)
                FROM {rows}
                WHERE epoch_us({EVENT_TIMESTAMP}) >= {start}
                  AND epoch_us({EVENT_TIMESTAMP}) < {end} GROUP BY ALL ORDER BY b""").fetchall():
            by_bucket.setdefault(b, {})[name] = k
        parts += [Partition(start, end, b, buckets, rows) for b, rows in by_bucket.items()]
    close_run()
    return parts


def _check_window(con, window: Window) -> None:
    """A window must hold rows: refused naming the log's days otherwise."""
    if window.whole or con.execute(f"SELECT count(*) FROM {WINDOW}").fetchone()[0]:
        return
    first, last = con.execute(f"SELECT min({EVENT_TIMESTAMP})::DATE, max({EVENT_TIMESTAMP})"
                              f"::DATE FROM {INTERACTIONS}").fetchone()
    shown = window.to_json()
    raise UsageError(f"--from {shown['from']} --to {shown['to']}: no "
                     f"rows in that window; the log has rows from {first} to {last}",
                     fields=("from", "to"))


def row_width(offline: Path, views: tuple[str, ...]) -> int:
    """Bytes of one training row, from the Parquet footers: an interaction row plus a row of
    each of `views` (uncompressed sizes)."""
    return max(sum(table_width(offline, t) for t in (INTERACTIONS, *views)), 64)


def table_width(offline: Path, table: str) -> int:
    """Uncompressed bytes of one row of a table, from its Parquet footers."""
    size = rows = 0
    for f in table_files(offline, table):
        md = pq.ParquetFile(f).metadata
        rows += md.num_rows
        size += sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
    return size // rows if rows else 0


def _fingerprint(offline: Path) -> list:
    """What the build read: a changed offline store makes a partial build start afresh."""
    return sorted([str(p.relative_to(offline)), p.stat().st_size, p.stat().st_mtime_ns]
                  for p in offline.rglob("*.parquet"))


def _interaction_files(offline: Path) -> dict[int, list[str]]:
    """The interaction log's Parquet files by day number (its `day=YYYY-MM-DD` folders); -1
    holds every file, for logs laid out otherwise."""
    by_day: dict[int, list[str]] = {-1: []}
    for f in table_files(offline, INTERACTIONS):
        by_day[-1].append(str(f))
        if m := _DAY_FOLDER.search(f.parent.name):
            day = date(*map(int, m.groups())).toordinal() - date(1970, 1, 1).toordinal()
            by_day.setdefault(day, []).append(str(f))
    return by_day


def _build_partition(con, files: dict[int, list[str]], part: Partition, split: Split,
                     join, keys: list[str], history: HistoryJoin | None = None) -> pa.Table:
    """The partition's rows with their features and flags and a `split` column, in time
    order. `keys`: the request ID, the event time and the entities' join keys; `history`:
    the user's history as of each row, when the service reads it."""
    days = range(part.start // DAY_US, (part.end - 1) // DAY_US + 1)
    chosen = [f for d in days for f in files.get(d, [])]
    if sum(len(v) for k, v in files.items() if k >= 0) != len(files[-1]):
        chosen = files[-1]  # some file outside a day folder: read them all
    rows = (f"(SELECT * FROM read_parquet({chosen!r}, hive_partitioning = false) "
            f"WHERE {part.where()})")
    # joined back on the row's number (ROW), not its request ID
    con.execute(f"CREATE OR REPLACE TEMP TABLE part AS SELECT *, row_number() OVER () AS "
                f"{ROW} FROM ({with_cold_start_flags(rows, 'tu', 'ti')})")
    entity = con.execute(f"SELECT {ROW}, {', '.join(keys)} FROM part").fetch_arrow_table()
    joined = join(entity)
    con.register("joined", joined)
    lists, pit = (history.columns(), history.clause(part.start, part.end)) if history \
        else ("", "")
    table = con.execute(f"""
        SELECT part.* EXCLUDE ({ROW}), joined.* EXCLUDE ({ROW}, {', '.join(keys)}){lists},
               {split.of(f"epoch_us(part.{EVENT_TIMESTAMP})")} AS split
        FROM part JOIN joined USING ({ROW}){pit}
        ORDER BY {', '.join(f'part.{c}' for c in HISTORY_ORDER)}""").fetch_arrow_table()
    con.unregister("joined")
    con.execute("DROP TABLE part")
    return table


def _write_splits(table: pa.Table, paths: dict[str, Path], schema: pa.Schema,
                  dictionary: list[str]) -> None:
    """Each split's rows of a partition to its own file (order kept). The rows are in time
    order and a split is a range of time, so each split's rows are one slice of the table:
    no filtered copy of a wide table."""
    counts = pc.value_counts(table["split"])
    rows = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
    start = 0
    for name in SPLITS:
        if not rows.get(name):
            continue
        part = table.slice(start, rows[name])
        start += rows[name]
        if not pc.all(pc.equal(part["split"], name)).as_py():  # the time order was broken
            raise RuntimeError(f"partition rows are not in time order ({paths[name]})")
        paths[name].parent.mkdir(exist_ok=True)
        write_parquet(_conform(part, schema), paths[name], ROW_GROUP_ROWS,
                      dictionary=dictionary)


def _dictionary_columns(repo_schema: Schema, schema: pa.Schema) -> list[str]:
    """The columns worth a Parquet dictionary: categorical and text features and the label,
    few distinct values each. For IDs, times and numbers pyarrow would build a dictionary and
    give it up, which doubled the time to write a partition and to read it back."""
    kinds = {f.name: f.kind for f in repo_schema.features}
    return [n for n in schema.names if n == LABEL or kinds.get(n) in ("categorical", "text")]


def _joiner(engine: str, repo: Path, store, service, memory_bytes: int, spill: Path):
    """entity rows (Arrow) -> the same rows with the service's features as of their time, but
    the user's history (see HISTORY_COST)."""
    views = [p for p in service.feature_view_projections if p.name != HISTORY_VIEW.name]
    if engine == "spark":
        from recsys.features.spark import spark_joiner

        return spark_joiner(repo, store, views)
    from recsys.features.feature_store import feast_duckdb

    refs = [f"{p.name}:{f.name}" for p in views for f in p.features]

    def join(entity: pa.Table) -> pa.Table:
        with feast_duckdb(memory_bytes, spill):
            return store.get_historical_features(entity_df=entity.to_pandas(),
                                                 features=refs).to_arrow()

    return join


def _describe(meta: RepoMeta, repo: Path, repo_schema: Schema, service_name: str, split: Split,
              partitions: list[Partition], memory_gb: float, engine: str,
              max_rows: int) -> dict:
    rows = {s: sum(p.rows.get(s, 0) for p in partitions) for s in SPLITS}
    return {"preset": meta.preset, "seed": meta.seed, "repo": str(repo.resolve()),
            "origin": meta.origin(),  # a server checks the repo still holds this data
            "feature_service": service_name, "schema": repo_schema.to_json(),
            "n_users": meta.n_users, "n_items": meta.n_items, "n_days": meta.n_days,
            "split": split.to_json(),
            "splits": {s: {"rows": rows[s],
                           "parts": sum(s in p.rows for p in partitions)} for s in SPLITS},
            "build": {"engine": engine, "memory_gb": memory_gb,
                      "partitions": len(partitions), "partition_rows": max_rows,
                      "hash_partitioned": sum(p.buckets > 1 for p in partitions)}}


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast to the dataset schema (a feature absent for a whole partition comes
    back from the join untyped)."""
    def column(f: pa.Field):
        if f.name not in table.column_names:  # a logged build's column the model did not read
            return pa.nulls(len(table), f.type)
        col = table[f.name]
        return pa.nulls(len(col), f.type) if col.null_count == len(col) else col.cast(f.type)

    return pa.table([column(f) for f in schema], schema=schema)
