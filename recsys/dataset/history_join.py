"""The user's history as of each row of a partition, by DuckDB's ASOF join on the
user_history view: the view's latest row at or before the row (the view is stamped a
microsecond after the clicks it holds), none when older than the view's TTL; Feast's
point-in-time semantics.

Partitions come in time order, so the view is read once, not once a partition: a table keeps
each user's latest view row before the current partition's start, and a partition reads only
the view rows of its own time range beside it (the view is written in time order, so the
Parquet reader skips the other row groups). That table lives in a DuckDB file in the build's
spill folder, checkpointed after each update: a row per user of the data (200M at AntM2C's
scale) stays on disk, compressed, and rows it replaces are reclaimed, never held in memory."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from recsys.data.offline import table_glob
from recsys.schema import EVENT_TIMESTAMP, HISTORY_VIEW, USER_ID, Schema

ROW = "_row"  # the key a partition's rows are joined back on: its row number (a request
# ID names several rows where a request showed several items, as the served log's do)
LATEST = "history.latest"  # the table of each user's latest view row, in its own file


class HistoryJoin:
    def __init__(self, con, offline: Path, ttl: timedelta, schema: Schema, spill: Path):
        self.con = con
        spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"ATTACH '{spill / 'history-latest.duckdb'}' AS history")
        self.names = [f.name for f in schema.view_features(HISTORY_VIEW.name)]
        self.cols = f"{USER_ID}, {EVENT_TIMESTAMP}, {', '.join(self.names)}"  # a view row's
        self.view = f"read_parquet('{table_glob(offline, HISTORY_VIEW.name)}')"
        self.ttl_s = int(ttl.total_seconds())
        self.covered: int | None = None  # LATEST holds the view's rows stamped before this
        con.execute(f"CREATE OR REPLACE TABLE {LATEST} AS SELECT {self.cols} FROM {self.view} "
                    f"LIMIT 0")

    def columns(self) -> str:
        """The SELECT's history columns (of the clause's `pit`), null past the TTL."""
        fresh = f"pit.ts >= part.{EVENT_TIMESTAMP} - INTERVAL {self.ttl_s} SECOND"
        return "".join(f", CASE WHEN {fresh} THEN pit.{n} END AS {n}" for n in self.names)

    def clause(self, start: int, end: int) -> str:
        """The join clause giving each row of `part` (rows in [start, end), epoch us) its
        history row as `pit`; moves LATEST up to `start` first."""
        self._advance(start)
        users = f"{USER_ID} IN (SELECT {USER_ID} FROM part)"
        return f"""
        JOIN (SELECT part.{ROW} AS rid, h.{EVENT_TIMESTAMP} AS ts,
                     {', '.join(f'h.{n}' for n in self.names)}
              FROM part ASOF LEFT JOIN (
                  SELECT {self.cols} FROM {LATEST} WHERE {users}
                  UNION ALL
                  SELECT {self.cols} FROM {self.view}
                  WHERE {self._between(start, end)} AND {users}) h
              ON part.{USER_ID} = h.{USER_ID}
                 AND part.{EVENT_TIMESTAMP} >= h.{EVENT_TIMESTAMP}) pit
        ON pit.rid = part.{ROW}"""

    def _advance(self, start: int) -> None:
        """Fold the view's rows stamped in [covered, start) into LATEST, a row per user."""
        if self.covered is not None and start <= self.covered:
            return  # another bucket of the same days
        new = f"{LATEST}_new"
        self.con.execute(f"""
            CREATE OR REPLACE TABLE {new} AS
            SELECT {self.cols} FROM {self.view} WHERE {self._between(self.covered, start)}
            QUALIFY row_number() OVER (PARTITION BY {USER_ID}
                                       ORDER BY {EVENT_TIMESTAMP} DESC) = 1""")
        self.con.execute(f"DELETE FROM {LATEST} WHERE {USER_ID} IN (SELECT {USER_ID} FROM {new})")
        self.con.execute(f"INSERT INTO {LATEST} SELECT * FROM {new}")
        self.con.execute(f"DROP TABLE {new}")
        self.con.execute("CHECKPOINT history")  # to disk; the replaced rows' space reclaimed
        self.covered = start

    @staticmethod
    def _between(start: int | None, end: int) -> str:
        # on the column itself, so that the Parquet reader prunes row groups by their min / max
        low = "" if start is None else f"{EVENT_TIMESTAMP} >= make_timestamp({start}) AND "
        return f"{low}{EVENT_TIMESTAMP} < make_timestamp({end})"
