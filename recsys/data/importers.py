"""`recsys import`: the public AntM2C release and any interaction log -> the offline store.

Both read their input block by block (bounded memory), parse it into `ingest.Parsed` blocks and
leave the rest to `ingest.Ingest`; everything lands in a temporary folder that replaces the old
offline store only when complete, and bad input is refused before anything is written.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data.append import Base
from recsys.data.import_columns import MAX_SCENARIOS, Column, ColumnStats, Declared, decide, \
    name_features, parse_declarations
from recsys.data.import_schema import ENTITY_TABLES, RESERVED, DeclaredTables, Side, \
    staged_side_schema
from recsys.data.import_writer import SCRATCH, AntM2CTables, Counts, Ingest, Parsed, Tables
from recsys.data.writer import write_offline_store
from recsys.errors import DataError, UsageError
from recsys.schema import ITEM_ID, TIMESTAMP_TYPE, USER_ID, Schema
from recsys.antm2c import DEEP_FEATURES, SCENARIOS
from recsys.files import read_yaml

BLOCK_BYTES = 16 << 20  # CSV bytes per block: memory is a few blocks, whatever the file size
HANDLER_RELEASE_S = 10.0  # the longest wait for pyarrow's threads to drop a CSV row handler
ANTM2C_COLUMNS = (USER_ID, ITEM_ID, "log_time", "label", "bill_entity_seq",
                  "service_entity_seq", "query_entity_seq", "item_entity_names", "item_title",
                  "scene", *DEEP_FEATURES)
ANTM2C_TEXTS = ANTM2C_COLUMNS[4:9]  # same names as the schema's text features
ANTM2C_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


# ---- the shared frame ---------------------------------------------------------------------
def run_import(repo: Path, fmt: str, files: list[Path],
               blocks: Callable[[Ingest], Iterator[tuple[Parsed | None, int]]], force: bool,
               progress: bool, tables: Tables, extra: dict | None = None,
               base: Base | None = None) -> dict:
    """Stage every block, then write the offline store in one atomic replacement. `blocks`
    yields parsed blocks of the log (None: bytes read, nothing to add) and the bytes read.
    With a `base` the new rows extend the repo's store (--append)."""
    def fill(tmp: Path) -> tuple[dict, Schema]:
        ingest = Ingest(tmp, tables, base)
        bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
                   desc=f"import {fmt}", disable=not progress)
        for block, done_bytes in blocks(ingest):
            if block is not None:
                ingest.add(block)
            bar.update(done_bytes)
        bar.close()
        return ingest.finish({"format": fmt, "files": [str(f) for f in files],
                              **(extra or {})})

    return write_offline_store(repo, force, fill, append=base is not None)


def _check_file(path: Path, fix: str, field: str) -> None:
    if not path.is_file():
        raise UsageError(f"{path}: no such file; {fix}", fields=field)


def _csv_header(path: Path) -> list[str]:
    """The header row of a text CSV file, or a DataError saying why it is not one."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if b"\0" in head:
        raise DataError(f"{path}: not a CSV file (binary content); pass a CSV text file")
    try:
        first = head.split(b"\n", 1)[0].decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 CSV file; convert it to UTF-8 CSV") from None
    if not first:
        raise DataError(f"{path}: empty file; pass a CSV file with a header row")
    return [c.strip().strip('"') for c in first.split(",")]


class _SkipInvalid:
    """pyarrow's handler of rows with the wrong number of fields: keeps them, skips them."""

    def __init__(self, rows: list):
        self.rows = rows

    def __call__(self, row) -> str:
        self.rows.append(row)
        return "skip"


