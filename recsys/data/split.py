"""The chronological split and the cold-start definitions, shared by the data summary and by
build-dataset so both count the same thing.

A split is two cuts in time: validation from one timestamp, test from a later one, training
every earlier row; every row at or after a cut belongs to the later split, so nothing of the
future reaches training. Ways to choose the cuts (`SplitSpec`):

- `days`: the last `test_days` days that have rows are test, the `val_days` days with rows
  before them validation. Days without rows are skipped, so gaps do not matter.
- `dates`: validation from `val_from`, test from `test_from` (ISO dates or times, UTC).
- `quantiles`: cuts at the time quantiles of the rows, e.g. 80/10/10 of the rows.
- `auto` (the default): `days` 1/1 where the log has 3 to 30 days with rows and each of its
  last two days holds at least 5% of the rows (a generated log, say), else `quantiles` 80/10/10
  (months of ratings, a single day).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

from recsys.errors import DataError, UsageError
from recsys.schema import EVENT_TIMESTAMP, FEW_SHOT_MAX

SPLITS = ("train", "val", "test")
DAY_US = 86_400_000_000
SPLIT_MODES = ("auto", "days", "dates", "quantiles")
SHARES = (80, 10, 10)  # percent of the rows in train / val / test, by time quantiles
AUTO_DAYS = (3, 30)  # `auto` splits by days for logs with this many days with rows ...
AUTO_MIN_DAY_SHARE = 0.05  # ... whose last two days each hold at least this share of the rows


@dataclass(frozen=True)
class SplitSpec:
    """How to choose the split (see the module's doc); checked by `check`."""

    mode: str = "auto"
    val_days: int = 1
    test_days: int = 1
    val_from: str | None = None
    test_from: str | None = None
    shares: tuple[int, int, int] = SHARES

    def check(self) -> "SplitSpec":
        if self.mode not in SPLIT_MODES:
            raise UsageError(f"split {self.mode}: choose one of {', '.join(SPLIT_MODES)}",
                             fields="split")
        if self.val_days < 1 or self.test_days < 1:
            raise UsageError(f"val_days {self.val_days} test_days {self.test_days}: each "
                             f"must be at least 1", fields=("val_days", "test_days"))
        if self.mode == "dates":
            if not (self.val_from and self.test_from):
                raise UsageError("split dates needs val_from and test_from (ISO dates, "
                                 "e.g. 2026-01-09)", fields=("split", "val_from", "test_from"))
            if _us(self.val_from, "val_from") >= _us(self.test_from, "test_from"):
                raise UsageError(f"val_from {self.val_from} must come before test_from "
                                 f"{self.test_from}", fields=("val_from", "test_from"))
        if len(self.shares) != 3 or min(self.shares) <= 0 or sum(self.shares) != 100:
            raise UsageError(f"shares {'/'.join(map(str, self.shares))}: three positive "
                             f"percentages of train / val / test that sum to 100, e.g. 80/10/10",
                             fields="shares")
        return self


_FLAGS_OF = {"days": ("val_days", "test_days"), "dates": ("val_from", "test_from"),
             "quantiles": ("shares",), "auto": ("shares",)}


def split_spec(mode: str, **flags) -> SplitSpec:
    """The spec of `--split MODE` and its flags (None: not given), checked: a flag of another
    mode is refused rather than ignored."""
    given = {k: v for k, v in flags.items() if v is not None}
    for name in given:
        if mode in _FLAGS_OF and name not in _FLAGS_OF[mode]:
            owner = next(m for m, names in _FLAGS_OF.items() if name in names)
            raise UsageError(f"{name} applies to split {owner}, not split {mode}",
                             fields=(name, "split"))
    if "shares" in given:
        given["shares"] = parse_shares(given["shares"])
    return SplitSpec(mode, **given).check()


def parse_shares(text: str) -> tuple[int, int, int]:
    """'80/10/10' -> (80, 10, 10)."""
    try:
        return tuple(int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"shares {text}: three whole percentages, e.g. 80/10/10",
                         fields="shares") from None


def _us(text: str, field: str) -> int:
    """An ISO date or time (UTC unless it says otherwise) in microseconds since the epoch."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{field} {text}: not an ISO date or time (e.g. 2026-01-09 or "
                         f"2026-01-09T12:00)", fields=field) from None
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1_000_000)


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


@dataclass(frozen=True)
class Window:
    """The rows a build takes (`build-dataset --from DAY --to DAY`): event times in
    [start, end) µs, whole days, None: unbounded on that side. The split is chosen inside the
    window; the user's history and the cold-start counts still read the log before it."""

    start: int | None = None
    end: int | None = None

    @classmethod
    def of(cls, first: str | None, last: str | None) -> "Window":
        """From the first day to the last day, both included (ISO dates, UTC)."""
        start, end = (_day_us(first, "from") if first else None), \
            (_day_us(last, "to") + DAY_US if last else None)
        if start is not None and end is not None and start >= end:
            raise UsageError(f"--from {first} --to {last}: the window ends before it starts; "
                             f"pass --to on or after --from", fields=("from", "to"))
        return cls(start, end)

    @classmethod
    def span(cls, first_us: int, last_us: int) -> "Window":
        """From the instant `first_us` to `last_us`, both included (µs since the epoch)."""
        return cls(first_us, last_us + 1)

    @property
    def whole(self) -> bool:
        return self.start is None and self.end is None

    def where(self, time_us: str = f"epoch_us({EVENT_TIMESTAMP})") -> str:
        """SQL: whether a row whose event time (µs) is `time_us` is in the window."""
        return " AND ".join([*([f"{time_us} >= {self.start}"] if self.start is not None else []),
                             *([f"{time_us} < {self.end}"] if self.end is not None else [])]
                            ) or "TRUE"

    def to_json(self) -> dict | None:
        """Its first and last day (ISO dates; None: unbounded), or None for the whole log."""
        if self.whole:
            return None
        if (self.start or 0) % DAY_US or (self.end or 0) % DAY_US:  # a span of instants
            return {"from": _iso(self.start), "to": _iso(self.end - 1)}
        return {"from": None if self.start is None else _iso(self.start)[:10],
                "to": None if self.end is None else _iso(self.end - DAY_US)[:10]}


def _day_us(text: str, flag: str) -> int:
    """An ISO date (YYYY-MM-DD, a day rather than a time), UTC midnight, in µs since the
    epoch."""
    try:
        date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--{flag} {text}: not an ISO date; pass a day such as 2026-01-09",
                         fields=flag) from None
    return _us(text, flag)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).isoformat()


