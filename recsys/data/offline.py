"""The offline store inside a feature repo: where each table lives, its metadata, validation
against the schema, and a DuckDB connection with one view per table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import DataError, RepoError
from recsys.memory import duckdb_limit
from recsys.schema import INTERACTIONS, OFFLINE_DIR, SCHEMA_FILE, Schema
from recsys.files import read_json, read_yaml

PROJECT = "recsys"
REPO_META = "meta.json"
# folders of the offline store that are not feature tables
QUARANTINE, ID_MAPS, VOCABULARIES = "quarantine", "id_maps", "vocabularies"


def check_repo(repo: Path) -> Path:
    """The path of a recsys Feast repo, or a RepoError saying what is wrong with it."""
    hint = "pass the recsys feature_repo/ folder as repo"
    if not repo.is_dir():
        raise RepoError(f"'{repo}' not found: {hint}", fields="repo")
    config = repo / "feature_store.yaml"
    if not config.is_file():
        raise RepoError(f"'{repo}' is not a Feast feature repository (no feature_store.yaml): "
                        f"{hint}",
                        fields="repo")
    project = (read_yaml(config, "fix or restore it") or {}).get("project")
    if project != PROJECT:
        raise RepoError(f"{config} belongs to Feast project '{project}', not '{PROJECT}': {hint}",
                        fields="repo")
    return repo


def read_schema(repo: Path) -> Schema:
    """The (checked) repo's schema.yaml, written with its data by generate / import."""
    return Schema.load(check_repo(repo) / SCHEMA_FILE)


def offline_dir(repo: Path) -> Path:
    return repo / OFFLINE_DIR


def write_empty(offline: Path, table: str, columns: pa.Schema) -> None:
    """A table with no rows, so Feast and the validator find every view's source."""
    path = offline / table / "part-00000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(columns.empty_table(), path)


def write_query(con: duckdb.DuckDBPyConnection, sql: str, path: Path,
                schema: pa.Schema, row_group_rows: int | None = None) -> None:
    """Stream a query's result into one Parquet file of the given schema (row groups of at
    most `row_group_rows` rows, or pyarrow's default). DuckDB hands the rows over a row group
    at a time where one is given: its batches live outside its memory budget (its default
    batch, a million rows, held a user history's lists at ~1 GiB, twice over with the cast)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = con.execute(sql)
    batches = result.fetch_record_batch(row_group_rows) if row_group_rows else \
        result.fetch_record_batch()
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            writer.write_table(pa.Table.from_batches([batch]).cast(schema), row_group_rows)


def table_files(offline: Path, table: str) -> list[Path]:
    """A table's Parquet parts (interactions are partitioned by day)."""
    return sorted((offline / table).glob(_PATTERN[table == INTERACTIONS]))


def table_glob(offline: Path, table: str) -> str:
    return str(offline / table / _PATTERN[table == INTERACTIONS])


_PATTERN = {True: "day=*/*.parquet", False: "*.parquet"}


@dataclass(frozen=True)
class RepoMeta:
    """A repo's offline store's meta.json (generate and import write it), read through one
    type: the log's size and first instant, where it came from, and the record as written."""

    start_epoch: int  # the log's first day, seconds since the epoch: day indexes count from it
    n_users: int
    n_items: int
    n_rows: int
    n_days: int
    preset: str  # a generator preset, or "import-<format>"
    seed: int | None  # the generator's (None: imported data)
    world: dict | None  # the generated world's size (its days may exceed those held)
    imported: dict | None  # the import's record (None: generated data)
    raw: dict = field(compare=False, repr=False)  # the file as written

    def origin(self) -> dict:
        """What the data is, unchanged by appending days: the world (preset, seed) or the first
        import's record, and the first instant. Another origin: the data was replaced."""
        first = (self.raw.get("imports") or [self.imported])[0] if self.imported else None
        return {"preset": self.preset, "seed": self.seed, "start_epoch": self.start_epoch,
                "first_import": None if first is None else
                {k: first.get(k) for k in ("files", "rows_read")}}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "RepoMeta":
        try:
            return cls(int(data["start_epoch"]), int(data["n_users"]), int(data["n_items"]),
                       int(data["n_rows"]), int(data["n_days"]), str(data["preset"]),
                       data.get("seed"), data.get("world"), data.get("import"), data)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: unreadable ({type(e).__name__}: {e}); generate or "
                            f"import the data again with force=True") from None


