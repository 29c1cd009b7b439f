"""`recsys import`: the public AntM2C release and any interaction log -> the offline store.

Both read their input block by block (bounded memory), parse it into `ingest.Parsed` blocks and
leave the rest to `ingest.Ingest`; everything lands in a temporary folder that replaces the old
offline store only when complete, and bad input is refused before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data.ingest import Ingest, Parsed
from recsys.data.store import write_offline_store
from recsys.errors import DataError, UsageError
from recsys.schema import ANTM2C, DEEP_FEATURES, SCENARIOS, TIMESTAMP_TYPE
from recsys.storage import read_yaml

BLOCK_BYTES = 16 << 20  # CSV bytes per block: memory is a few blocks, whatever the file size
ANTM2C_COLUMNS = ("user_id", "item_id", "log_time", "label", "bill_entity_seq",
                  "service_entity_seq", "query_entity_seq", "item_entity_names", "item_title",
                  "scene", *DEEP_FEATURES)
ANTM2C_TEXTS = ANTM2C_COLUMNS[4:9]  # same names as the schema's text features
ANTM2C_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


# ---- the shared frame ---------------------------------------------------------------------
def run_import(repo: Path, fmt: str, files: list[Path],
               blocks: Callable[[Ingest], Iterator[tuple[Parsed | None, int]]], force: bool,
               progress: bool, extra: dict | None = None) -> dict:
    """Stage every block, then write the offline store in one atomic replacement."""
    def fill(tmp: Path) -> dict:
        ingest = Ingest(tmp)
        bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
                   desc=f"import {fmt}", disable=not progress)
        for block, done_bytes in blocks(ingest):
            if block is not None:
                ingest.add(block)
            bar.update(done_bytes)
        bar.close()
        return ingest.finish({"format": fmt, "files": [str(f) for f in files],
                              **(extra or {})})

    return write_offline_store(repo, force, fill, ANTM2C)


def _check_file(path: Path, fix: str) -> None:
    if not path.is_file():
        raise UsageError(f"{path}: no such file; {fix}")


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


def _read_or_say(path: Path, open_reader):
    """The batches of the reader `open_reader()` opens; a file it cannot read on (bytes that
    are not UTF-8, say) is a DataError naming the file and the place."""
    try:
        yield from open_reader()
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: cannot be read as UTF-8 CSV ({str(e).splitlines()[0]}); "
                        f"fix that row or convert the file to UTF-8") from None


def _csv_blocks(path: Path, ingest: Ingest | None, columns: list[str]):
    """(record batch of strings, row numbers, bytes consumed) per block; rows with the wrong
    number of fields (a truncated last line, say) are quarantined as they are met (skipped
    when there is no `ingest`: a pre-pass)."""
    invalid: list = []

    def on_invalid(row) -> str:
        invalid.append(row)
        return "skip"

    def open_reader():
        return pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                 include_columns=columns,
                                                 strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False))

    size, done, first_row = path.stat().st_size, 0, 1
    for batch in _read_or_say(path, open_reader):
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


def _reject_invalid(ingest: Ingest | None, path: Path, invalid: list) -> None:
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
                  progress: bool = True) -> dict:
    """Import the public AntM2C CSV part files (header + the 37 columns, in order)."""
    if not files:
        raise UsageError("no input file: pass the AntM2C part files (antm2c_10m_part0..2)")
    for path in files:  # every file is checked before anything is written
        _check_file(path, "pass the AntM2C part files (antm2c_10m_part0..2)")
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
                    source=path.name, row=rows, user=_nonempty(col["user_id"]),
                    item=_nonempty(col["item_id"]), ts=ts.cast(TIMESTAMP_TYPE),
                    label=pc.cast(_int_in(col["label"], range(2)), pa.int8()),
                    scenario=_int_in(col["scene"], range(len(SCENARIOS))),
                    raw=pa.Table.from_batches([batch]),
                    extra={**{n: col[n] for n in DEEP_FEATURES},
                           **{n: col[n] for n in ANTM2C_TEXTS}}), step

    return run_import(repo, "antm2c", files, blocks, force, progress)


# ---- any interaction log ----------------------------------------------------------------------
# What a mapping key takes where it is not a name (of a column or a file): (types, in words)
_MAPPING_VALUES = {"label_threshold": ((int, float), "a number"),
                   "text_cols": ((str, list), "a name")}


@dataclass
class Mapping:
    """How the columns of an interaction log map onto the platform's (CLI flags or YAML)."""

    interactions: Path
    user_col: str
    item_col: str
    time_col: str
    label_col: str
    users: Path | None = None
    items: Path | None = None
    label_threshold: float | None = None
    scenario_col: str | None = None
    text_cols: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, path: Path, **overrides) -> "Mapping":
        _check_file(path, "pass a YAML mapping file (--mapping)")
        data = read_yaml(path, "fix the mapping file") or {}
        known = set(cls.__dataclass_fields__)
        if not isinstance(data, dict):
            raise UsageError(f"{path}: holds a {type(data).__name__}, not `key: value` lines; "
                             f"the keys are {', '.join(sorted(known))}")
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; the keys "
                             f"are {', '.join(sorted(known))}")
        for key, value in data.items():
            types, takes = _MAPPING_VALUES.get(key, (str, "a name"))
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise UsageError(f"{path}: {key} is {value!r}; it takes {takes}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("interactions", "users", "items"):
            if data.get(key) is not None:
                data[key] = (path.parent / data[key]) if not Path(data[key]).is_absolute() \
                    else Path(data[key])
        if isinstance(data.get("text_cols"), str):
            data["text_cols"] = tuple(c for c in data["text_cols"].split(",") if c)
        missing = [k for k in ("interactions", "user_col", "item_col", "time_col", "label_col")
                   if not data.get(k)]
        if missing:
            raise UsageError(f"{path}: missing {', '.join(missing)}; add them to the mapping "
                             f"file or pass them as flags")
        return cls(**data)


def _columns_of(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        try:
            return pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types for broken files
            raise DataError(f"{path}: not a readable Parquet file ({e}); pass a CSV or "
                            f"Parquet file") from None
    return _csv_header(path)


def _need(path: Path, columns: list[str], wanted: dict[str, str]) -> None:
    for flag, col in wanted.items():
        if col not in columns:
            raise DataError(f"{path}: no column '{col}' ({flag}); its columns are "
                            f"{', '.join(columns[:20])}")


def _table_blocks(path: Path, ingest: Ingest, columns: list[str]):
    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        size, first = path.stat().st_size, 1
        for batch in pf.iter_batches(batch_size=200_000, columns=columns):
            rows = pa.array(range(first, first + batch.num_rows), pa.int64())
            first += batch.num_rows
            yield batch, rows, size * batch.num_rows // max(pf.metadata.num_rows, 1)
    else:
        yield from _csv_blocks(path, ingest, columns)


def _side_text_sql(path: Path, key: str, cols: tuple[str, ...]) -> str:
    """DuckDB query: (k, text) of a users / items table (one row per entity): the key as text,
    the text columns joined by ' ', empty values left out."""
    reader = f"read_parquet('{path}')" if path.suffix == ".parquet" else \
        f"read_csv('{path}', header = true, all_varchar = true)"
    parts = ", ".join(f'nullif(CAST("{c}" AS VARCHAR), \'\')' for c in cols)
    return (f'SELECT CAST("{key}" AS VARCHAR) AS k, min(concat_ws(\' \', {parts})) AS text '
            f"FROM {reader} GROUP BY k")


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
                        progress: bool = True) -> dict:
    """Import any interaction log (CSV or Parquet) through a column mapping."""
    m = mapping
    _check_file(m.interactions, "pass the interaction log (--interactions)")
    wanted = {"--user-col": m.user_col, "--item-col": m.item_col, "--time-col": m.time_col,
              "--label-col": m.label_col}
    if m.scenario_col:
        wanted["--scenario-col"] = m.scenario_col
    _need(m.interactions, _columns_of(m.interactions), wanted)
    side = {}  # text per entity from the users / items tables
    for flag, path, key, target in (("--users", m.users, m.user_col, "query_entity_seq"),
                                    ("--items", m.items, m.item_col, "item_title")):
        if path is None:
            continue
        _check_file(path, f"pass an existing file ({flag})")
        cols = _columns_of(path)
        text = tuple(c for c in m.text_cols if c in cols)
        _need(path, cols, {"the key": key})
        side[target] = (path, key, text)
    unplaced = [c for c in m.text_cols if not any(c in s[2] for s in side.values())]
    if unplaced:
        raise UsageError(f"--text-cols {', '.join(unplaced)}: no such column in the --users or "
                         f"--items table; name columns of those tables")
    _check_labels(m)
    columns = list(dict.fromkeys(wanted.values()))

    def blocks(ingest):
        # texts of the users / items tables are joined in DuckDB when the import finishes
        ingest.side_texts = {target: _side_text_sql(*spec) for target, spec in side.items()
                             if spec[2]}
        for batch, rows, step in _table_blocks(m.interactions, ingest, columns):
            if batch is None:
                yield None, step
                continue
            col = dict(zip(batch.schema.names, batch.columns))
            label = col[m.label_col]
            if m.label_threshold is not None:
                score = pc.cast(_nonempty(label), pa.float64(), safe=False) \
                    if pa.types.is_string(label.type) else pc.cast(label, pa.float64())
                label = pc.cast(pc.greater_equal(score, m.label_threshold), pa.int8())
            else:
                label = pc.cast(_int_in(label, range(2)), pa.int8())
            scenario = _int_in(col[m.scenario_col], range(len(SCENARIOS))) if m.scenario_col \
                else pa.array([0] * batch.num_rows, pa.int64())
            user, item = _nonempty(col[m.user_col]), _nonempty(col[m.item_col])
            ts, time_kinds = _time(col[m.time_col])
            yield Parsed(source=m.interactions.name, row=rows, user=user, item=item,
                         ts=ts, label=label, scenario=scenario,
                         raw=pa.Table.from_batches([batch]), time_kinds=time_kinds), step

    info = {"mapping": {k: str(v) if isinstance(v, Path) else v
                        for k, v in vars(m).items() if v not in (None, ())}}
    return run_import(repo, "interactions", [m.interactions], blocks, force, progress, info)


def _check_labels(m: Mapping) -> None:
    """Without a threshold the label column must be binary: one pass over that column only,
    before anything is written."""
    if m.label_threshold is not None:
        return
    for batch, _, _ in _table_blocks(m.interactions, None, [m.label_col]):
        if batch is None:  # the bytes after the last block
            continue
        values = pc.cast(batch.column(0), pa.string())
        values = pc.drop_null(pc.utf8_trim_whitespace(values))
        values = pc.filter(values, pc.not_equal(values, ""))
        bad = pc.filter(values, pc.is_null(_int_in(values, range(2))))
        if len(bad):
            raise UsageError(f"{m.interactions}: column '{m.label_col}' (--label-col) is not "
                             f"binary (found '{bad[0].as_py()}'); pass --label-threshold X to "
                             f"turn values >= X into clicks")