def _read_or_say(path: Path, open_reader, invalid: list):
    """The batches of the reader `open_reader(handler)` opens, rows with the wrong number of
    fields put in `invalid`; a file it cannot read on (bytes that are not UTF-8, say) is a
    DataError naming the file and the place. The reader is closed when its batches end or the
    reading stops, and the generator returns only once pyarrow's read-ahead threads have
    dropped the Python handler: a thread that drops it while the interpreter exits cannot
    take the GIL and aborts the process ("terminate called without an active exception")."""
    handler = _SkipInvalid(invalid)
    released = weakref.ref(handler)
    reader = None
    try:
        reader, handler = open_reader(handler), None
        with reader:
            yield from reader
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: cannot be read as UTF-8 CSV ({str(e).splitlines()[0]}); "
                        f"fix that row or convert the file to UTF-8") from None
    finally:
        reader = handler = None
        deadline = time.monotonic() + HANDLER_RELEASE_S
        while released() is not None and time.monotonic() < deadline:
            time.sleep(0.001)  # lets the thread that holds it take the GIL


def _csv_blocks(path: Path, ingest: Counts | None, columns: list[str]):
    """(record batch of strings, row numbers, bytes consumed) per block; rows with the wrong
    number of fields (a truncated last line, say) are quarantined as they are met (skipped
    when there is no `ingest`: a pre-pass)."""
    invalid: list = []

    def open_reader(handler):
        return pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                 include_columns=columns,
                                                 strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False))

    size, done, first_row = path.stat().st_size, 0, 1
    for batch in _read_or_say(path, open_reader, invalid):
        if invalid:
            _reject_invalid(ingest, path, invalid)
        rows = pa.array(range(first_row, first_row + batch.num_rows), pa.int64())
        first_row += batch.num_rows
        step = min(size - done, BLOCK_BYTES)
        done += step
        yield batch, rows, step
    if invalid:
        _reject_invalid(ingest, path, invalid)
    if size > done:
        yield None, None, size - done


def _reject_invalid(ingest: Counts | None, path: Path, invalid: list) -> None:
    if ingest is None:
        invalid.clear()
        return
    ingest.count_read(len(invalid))
    ingest.reject(path.name, [r.number if r.number is not None else -1 for r in invalid],
                  [f"wrong number of fields ({r.actual_columns}, expected "
                   f"{r.expected_columns})" for r in invalid], [r.text for r in invalid])
    invalid.clear()


def _int_in(values: pa.Array, allowed: range) -> pa.Array:
    """Integers parsed from strings or numbers; null where a value is not one of `allowed`."""
    if pa.types.is_string(values.type):  # only whole numbers ("1", "1.0") parse
        values = pc.utf8_trim_whitespace(values)
        values = pc.if_else(pc.match_substring_regex(values, r"^-?\d+(\.0+)?$"), values, None)
    ints = pc.cast(values, pa.float64(), safe=False)
    ok = pc.and_(pc.is_in(ints, pa.array([float(a) for a in allowed])), pc.is_valid(ints))
    return pc.if_else(ok, pc.cast(ints, pa.int64(), safe=False), None)


def _nonempty(values: pa.Array) -> pa.Array:
    values = pc.cast(values, pa.string())
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), None, trimmed)


