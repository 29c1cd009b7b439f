"""The aggregate views (user_agg, item_agg, scenario_stats), computed by DuckDB from the
interactions of an offline store: the generator and the importers write them the same way."""

from __future__ import annotations

import shutil
from pathlib import Path

from recsys.data.offline import connect, write_query
from recsys.memory import GiB
from recsys.schema import EVENT_TIMESTAMP, ITEM_ID, USER_ID, Schema

AGGREGATE_MEMORY = 2 * GiB


def user_clicks(code: int) -> str:
    """The user_agg feature counting a user's clicks in scenario `code`."""
    return f"user_clicks_7d_s{code}"


def write_aggregates(offline: Path, start_epoch: int, n_days: int, schema: Schema) -> None:
    """Daily aggregates, stamped at the start of the day they describe the past of (one
    click count per scenario of `schema`).

    A 7-day window changes only on the day after activity enters it (day + 1) or leaves it
    (day + 8), so a row is written exactly then, zeros included: with no TTL expiry the latest
    row at or before any moment is the exact value at that moment.
    """
    # under a fixed budget, spilling beyond it (DuckDB's default is 80% of the machine)
    con = connect(offline, start_epoch, memory_bytes=AGGREGATE_MEMORY,
                  spill=offline / ".aggregates-spill")
    stamp = f"to_timestamp({start_epoch} + s.d * 86400)"
    clicks = ", ".join(f"sum(label) FILTER (WHERE scenario = {s.code}) AS c{s.code}"
                       for s in schema.scenarios)
    user_cols = ", ".join(f"CAST(coalesce(sum(a.c{s.code}), 0) AS INTEGER) "
                          f"AS {user_clicks(s.code)}" for s in schema.scenarios)
    window = f"""
        daily AS (SELECT {{key}}, day_index AS day, {{clicks}}, count(*) AS imp
                  FROM interactions GROUP BY ALL),
        stamps AS (SELECT DISTINCT {{key}}, day + o AS d FROM daily, (VALUES (1), (8)) t(o)
                   WHERE day + o < {n_days})"""
    join = "FROM stamps s LEFT JOIN daily a ON a.{key} = s.{key} AND a.day BETWEEN s.d - 7 " \
           "AND s.d - 1 GROUP BY s.{key}, s.d ORDER BY s.{key}, s.d"
    queries = {
        "user_agg": f"""WITH {window.format(key=USER_ID, clicks=clicks)}
            SELECT s.{USER_ID}, {stamp} AS {EVENT_TIMESTAMP}, {user_cols},
                   CAST(coalesce(sum(a.imp), 0) AS INTEGER) AS user_impressions_7d
            {join.format(key=USER_ID)}""",
        "item_agg": f"""WITH {window.format(key=ITEM_ID, clicks='sum(label) AS c')}
            SELECT s.{ITEM_ID}, {stamp} AS {EVENT_TIMESTAMP},
                   CAST(coalesce(sum(a.c), 0) AS INTEGER) AS item_clicks_7d,
                   CAST(coalesce(sum(a.imp), 0) AS INTEGER) AS item_impressions_7d
            {join.format(key=ITEM_ID)}""",
        # the previous day's statistics, stamped at the start of day d
        "scenario_stats": f"""
            SELECT scenario, to_timestamp({start_epoch} + (day_index + 1) * 86400)
                       AS {EVENT_TIMESTAMP},
                   avg(label) AS scenario_ctr_1d, count(*) AS scenario_impressions_1d
            FROM interactions WHERE day_index + 1 < {n_days}
            GROUP BY scenario, day_index ORDER BY scenario, day_index""",
    }
    tables = schema.tables()
    for table, sql in queries.items():
        write_query(con, sql, offline / table / "part-00000.parquet", tables[table])
    con.close()
    shutil.rmtree(offline / ".aggregates-spill", ignore_errors=True)
