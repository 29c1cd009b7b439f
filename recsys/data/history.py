"""The user_history view, computed by DuckDB from the interactions of an offline store (the
generator and the importers write it the same way).

After every instant a user clicked, one row: his last `history_length` clicks up to and
including that instant (item, scenario, time), most recent first, stamped one microsecond
later. Feast's point-in-time join takes, for an impression, the latest row stamped at or before
it: the clicks strictly before the impression, never its own nor a sibling's at the same
instant. A user with no click before an impression gets no row, which the build turns into an
empty history."""

from __future__ import annotations

import shutil
from pathlib import Path

from recsys.data.offline import connect, write_query
from recsys.memory import GiB
from recsys.schema import EVENT_TIMESTAMP, HISTORY_ITEMS, HISTORY_SCENARIOS, HISTORY_TIMES, \
    HISTORY_VIEW, ITEM_ID, LABEL, REQUEST_ID, SCENARIO, USER_ID, Schema

HISTORY_MEMORY = 2 * GiB


def history_sql(length: int, interactions: str = "interactions") -> str:
    """The view's rows from a log's rows (`interactions`: a table or a subquery)."""
    # clicks in a fixed order, ties at one instant broken by request and item: the same log
    # gives the same lists
    return f"""
        WITH clicks AS (
            SELECT {USER_ID} AS u, {ITEM_ID} AS i, {SCENARIO} AS s, {EVENT_TIMESTAMP} AS t,
                   row_number() OVER (PARTITION BY {USER_ID}
                                      ORDER BY {EVENT_TIMESTAMP}, {REQUEST_ID}, {ITEM_ID}) AS k
            FROM {interactions} WHERE {LABEL} = 1),
        lists AS (
            SELECT u, t, k, list(i) OVER w AS items, list(s) OVER w AS scenarios,
                   list(epoch_us(t)) OVER w AS times
            FROM clicks
            WINDOW w AS (PARTITION BY u ORDER BY k ROWS BETWEEN {length - 1} PRECEDING
                         AND CURRENT ROW))
        SELECT u AS {USER_ID}, t + INTERVAL 1 MICROSECOND AS {EVENT_TIMESTAMP},
               list_reverse(items) AS {HISTORY_ITEMS},
               list_reverse(scenarios) AS {HISTORY_SCENARIOS},
               list_reverse(times) AS {HISTORY_TIMES}
        FROM lists
        QUALIFY k = max(k) OVER (PARTITION BY u, t)  -- the instant's last click: all of them
        ORDER BY u, t"""


def write_history(offline: Path, schema: Schema) -> None:
    """The user_history table of `offline` from its interactions, under a fixed memory budget
    (DuckDB spills beyond it)."""
    spill = offline / ".history-spill"
    con = connect(offline, 0, memory_bytes=HISTORY_MEMORY, spill=spill)
    write_query(con, history_sql(schema.history_length),
                offline / HISTORY_VIEW.name / "part-00000.parquet",
                schema.tables()[HISTORY_VIEW.name])
    con.close()
    shutil.rmtree(spill, ignore_errors=True)