# ---- AntM2C ---------------------------------------------------------------------------------
def import_antm2c(files: list[Path], repo: Path, force: bool = False,
                  progress: bool = True, append: bool = False) -> dict:
    """Import the public AntM2C CSV part files (header + the 37 columns, in order); `append`:
    as new days of the repo's AntM2C import (see data.append)."""
    if not files:
        raise UsageError("no input file: pass the AntM2C part files (antm2c_10m_part0..2)")
    base = Base.of(repo, "antm2c", force) if append else None
    for path in files:  # every file is checked before anything is written
        _check_file(path, "pass the AntM2C part files (antm2c_10m_part0..2)", "files")
        header = _csv_header(path)
        if tuple(header) != ANTM2C_COLUMNS:
            missing = [c for c in ANTM2C_COLUMNS if c not in header]
            extra = [c for c in header if c not in ANTM2C_COLUMNS]
            what = (f"missing {', '.join(missing[:5])}" if missing else "") + \
                ("; " if missing and extra else "") + \
                (f"unexpected {', '.join(extra[:5])}" if extra else "") or "columns out of order"
            raise DataError(f"{path}: not an AntM2C file ({what}); the header must be the 37 "
                            f"columns user_id, item_id, log_time, label, ..., scene, "
                            f"deep_features_0..26, in that order")

    def blocks(ingest):
        for path in files:
            for batch, rows, step in _csv_blocks(path, ingest, list(ANTM2C_COLUMNS)):
                if batch is None:
                    yield None, step
                    continue
                col = dict(zip(batch.schema.names, batch.columns))
                ts = pc.strptime(pc.utf8_trim_whitespace(col["log_time"]),
                                 format=ANTM2C_TIME_FORMAT, unit="us", error_is_null=True)
                yield Parsed(
                    source=path.name, row=rows, user=_nonempty(col[USER_ID]),
                    item=_nonempty(col[ITEM_ID]), ts=ts.cast(TIMESTAMP_TYPE),
                    label=pc.cast(_int_in(col["label"], range(2)), pa.int8()),
                    scenario=_int_in(col["scene"], range(len(SCENARIOS))),
                    raw=pa.Table.from_batches([batch]),
                    extra={**{n: col[n] for n in DEEP_FEATURES},
                           **{n: col[n] for n in ANTM2C_TEXTS}}), step

    return run_import(repo, "antm2c", files, blocks, force, progress, AntM2CTables(), base=base)


# ---- any interaction log ----------------------------------------------------------------------
# What a mapping key takes where it is not a name (of a column or a file): (types, in words)
_MAPPING_VALUES = {"label_threshold": ((int, float), "a number"),
                   "columns": ((dict,), "`column: kind` lines")}
# flags that declare columns: (Mapping field, kind)
KIND_FLAGS = {"categorical_cols": "categorical", "numeric_cols": "numeric", "text_cols": "text",
              "ignore_cols": "ignore"}


@dataclass
class Mapping:
    """How the columns of an interaction log map onto the platform's (CLI flags or YAML).
    `columns`: declared kinds (column -> Declared); every other column of the log (besides
    the mapped ones), of `users` and of `items` is a feature of an inferred kind."""

    interactions: Path
    user_col: str
    item_col: str
    time_col: str
    label_col: str
    users: Path | None = None
    items: Path | None = None
    label_threshold: float | None = None
    scenario_col: str | None = None
    columns: dict[str, Declared] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: Path, declared: dict[str, Declared] | None = None,
                  **overrides) -> "Mapping":
        """The mapping file; `declared` (from flags) and `overrides` win over its keys."""
        _check_file(path, "pass a YAML mapping file (mapping)", "mapping")
        data = read_yaml(path, "fix the mapping file") or {}
        known = set(cls.__dataclass_fields__) | set(KIND_FLAGS)
        if not isinstance(data, dict):
            raise UsageError(f"{path}: holds a {type(data).__name__}, not `key: value` lines; "
                             f"the keys are {', '.join(sorted(known))}")
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                             f"the keys are {', '.join(sorted(known))}")
        for key, value in data.items():
            types, takes = _MAPPING_VALUES.get(key, ((str, list), "a name") if key in KIND_FLAGS
                                               else ((str,), "a name"))
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise UsageError(f"{path}: {key} is {value!r}; it takes {takes}")
        columns = parse_declarations(data.pop("columns", None), str(path))
        for key, kind in KIND_FLAGS.items():
            columns.update({c: Declared(kind) for c in _names(data.pop(key, None))})
        columns.update(declared or {})
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("interactions", "users", "items"):
            if data.get(key) is not None:
                data[key] = (path.parent / data[key]) if not Path(data[key]).is_absolute() \
                    else Path(data[key])
        missing = [k for k in ("interactions", "user_col", "item_col", "time_col", "label_col")
                   if not data.get(k)]
        if missing:
            raise UsageError(f"{path}: missing {', '.join(missing)}; add them to the mapping "
                             f"file or pass them as flags")
        return cls(**data, columns=columns)

    @classmethod
    def from_flags(cls, mapping: Path | None, declared: dict[str, Declared],
                   **given) -> "Mapping":
        """The mapping from a mapping file with `given` winning, or from `given` alone."""
        if mapping is not None:
            return cls.from_yaml(mapping, declared, **given)
        missing = [k for k in ("interactions", "user_col", "item_col", "time_col", "label_col")
                   if given.get(k) is None]
        if missing:
            raise UsageError(f"missing {', '.join(missing)}: pass them, or a mapping file",
                             fields=(*missing, "mapping"))
        return cls(**{k: v for k, v in given.items() if v is not None}, columns=declared)

    def mapped(self) -> dict[str, str]:
        """The log's mapped columns, by field."""
        out = {"user_col": self.user_col, "item_col": self.item_col,
               "time_col": self.time_col, "label_col": self.label_col}
        if self.scenario_col:
            out["scenario_col"] = self.scenario_col
        return out


