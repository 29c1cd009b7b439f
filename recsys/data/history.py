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

from recsys.data.offline import connect, write_query
from recsys.memory import GiB
from recsys.schema import EVENT_TIMESTAMP, HISTORY_ITEMS, HISTORY_ORDER, HISTORY_SCENARIOS, \
    HISTORY_TIMES, HISTORY_VIEW, ITEM_ID, LABEL, SCENARIO, UNKNOWN_CODE, USER_ID, Schema, \
    history_column

HISTORY_MEMORY = 2 * GiB
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


def write_history(offline: Path, schema: Schema) -> None:
    """The user_history table of `offline` from its interactions, under a fixed memory budget
    (DuckDB spills beyond it)."""
    spill = offline / ".history-spill"
    con = connect(offline, 0, memory_bytes=HISTORY_MEMORY, spill=spill)
    views = {f.name: f.view for f in schema.features}  # each a DuckDB view of connect's
    item_features = tuple((f, views[f]) for f in schema.history_item_features)
    write_query(con, history_sql(schema.history_length, item_features=item_features),
                offline / HISTORY_VIEW.name / "part-00000.parquet",
                schema.tables()[HISTORY_VIEW.name], HISTORY_ROW_GROUP_ROWS)
    con.close()
    shutil.rmtree(spill, ignore_errors=True)


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