def read_repo_meta(repo: Path) -> RepoMeta:
    """The metadata of a (checked) repo's offline store."""
    path = offline_dir(check_repo(repo)) / REPO_META
    if not path.is_file():
        raise RepoError(f"no data in {offline_dir(repo)}: run `recsys generate --repo {repo}` "
                        f"or `recsys import ... --repo {repo}` first")
    return RepoMeta.from_json(read_json(path, "restore it, or generate / import the data "
                                              "again with force=True"), str(path))


def validate_offline_store(offline: Path, schema: Schema, meta: RepoMeta | None = None) -> None:
    """Check every Parquet part of every table against the schema; the errors say how to
    write the data again the way it was written (`meta`: the store's metadata)."""
    how = "import it again with `recsys import ... --force`" if meta and meta.imported \
        else "regenerate with `recsys generate --force`"
    for table, expected in schema.tables().items():
        check_parquet_files(table_files(offline, table), expected, offline / table, how)


def check_parquet_files(files: list[Path], expected: pa.Schema, folder: Path, fix: str,
                        check_types: bool = True) -> None:
    """Every file has every expected column (of the expected type): footers only, cheap.
    `fix` says how to repair; it ends each error message."""
    if not files:
        raise DataError(f"{folder}: no Parquet files; {fix}")
    for file in files:
        try:
            actual = pq.read_schema(file)
        except Exception as e:  # pyarrow raises several types for broken files
            raise DataError(f"{file}: not a readable Parquet file ({e}); {fix}") from None
        for column in expected:
            if column.name not in actual.names:
                raise DataError(f"{file}: missing column '{column.name}' ({column.type}); "
                                f"{fix} or fix the file")
            got = actual.field(column.name).type
            if check_types and got != column.type:
                raise DataError(f"{file}: column '{column.name}' is {got}, expected "
                                f"{column.type}; {fix} or fix the file")


def limit_memory(con: duckdb.DuckDBPyConnection, memory_bytes: int, spill: Path | None,
                 keep_order: bool = False) -> None:
    """Keep a DuckDB connection under `memory_bytes`; beyond it, sorts, joins and aggregates
    spill to the folder `spill`. Rows keep their order only with `keep_order` (which costs
    memory): a positional join needs it."""
    con.execute(f"SET memory_limit = '{duckdb_limit(memory_bytes)}'")
    if spill is not None:
        con.execute(f"SET temp_directory = '{spill}'")
    con.execute(f"SET preserve_insertion_order = {str(keep_order).lower()}")
    con.execute("SET enable_progress_bar = false")  # long work shows its own progress


def connect(offline: Path, start_epoch: int, memory_bytes: int | None = None,
            spill: Path | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with one view per table present; interactions get a `day_index`.
    With `memory_bytes`, DuckDB keeps under that budget and spills the rest to `spill`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if memory_bytes:
        limit_memory(con, memory_bytes, spill)
    folders = sorted(p.name for p in offline.iterdir() if p.is_dir()) if offline.is_dir() else []
    for table in folders:
        if table.startswith(".") or table in (QUARANTINE, ID_MAPS, VOCABULARIES) or \
                not table_files(offline, table):
            continue
        source = f"read_parquet('{table_glob(offline, table)}', hive_partitioning = false)"
        if table == INTERACTIONS:
            source = (f"(SELECT *, CAST((epoch_us(event_timestamp) "
                      f"- {start_epoch}::BIGINT * 1000000) // 86400000000 AS INTEGER) "
                      f"AS day_index FROM {source})")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
    return con