def declared_from_flags(**lists: str | None) -> dict[str, Declared]:
    """--categorical-cols a,b --numeric-cols c ... -> column -> Declared."""
    return {c: Declared(KIND_FLAGS[flag]) for flag, names in lists.items()
            for c in _names(names)}


def _names(value) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [str(c).strip() for c in items if str(c).strip()]


def _columns_of(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        try:
            return pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types for broken files
            raise DataError(f"{path}: not a readable Parquet file ({e}); pass a CSV or "
                            f"Parquet file") from None
    return _csv_header(path)


def _need(path: Path, columns: list[str], wanted: dict[str, str]) -> None:
    for name, col in wanted.items():
        if col not in columns:
            raise DataError(f"{path}: no column '{col}' ({name}); its columns are "
                            f"{', '.join(columns[:20])}", fields=name)


def _table_blocks(path: Path, ingest: Ingest, columns: list[str]):
    if path.suffix == ".parquet":
        with pq.ParquetFile(path) as pf:
            size, first = path.stat().st_size, 1
            for batch in pf.iter_batches(batch_size=200_000, columns=columns):
                rows = pa.array(range(first, first + batch.num_rows), pa.int64())
                first += batch.num_rows
                yield batch, rows, size * batch.num_rows // max(pf.metadata.num_rows, 1)
    else:
        yield from _csv_blocks(path, ingest, columns)


# Epoch numbers by magnitude: below 1e11 seconds (until the year 5138), below 1e14
# milliseconds, below 1e17 microseconds, else nanoseconds; (name, upper bound, µs per unit).
EPOCH_UNITS = (("epoch seconds", 1e11, 1e6), ("epoch milliseconds", 1e14, 1e3),
               ("epoch microseconds", 1e17, 1.0), ("epoch nanoseconds", 9.3e18, 1e-3))
# Date-time strings, naive (read as UTC) or with a zone (Z, +01:00, +0100); fractions of a
# second are parsed apart (strptime has no %f).
TIME_FORMATS = (("ISO date-time", "%Y-%m-%d %H:%M:%S"), ("ISO date-time", "%Y-%m-%dT%H:%M:%S"),
                ("ISO date-time with zone", "%Y-%m-%dT%H:%M:%S%z"),
                ("ISO date-time with zone", "%Y-%m-%d %H:%M:%S%z"), ("ISO date", "%Y-%m-%d"))
MIN_TIME, MAX_TIME = 0, 253402300799 * 10 ** 6  # 1970-01-01 .. 9999-12-31, µs


def _time(values: pa.Array) -> tuple[pa.Array, dict[str, int]]:
    """Epoch numbers (seconds to nanoseconds, told apart by size) or date-time strings -> UTC
    timestamps, null where unparseable or outside 1970..9999; and how many values were read
    as each kind (for the summary)."""
    if pa.types.is_timestamp(values.type):
        return values.cast(TIMESTAMP_TYPE), {"timestamps": len(values) - values.null_count}
    kinds: dict[str, int] = {}
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = pc.utf8_trim_whitespace(values)
        numbers = pc.cast(pc.if_else(pc.match_substring_regex(values, r"^\d+(\.\d+)?$"),
                                     values, None), pa.float64())
    else:
        numbers, values = pc.cast(values, pa.float64(), safe=False), None
    micros, low = pa.nulls(len(numbers), pa.float64()), 0.0
    for name, below, scale in EPOCH_UNITS:  # each number in the smallest unit that fits
        unit = pc.and_(pc.greater_equal(numbers, low), pc.less(numbers, below))
        micros = pc.if_else(unit, pc.multiply(numbers, scale), micros)
        _count(kinds, name, unit)
        low = below
    epoch = _in_range(pc.cast(pc.floor(micros), pa.int64(), safe=False))
    if values is None:
        return epoch.cast(TIMESTAMP_TYPE), kinds
    fraction = pc.extract_regex(values, r":\d\d(?P<f>\.\d{1,6})")
    whole = pc.replace_substring_regex(values, r"(:\d\d)\.\d+", r"\1")
    parsed = pa.nulls(len(values), pa.int64())
    for name, fmt in TIME_FORMATS:
        one = pc.strptime(whole, format=fmt, unit="us", error_is_null=True)
        one = pc.cast(one.cast(pa.timestamp("us", tz="UTC")) if one.type.tz is None else one,
                      pa.int64())
        _count(kinds, name, pc.and_(pc.is_null(parsed), pc.is_valid(one)))
        parsed = pc.coalesce(parsed, one)
    frac_us = pc.cast(pc.multiply(pc.cast(pc.struct_field(fraction, [0]), pa.float64()), 1e6),
                      pa.int64(), safe=False)
    parsed = _in_range(pc.add(parsed, pc.coalesce(frac_us, 0)))
    return pc.coalesce(epoch, parsed).cast(TIMESTAMP_TYPE), kinds


def _count(kinds: dict[str, int], name: str, mask: pa.Array) -> None:
    """Add to `kinds[name]` the values `mask` marks (none: no entry)."""
    n = pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
    if n:
        kinds[name] = kinds.get(name, 0) + n


def _in_range(micros: pa.Array) -> pa.Array:
    ok = pc.and_(pc.greater_equal(micros, MIN_TIME), pc.less_equal(micros, MAX_TIME))
    return pc.if_else(ok, micros, None)


def import_interactions(mapping: Mapping, repo: Path, force: bool = False,
                        progress: bool = True, base: Base | None = None) -> dict:
    """Import any interaction log (CSV or Parquet) through a column mapping: a survey pass
    decides every column's kind and the scenarios, then the log and the users / items tables
    are staged and built (nothing is written before the survey has checked everything).
    With a `base` (see `append_mapping`) the log's columns and scenarios are the base's."""
    m = mapping
    _check_file(m.interactions, "pass the interaction log (interactions)", "interactions")
    log_columns = _columns_of(m.interactions)
    _need(m.interactions, log_columns, m.mapped())
    tables = {"interactions": (m.interactions, None, [c for c in log_columns
                                                     if c not in m.mapped().values()])}
    for table, path, key in (("users", m.users, m.user_col), ("items", m.items, m.item_col)):
        if path is not None and base is None:
            _check_file(path, f"pass an existing file ({table})", table)
            cols = _columns_of(path)
            _need(path, cols, {f"the key, as in the log's {key}": key})
            tables[table] = (path, key, [c for c in cols if c != key])
    _check_declared(m, tables)
    if base is not None:
        columns = _base_columns(base, m, tables["interactions"][2])
    scenarios, stats = _survey_log(m, tables["interactions"][2], progress)
    if base is not None:
        scenarios = _base_scenarios(base, m, scenarios)
    else:
        columns = [decide("interactions", m.interactions, c, stats[c], m.columns.get(c))
                   for c in tables["interactions"][2]]
        for table, (path, key, cols) in tables.items():
            if table != "interactions":
                side_stats = _survey(path, cols, progress, f"survey {path.name}")
                columns += [decide(table, path, c, side_stats[c], m.columns.get(c))
                            for c in cols]
        name_features(columns, RESERVED)
    codes = pa.array([name for name, _ in scenarios], pa.string())
    context = [c for c in columns if c.table == "interactions" and c.kind != "ignore"]
    sides: dict[str, Side] = {}  # the staged users / items tables, in the import's scratch

    def blocks(ingest):
        for table, (path, key, _) in tables.items():
            if table != "interactions":
                sides[table] = Side(path, ingest.tmp / SCRATCH / table, Counts(ingest, table))
                yield from _stage_side(sides[table], key, columns)
        for batch, rows, step in _table_blocks(m.interactions, ingest, log_columns):
            if batch is None:
                yield None, step
                continue
            col = dict(zip(batch.schema.names, batch.columns))
            ts, time_kinds = _time(col[m.time_col])
            scenario = pc.cast(pc.index_in(_nonempty(col[m.scenario_col]), value_set=codes),
                               pa.int64()) if m.scenario_col \
                else pa.repeat(pa.scalar(0, pa.int64()), batch.num_rows)
            yield Parsed(source=m.interactions.name, row=rows, user=_nonempty(col[m.user_col]),
                         item=_nonempty(col[m.item_col]), ts=ts,
                         label=_label(col[m.label_col], m.label_threshold), scenario=scenario,
                         raw=pa.Table.from_batches([batch]), time_kinds=time_kinds,
                         extra={c.name: pc.cast(col[c.source], pa.string())
                                for c in context}), step

    info = {"mapping": {k: str(v) if isinstance(v, Path) else v
                        for k, v in vars(m).items() if v not in (None, {}) and k != "columns"}}
    files = [path for path, _, _ in tables.values()]
    return run_import(repo, "interactions", files, blocks, force, progress,
                      DeclaredTables(scenarios, columns, sides), info, base)


# ---- an append: the base's mapping, columns and scenarios --------------------------------
APPEND_KEEPS = ("user_col", "item_col", "time_col", "label_col", "label_threshold",
                "scenario_col")  # mapping fields an append takes from the first import


def append_interactions(repo: Path, force: bool, mapping: Path | None,
                        declared: dict[str, Declared], progress: bool = True, **given) -> dict:
    """`import interactions --append`: the log's days onto the repo's import (data.append)."""
    base = Base.of(repo, "interactions", force)
    return import_interactions(append_mapping(base, mapping, declared, **given), repo, force,
                               progress, base)


def append_mapping(base: Base, mapping: Path | None, declared: dict[str, Declared],
                   **given) -> Mapping:
    """An append's mapping: the repo's first import's, with the new log (`interactions`);
    a field given must be the first import's (another is a schema change), and the users /
    items tables and the columns' kinds are the first import's."""
    first = base.meta.imported["mapping"]
    if mapping is not None:
        from_file = Mapping.from_yaml(mapping, declared, **given)
        given = {k: getattr(from_file, k) for k in (*APPEND_KEEPS, "interactions", "users",
                                                    "items")}
        declared = from_file.columns
    for table in ("users", "items"):
        if given.get(table) is not None:
            raise UsageError(f"{table}: an append adds days of the log alone (the first "
                             f"import's entity tables stay); leave it out", fields=table)
    if declared:
        raise UsageError(f"{', '.join(declared)}: an append keeps the columns' kinds of the "
                         f"first import; leave out the declarations", fields="columns")
    for key in APPEND_KEEPS:
        if given.get(key) is not None and given[key] != first.get(key):
            raise UsageError(f"{key}: the repo's log was imported with "
                             f"{first.get(key)!r}, not {given[key]!r}; an append keeps the "
                             f"first import's mapping", fields=key)
    if given.get("interactions") is None:
        raise UsageError("missing interactions: pass the log of the new days",
                         fields="interactions")
    return Mapping(interactions=Path(given["interactions"]),
                   **{k: first[k] for k in APPEND_KEEPS if k in first})


def _base_columns(base: Base, m: Mapping, log_columns: list[str]) -> list[Column]:
    """The first import's columns (every table's: the schema keeps them); the new log must
    have the same columns as the first."""
    paths = {"interactions": m.interactions,
             **{t: Path(base.meta.imported["mapping"].get(t, t)) for t in ("users", "items")}}
    columns = [Column.described(d, paths[d["table"]]) for d in base.meta.imported["columns"]]
    had = {c.source for c in columns if c.table == "interactions"}
    new, gone = sorted(set(log_columns) - had), sorted(had - set(log_columns))
    if new or gone:
        what = "; ".join(([f"new column(s) {', '.join(new)}"] if new else []) +
                         ([f"missing column(s) {', '.join(gone)}"] if gone else []))
        raise DataError(f"{m.interactions}: {what}: a schema change, which an append cannot "
                        f"make; give the log the first import's columns, or import the whole "
                        f"log again without --append (with --force)")
    return columns


def _base_scenarios(base: Base, m: Mapping,
                    found: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The base's scenarios, by code, with the new log's rows; a new one is refused."""
    names = base.schema.scenario_names
    rows = dict(found)
    new = [n for n in rows if n not in names] if m.scenario_col else []
    if new:
        raise DataError(f"{m.interactions}: column '{m.scenario_col}' has new scenario(s) "
                        f"{', '.join(new[:5])}: a schema change (each scenario has its own "
                        f"tower), which an append cannot make; import the whole log again "
                        f"without --append (with --force)", fields="scenario_col")
    return [(n, rows.get(n, 0)) for n in names]


def _label(values: pa.Array, threshold: float | None) -> pa.Array:
    """0/1 labels: values >= `threshold`, or the values themselves where they are 0/1."""
    if threshold is None:
        return pc.cast(_int_in(values, range(2)), pa.int8())
    score = pc.cast(_nonempty(values), pa.float64(), safe=False) \
        if pa.types.is_string(values.type) else pc.cast(values, pa.float64())
    return pc.cast(pc.greater_equal(score, threshold), pa.int8())


def _check_declared(m: Mapping, tables: dict) -> None:
    """Every declared column is a column of some table and not a mapped one."""
    for col in m.columns:
        if col in m.mapped().values() or any(col == key for _, key, _ in tables.values()):
            raise UsageError(f"columns.{col}: '{col}' is a mapped column (user, item, time, "
                             f"label or scenario), not a feature; leave it out of the declared "
                             f"columns")
        if not any(col in cols for _, _, cols in tables.values()):
            files = ", ".join(str(p) for p, _, _ in tables.values())
            raise UsageError(f"columns.{col}: no column '{col}' in {files}; declare columns "
                             f"those files have")


def _survey(path: Path, columns: list[str], progress: bool, desc: str,
            on_batch=None) -> dict[str, ColumnStats]:
    """Counters over every value of `columns` (one streamed pass; see data.columns)."""
    stats = {c: ColumnStats() for c in columns}
    # shown after a second: a refusal found at once stays the only line on stderr
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc,
               disable=not progress, delay=1)
    read = [c for c in dict.fromkeys([*columns, *(on_batch.columns if on_batch else [])])]
    for batch, _, step in _table_blocks(path, None, read):
        if batch is not None:
            for c in columns:
                stats[c].add(batch[c])
            if on_batch:
                on_batch(batch)
        bar.update(step)
    bar.close()
    return stats


class _LogChecks:
    """What the survey checks of the log's label and scenario columns."""

    def __init__(self, m: Mapping):
        self.m = m
        self.columns = [m.label_col] + ([m.scenario_col] if m.scenario_col else [])
        self.scenarios: dict[str, int] = {}

    def __call__(self, batch: pa.RecordBatch) -> None:
        m = self.m
        if m.label_threshold is None:  # the label column must be binary
            values = pc.cast(batch[m.label_col], pa.string())
            values = pc.drop_null(pc.utf8_trim_whitespace(values))
            values = pc.filter(values, pc.not_equal(values, ""))
            bad = pc.filter(values, pc.is_null(_int_in(values, range(2))))
            if len(bad):
                raise UsageError(f"{m.interactions}: column '{m.label_col}' (label_col) is "
                                 f"not binary (found '{bad[0].as_py()}'); pass "
                                 f"label_threshold X to turn values >= X into clicks",
                                 fields=("label_col", "label_threshold"))
        if m.scenario_col:
            counts = pc.value_counts(pc.drop_null(_nonempty(batch[m.scenario_col])))
            for value, n in zip(counts.field("values").to_pylist(),
                                counts.field("counts").to_pylist()):
                self.scenarios[value] = self.scenarios.get(value, 0) + n
            if len(self.scenarios) > MAX_SCENARIOS:
                raise UsageError(f"{m.interactions}: column '{m.scenario_col}' "
                                 f"(scenario_col) has more than {MAX_SCENARIOS} distinct "
                                 f"values; a scenario is a kind of item or surface (a few, "
                                 f"each with its own tower): pass another column, or none",
                                 fields="scenario_col")


def _survey_log(m: Mapping, context: list[str],
                progress: bool) -> tuple[list[tuple[str, int]], dict[str, ColumnStats]]:
    """The log's scenarios (name, rows) by code, and its context columns' counters."""
    checks = _LogChecks(m)
    stats = _survey(m.interactions, context, progress, f"survey {m.interactions.name}",
                    on_batch=checks)
    if not m.scenario_col:
        return [("all", 0)], stats
    names = list(checks.scenarios)
    if not names:
        raise UsageError(f"{m.interactions}: column '{m.scenario_col}' (scenario_col) has no "
                         f"values; pass another column, or none for a single scenario",
                         fields="scenario_col")
    whole = all(re.fullmatch(r"[+-]?\d+", n) for n in names)  # codes sort as numbers
    names.sort(key=lambda n: (int(n), n) if whole else (0, n))
    return [(n, checks.scenarios[n]) for n in names], stats


def _stage_side(side: Side, key: str, columns: list[Column]):
    """A users / items table's rows as text, staged as Parquet (a row without an ID is
    quarantined); yields (None, bytes read) for the progress bar."""
    used = [c for c in columns if c.path == side.path and c.kind != "ignore"]
    schema = staged_side_schema(used)
    side.staging.mkdir(parents=True)
    entity = ENTITY_TABLES[side.counts.table][0]
    parts = 0
    for batch, rows, step in _table_blocks(side.path, side.counts,
                                           [key, *(c.source for c in used)]):
        if batch is None:
            yield None, step
            continue
        side.counts.rows_read += batch.num_rows
        k = _nonempty(batch[key])
        if k.null_count:
            bad = pc.is_null(k)
            side.counts.reject(side.path.name, pc.filter(rows, bad),
                               pa.repeat(f"empty {entity} id", k.null_count),
                               pa.Table.from_batches([batch]).filter(bad))
        staged = pa.table([pa.repeat(side.path.name, batch.num_rows), rows, k] +
                          [pc.cast(batch[c.source], pa.string()) for c in used], schema=schema)
        pq.write_table(staged.filter(pc.is_valid(k)), side.staging / f"part-{parts:05d}.parquet")
        parts += 1
        yield None, step
    if not parts:  # an empty table: DuckDB still finds its columns
        pq.write_table(schema.empty_table(), side.staging / "part-00000.parquet")
