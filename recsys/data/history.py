"""The user_history view, computed by DuckDB from the interactions of an offline store (the
generator and the importers write it the same way).

After every instant a user clicked, one row: his last `history_length` clicks up to and
including that instant (item, scenario, time, and the schema's `history_item_features` of the
item as of the click), most recent first, stamped one microsecond
later. Feast's point-in-time join takes, for an impression, the latest row stamped at or before
it: the clicks strictly before the impression, never its own nor a sibling's at the same
instant. A user with no click before an impression gets no row, which the build turns into an
empty history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data.offline import connect, write_query
from recsys.memory import GiB
from recsys.schema import EVENT_TIMESTAMP, HISTORY_ITEMS, HISTORY_ORDER, HISTORY_SCENARIOS, \
    HISTORY_TIMES, HISTORY_VIEW, ITEM_ID, LABEL, SCENARIO, UNKNOWN_CODE, USER_ID, Schema, \
    history_column

HISTORY_MEMORY = 2 * GiB
# clicks one window pass holds: the lists a window builds are outside DuckDB's budget (~1 KiB
# a click at 50 clicks kept), so a longer log is built in parts of about this many clicks
PART_CLICKS = 100_000
# The view is written in time order in row groups of this many rows: a build's partition
# reads the row groups of its own time range alone (dataset.history_join)
HISTORY_ROW_GROUP_ROWS = 65_536


def history_sql(length: int, interactions: str = "interactions",
                item_features: tuple[tuple[str, str], ...] = ()) -> str:
    """The view's rows from a log's rows (`interactions`: a table or a subquery).
    `item_features`: (feature, the table or subquery of its view) for each item feature every
    click also carries, its value as of the click (the view's latest row at or before it)."""
    tables = list(dict.fromkeys(t for _, t in item_features))  # one join per view
    joins = "".join(f"""
            ASOF LEFT JOIN {t} v{j} ON v{j}.{ITEM_ID} = x.{ITEM_ID}
                                     AND x.{EVENT_TIMESTAMP} >= v{j}.{EVENT_TIMESTAMP}"""
                    for j, t in enumerate(tables))
    # an item without the feature as of the click (no profile row, a missing value) carries
    # the unknown code: a list element Feast can materialize
    values = "".join(f", coalesce(v{tables.index(t)}.{f}, {UNKNOWN_CODE}) AS f{n}"
                     for n, (f, t) in enumerate(item_features))
    lists = "".join(f", list(f{n}) OVER w AS l{n}" for n in range(len(item_features)))
    out = "".join(f",\n               list_reverse(l{n}) AS {history_column(f)}"
                  for n, (f, _) in enumerate(item_features))
    # clicks in the schema's HISTORY_ORDER: the same log gives the same lists, and /feedback
    # merges a click where this would put it (merge_clicks)
    order = ", ".join(f"x.{c}" for c in HISTORY_ORDER)
    return f"""
        WITH clicks AS (
            SELECT x.{USER_ID} AS u, x.{ITEM_ID} AS i, x.{SCENARIO} AS s,
                   x.{EVENT_TIMESTAMP} AS t{values},
                   row_number() OVER (PARTITION BY x.{USER_ID} ORDER BY {order}) AS k
            FROM (SELECT * FROM {interactions} WHERE {LABEL} = 1) x{joins}),
        lists AS (
            SELECT u, t, k, list(i) OVER w AS items, list(s) OVER w AS scenarios,
                   list(epoch_us(t)) OVER w AS times{lists}
            FROM clicks
            WINDOW w AS (PARTITION BY u ORDER BY k ROWS BETWEEN {length - 1} PRECEDING
                         AND CURRENT ROW))
        SELECT u AS {USER_ID}, t + INTERVAL 1 MICROSECOND AS {EVENT_TIMESTAMP},
               list_reverse(items) AS {HISTORY_ITEMS},
               list_reverse(scenarios) AS {HISTORY_SCENARIOS},
               list_reverse(times) AS {HISTORY_TIMES}{out}
        FROM lists
        QUALIFY k = max(k) OVER (PARTITION BY u, t)  -- the instant's last click: all of them
        ORDER BY t, u"""


def write_history(offline: Path, schema: Schema, progress: bool = False) -> None:
    """The user_history table of `offline` from its interactions, under a fixed memory budget
    (DuckDB spills beyond it). A window's lists live outside that budget, so a log of more than
    PART_CLICKS clicks is built in parts of whole users (one pass splits the clicks by user),
    each part's rows in time order, then merged in time order a time range at a time: memory
    follows PART_CLICKS, not the log's size."""
    spill = offline / ".history-spill"
    con = connect(offline, 0, memory_bytes=HISTORY_MEMORY, spill=spill)
    views = {f.name: f.view for f in schema.features}  # each a DuckDB view of connect's
    item_features = tuple((f, views[f]) for f in schema.history_item_features)
    table = schema.tables()[HISTORY_VIEW.name]
    out = offline / HISTORY_VIEW.name / "part-00000.parquet"
    clicks = con.execute(f"SELECT count(*) FROM interactions WHERE {LABEL} = 1").fetchone()[0]
    parts = -(-clicks // PART_CLICKS)
    try:
        if parts <= 1:
            write_query(con, history_sql(schema.history_length, item_features=item_features),
                        out, table, HISTORY_ROW_GROUP_ROWS)
            return
        by_user = spill / "clicks"
        spill.mkdir(parents=True, exist_ok=True)
        # the columns history_sql reads; each part's open file holds few rows before a flush
        con.execute(f"SET partitioned_write_flush_threshold = {HISTORY_ROW_GROUP_ROWS}")
        columns = ", ".join(dict.fromkeys((USER_ID, ITEM_ID, SCENARIO, LABEL, *HISTORY_ORDER)))
        con.execute(f"""COPY (SELECT {columns}, {USER_ID} % {parts} AS part
                              FROM interactions WHERE {LABEL} = 1)
                        TO '{by_user}' (FORMAT parquet, PARTITION_BY (part))""")
        lists = spill / "lists"
        for part in tqdm(sorted(by_user.iterdir()), desc="user history", unit="part",
                         disable=not progress):
            write_query(con, history_sql(schema.history_length,
                                         f"read_parquet('{part}/*.parquet')", item_features),
                        lists / f"{part.name}.parquet", table, HISTORY_ROW_GROUP_ROWS)
        _merge_in_time_order(con, lists, out, table)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _merge_in_time_order(con, lists: Path, out: Path, table: pa.Schema) -> None:
    """The parts' rows (each part in time order) into one file ordered as history_sql orders
    them, each time range of at most about PART_CLICKS rows sorted alone (an hour with more
    stays one range), in row groups of HISTORY_ROW_GROUP_ROWS as one query would write them."""
    rows = f"read_parquet('{lists}/*.parquet')"
    hours = con.execute(f"""SELECT date_trunc('hour', {EVENT_TIMESTAMP}) AS h, count(*)
                            FROM {rows} GROUP BY h ORDER BY h""").fetchall()
    starts, held = [], PART_CLICKS
    for hour, n in hours:  # one step an hour of the log, not a row
        if held + n > PART_CLICKS:
            starts.append(hour)
            held = 0
        held += n
    bounds = [*(f"TIMESTAMPTZ '{t.isoformat()}'" for t in starts[1:]), None]
    pending: list[pa.Table] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out, table) as writer:
        low = None
        for high in bounds:
            where = " AND ".join([*([f"{EVENT_TIMESTAMP} >= {low}"] if low else []),
                                  *([f"{EVENT_TIMESTAMP} < {high}"] if high else [])]) or "true"
            result = con.execute(f"SELECT * FROM {rows} WHERE {where} "
                                 f"ORDER BY {EVENT_TIMESTAMP}, {USER_ID}")
            for batch in result.fetch_record_batch(HISTORY_ROW_GROUP_ROWS):
                pending.append(pa.Table.from_batches([batch]).cast(table))
                pending = _write_full_groups(writer, pending)
            low = high
        if pending:
            writer.write_table(pa.concat_tables(pending), HISTORY_ROW_GROUP_ROWS)


def _write_full_groups(writer: pq.ParquetWriter, pending: list[pa.Table]) -> list[pa.Table]:
    """Write every whole row group of `pending`; what is left over (fewer rows than one)."""
    if sum(t.num_rows for t in pending) < HISTORY_ROW_GROUP_ROWS:
        return pending
    held = pa.concat_tables(pending)
    whole = held.num_rows - held.num_rows % HISTORY_ROW_GROUP_ROWS
    writer.write_table(held.slice(0, whole), HISTORY_ROW_GROUP_ROWS)
    return [held.slice(whole)] if whole < held.num_rows else []


def merge_clicks(old: list[tuple], new: list[tuple[int, tuple]], length: int) -> list[tuple]:
    """A user's history with `new` clicks merged in, by the rule of `history_sql`: latest first
    in HISTORY_ORDER, `length` kept. `old`: the stored history, each click a tuple of the
    view's lists (item, scenario, time in µs, carried features), latest first; `new`: (request
    id, click) pairs. A late click lands at its own time, not at the head; at one instant the
    later request, then the larger item, comes first (the stored clicks' requests are not
    kept: at an instant shared with a stored click, a new one counts as the later)."""
    fresh = [c for _, c in sorted(new, key=lambda rc: (rc[1][2], rc[0], rc[1][0]),
                                  reverse=True)]
    return sorted(fresh + old, key=lambda c: c[2], reverse=True)[:length]  # stable
