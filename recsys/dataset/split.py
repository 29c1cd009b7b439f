"""The chronological split and the cold-start definitions, shared by the data summary and by
build-dataset so both count the same thing.

The split is read off the data, not off a calendar: the last day that has rows is test, the
day with rows before it validation, every earlier row training. Days without rows are skipped,
so a log with gaps or spanning months splits the same way. A log of fewer than three days with
rows is cut at time quantiles instead (80 / 10 / 10 % of the rows), so a single day works too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from recsys.errors import DataError
from recsys.schema import EVENT_TIMESTAMP, FEW_SHOT_MAX

SPLITS = ("train", "val", "test")
DAY_US = 86_400_000_000
QUANTILES = (0.8, 0.9)  # where validation and test start, for logs of fewer than three days


@dataclass(frozen=True)
class Split:
    """Validation starts at `val_start`, test at `test_start` (microseconds since the epoch,
    UTC); training is every earlier row."""

    val_start: int
    test_start: int
    how: str

    def of(self, time_us: str = f"epoch_us({EVENT_TIMESTAMP})") -> str:
        """SQL: the split of a row whose event time (µs) is `time_us`."""
        return (f"CASE WHEN {time_us} >= {self.test_start} THEN 'test' "
                f"WHEN {time_us} >= {self.val_start} THEN 'val' ELSE 'train' END")

    def to_json(self) -> dict:
        return {**asdict(self), "val_from": _iso(self.val_start),
                "test_from": _iso(self.test_start)}


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).isoformat()


def choose_split(con, interactions: str = "interactions") -> Split:
    """The split of the relation `interactions` (one DuckDB pass over its event times)."""
    days = [d for (d,) in con.execute(
        f"SELECT DISTINCT epoch_us({EVENT_TIMESTAMP}) // {DAY_US} AS d FROM {interactions} "
        f"ORDER BY d").fetchall()]
    if not days:
        raise DataError("the repo's interaction log has no rows: generate or import data")
    if len(days) >= 3:
        return Split(days[-2] * DAY_US, days[-1] * DAY_US, "the last two days with rows")
    val, test = con.execute(
        f"SELECT quantile_disc(epoch_us({EVENT_TIMESTAMP}), {QUANTILES[0]}), "
        f"quantile_disc(epoch_us({EVENT_TIMESTAMP}), {QUANTILES[1]}) "
        f"FROM {interactions}").fetchone()
    split = Split(val, test, "time quantiles 80/10/10 (fewer than three days with rows)")
    counts = dict(con.execute(f"SELECT {split.of()} AS s, count(*) FROM {interactions} "
                              f"GROUP BY s").fetchall())
    if any(not counts.get(s) for s in SPLITS):
        raise DataError(f"the repo's interaction log cannot be split in time: its "
                        f"{sum(counts.values()):,} rows have too few distinct timestamps "
                        f"(rows per split: {counts}); import rows from more points in time")
    return split


def train_counts_sql(interactions: str, split: Split, key: str) -> str:
    """DuckDB query: (key, n) training interactions per user / item."""
    return (f"SELECT {key}, count(*) AS n FROM {interactions} "
            f"WHERE epoch_us({EVENT_TIMESTAMP}) < {split.val_start} GROUP BY {key}")


def with_cold_start_flags(rows: str, user_counts: str, item_counts: str) -> str:
    """DuckDB query: the relation `rows` with its cold-start flags, given the training counts
    per user and per item (relations of `train_counts_sql`)."""
    flags = ", ".join((_flags("tu.n", "user"), _flags("ti.n", "item")))
    return (f"SELECT i.*, {flags} FROM {rows} i "
            f"LEFT JOIN {user_counts} tu USING (user_id) LEFT JOIN {item_counts} ti "
            f"USING (item_id)")


def _flags(n: str, who: str) -> str:
    """SQL select items: the zero-shot / few-shot flags of a row whose user / item (`who`) has
    `n` training interactions (null: none). Zero-shot: no training interaction; few-shot:
    1..FEW_SHOT_MAX of them. Training rows are flagged by the same counts, so few-shot users
    are visible there too."""
    return (f"coalesce({n}, 0) = 0 AS zero_shot_{who}, "
            f"coalesce({n}, 0) BETWEEN 1 AND {FEW_SHOT_MAX} AS few_shot_{who}")
