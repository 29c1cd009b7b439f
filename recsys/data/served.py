"""`recsys import served`: what the repo's servers showed, labeled by the clicks sent back, as
new rows of the repo's log, so that tomorrow's training set is made from what was served.

Each row of the served log (data.serving_logs: one per item an answer showed) becomes one
impression of the interactions table, its IDs, scenario and request ID kept, its time the
moment it was served, its context the values the model saw (a context column the model did not
read is null). Its label: 1 when the feedback log holds a click of the same user on the same
item within `window` after it was served (a click that names its request labels only that
request's impression; one without labels every impression of the item to the user in the
window before it), else 0. Only impressions at least `window` old are taken (their label can no
longer change), and only those after what an earlier import took (meta.json `served`), so a
second run adds only what is new. Rows of a user or an item the store does not hold are left out
and counted (the store's tables would not know them).

The old store's files are kept (hard links); the new rows go into their days' folders beside
them, and what reads the whole log (the aggregates, the history, the summary) is computed again,
as any append does. The labels are joined by DuckDB one served batch at a time, against the
feedback log's clicks read by DuckDB from its files: memory follows the batch, not the log."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.aggregates import write_aggregates
from recsys.data.append import DAY_FOLDER, Base
from recsys.data.offline import connect, offline_dir, read_repo_meta, read_schema
from recsys.data.serving_logs import FEEDBACK_FIELDS, feedback_dir, served_batches
from recsys.data.summary import summarize
from recsys.data.writer import write_offline_store
from recsys.errors import DataError
from recsys.schema import EVENT_TIMESTAMP, INTERACTIONS, ITEM_ID, LABEL, USER_ID


class NothingNew(DataError):
    """No served impression to import since the last import (`recsys follow` waits)."""


LABEL_WINDOW_SECONDS = 1800.0  # a click within this long after the item was served labels it
DAY_US = 86_400_000_000


def import_served(repo: Path, window_seconds: float = LABEL_WINDOW_SECONDS,
                  now: datetime | None = None) -> dict:
    """Append the served impressions at least `window_seconds` old (at `now`) that no earlier
    import took; the new metadata, with this import's record under `served`."""
    meta, schema = read_repo_meta(repo), read_schema(repo)
    window = int(window_seconds * 1_000_000)
    cutoff = int((now or datetime.now(timezone.utc)).timestamp() * 1_000_000) - window
    imports = meta.raw.get("served", [])
    since = imports[-1]["until_us"] if imports else -1
    if cutoff <= since:
        raise NothingNew(f"{repo}: the served log up to {_iso(since)} is imported; impressions "
                        f"after it are not {window_seconds:g} s old yet (the label window)")
    columns = schema.tables()[INTERACTIONS]

    def fill(tmp: Path) -> tuple[dict, object]:
        base = Base(offline_dir(repo), meta, schema, replace_days=False)
        base.link_into(tmp, [])
        counts = _write_rows(repo, tmp, columns, since, cutoff, window, meta)
        days = sorted(p.name.removeprefix(DAY_FOLDER) for p in
                      (tmp / INTERACTIONS).glob(f"{DAY_FOLDER}*"))
        last = datetime.fromisoformat(days[-1]).replace(tzinfo=timezone.utc)
        n_days = max(meta.n_days, int(last.timestamp() - meta.start_epoch) // 86_400 + 1)
        write_aggregates(tmp, meta.start_epoch, n_days, schema)
        new = dict(meta.raw, n_rows=meta.n_rows + counts["rows"], n_days=n_days)
        new["served"] = imports + [{"until_us": cutoff, "until": _iso(cutoff),
                                    "window_seconds": window_seconds, **counts}]
        new["summary"] = summarize(tmp, new, schema.scenario_names)
        return new, schema

    return write_offline_store(repo, False, fill, append=True)


def _write_rows(repo: Path, tmp: Path, columns: pa.Schema, since: int, cutoff: int, window: int,
                meta) -> dict:
    """The labeled impressions, into their days' folders of `tmp`; what was taken and left."""
    con = connect(tmp, meta.start_epoch)
    files = [str(f) for f in sorted(feedback_dir(repo).glob("*.jsonl"))]
    nulls = ", ".join(f"NULL::{_duck(f.type)} AS {f.name}" for f in FEEDBACK_FIELDS)
    types = ", ".join(f"'{f.name}': '{_duck(f.type)}'" for f in FEEDBACK_FIELDS)
    # a torn last line (a kill mid-write, never acknowledged) is skipped by ignore_errors
    source = f"read_json({files}, format='newline_delimited', columns={{{types}}}, " \
             f"ignore_errors=true)" if files else f"(SELECT {nulls} WHERE false)"
    con.execute(f"CREATE TEMP TABLE clicks AS SELECT * FROM {source} WHERE clicked")
    counts = {"rows": 0, "clicks": 0, "unknown": 0}
    part = f"part-served-{cutoff}.parquet"
    for batch in served_batches(repo):
        shown = pa.Table.from_batches([batch])
        shown = shown.filter(pc.and_(pc.greater(shown["served_at"], since),
                                     pc.less_equal(shown["served_at"], cutoff)))
        if not shown.num_rows:
            continue
        known = pc.and_kleene(pc.and_kleene(pc.greater_equal(shown[USER_ID], 0),
                                            pc.less(shown[USER_ID], meta.n_users)),
                              pc.and_kleene(pc.greater_equal(shown[ITEM_ID], 0),
                                            pc.less(shown[ITEM_ID], meta.n_items))).fill_null(False)
        counts["unknown"] += shown.num_rows - pc.sum(known).as_py()
        shown = shown.filter(known)
        con.register("shown", shown)
        labeled = con.execute(f"""
            SELECT s.*, EXISTS (SELECT 1 FROM clicks c
                                WHERE c.{USER_ID} = s.{USER_ID} AND c.{ITEM_ID} = s.{ITEM_ID}
                                  AND c.event_timestamp BETWEEN s.served_at
                                                            AND s.served_at + {window}
                                  AND (c.request_id = 0 OR c.request_id = s.request_id)
                               ) AS clicked
            FROM shown s""").fetch_arrow_table()
        con.unregister("shown")
        rows = _as_interactions(labeled, columns)
        times = pc.min_max(labeled["served_at"]).as_py()  # the rows' span: the days built next
        counts["first_us"] = min(counts.get("first_us", times["min"]), times["min"])
        counts["last_us"] = max(counts.get("last_us", times["max"]), times["max"])
        counts["rows"] += rows.num_rows
        counts["clicks"] += pc.sum(rows[LABEL]).as_py() or 0
        day = pc.floor(pc.divide(labeled["served_at"], DAY_US))
        for d in pc.unique(day).to_pylist():
            folder = tmp / INTERACTIONS / f"{DAY_FOLDER}{_iso(int(d) * DAY_US)[:10]}"
            folder.mkdir(parents=True, exist_ok=True)
            taken = rows.filter(pc.equal(day, d))
            path = folder / part
            if path.exists():  # the day's earlier batches of this import, then this one
                taken = pa.concat_tables([pq.read_table(path), taken])
            pq.write_table(taken, path)
    if not counts["rows"]:
        after = "" if since < 0 else " (the last import's end)"
        raise NothingNew(f"{repo}: no served impression of a user and item the store holds "
                        f"between {_iso(since)}{after} and {_iso(cutoff)} ({counts['unknown']} "
                        f"of others): nothing new to import; serve more, or wait out the "
                        f"label window")
    return counts


def _as_interactions(labeled: pa.Table, columns: pa.Schema) -> pa.Table:
    """The rows in the interactions table's columns and types: the served time as the event
    time, the click as the label, what the served log lacks (p_true, a context the model did
    not read) null."""
    n = labeled.num_rows
    values = {EVENT_TIMESTAMP: pc.cast(labeled["served_at"], pa.timestamp("us", tz="UTC")),
              LABEL: pc.cast(labeled["clicked"], pa.int8())}
    return pa.table({f.name: values[f.name].cast(f.type) if f.name in values else
                     labeled[f.name].cast(f.type) if f.name in labeled.column_names else
                     pa.nulls(n, f.type) for f in columns}, schema=columns)


def _duck(arrow_type: pa.DataType) -> str:
    return {pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}[arrow_type]


def _iso(us: int) -> str:
    return datetime.fromtimestamp(max(us, 0) / 1_000_000, timezone.utc).isoformat()