def choose_split(con, interactions: str = "interactions",
                 spec: SplitSpec = SplitSpec()) -> Split:
    """The split of the relation `interactions` chosen as `spec` says (DuckDB passes over its
    event times); every split must get rows."""
    time = f"epoch_us({EVENT_TIMESTAMP})"
    days = con.execute(f"SELECT {time} // {DAY_US} AS d, count(*) FROM {interactions} "
                       f"GROUP BY d ORDER BY d").fetchall()
    if not days:
        raise DataError("the repo's interaction log has no rows: generate or import data")
    mode, auto = spec.mode, ""
    if mode == "auto":
        total = sum(n for _, n in days)
        fits = AUTO_DAYS[0] <= len(days) <= AUTO_DAYS[1] and \
            min(n for _, n in days[-2:]) >= AUTO_MIN_DAY_SHARE * total
        mode = "days" if fits else "quantiles"
        spec = SplitSpec(mode) if fits else SplitSpec(mode, shares=spec.shares)
        auto = f" (auto: {len(days)} day(s) with rows, the last two with " + \
            (f"at least {AUTO_MIN_DAY_SHARE:.0%} of them each)" if fits else
             f"{days[-1][1]:,} and {days[-2][1] if len(days) > 1 else 0:,} of {total:,})")
    if mode == "days":
        if len(days) < spec.val_days + spec.test_days + 1:
            raise DataError(f"the repo's interaction log has {len(days)} day(s) with rows, too "
                            f"few for {spec.val_days} validation and {spec.test_days} test "
                            f"day(s) and a training day: pass fewer days or split quantiles",
                            fields="split")
        first_val, first_test = days[-spec.test_days - spec.val_days][0], \
            days[-spec.test_days][0]
        split = Split(first_val * DAY_US, first_test * DAY_US,
                      f"days: the last {spec.test_days} day(s) with rows test, the "
                      f"{spec.val_days} before validation{auto}")
    elif mode == "dates":
        split = Split(_us(spec.val_from, "val_from"), _us(spec.test_from, "test_from"),
                      f"dates: validation from {spec.val_from}, test from {spec.test_from}")
    else:
        train, val, _ = spec.shares
        cuts = con.execute(f"SELECT quantile_disc({time}, {train / 100}), "
                           f"quantile_disc({time}, {(train + val) / 100}) "
                           f"FROM {interactions}").fetchone()
        split = Split(*cuts, f"time quantiles {'/'.join(map(str, spec.shares))} of the "
                             f"rows{auto}")
    counts = dict(con.execute(f"SELECT {split.of()} AS s, count(*) FROM {interactions} "
                              f"GROUP BY s").fetchall())
    if any(not counts.get(s) for s in SPLITS):
        raise DataError(f"the repo's interaction log cannot be cut that way ({split.how}): "
                        f"rows per split {counts} of {sum(counts.values()):,}; choose other "
                        f"cuts (split, val_days / test_days, val_from / test_from, "
                        f"shares) or import rows from more points in time",
                        fields=("split", "val_days", "test_days", "val_from", "test_from",
                                "shares"))
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
