"""The pieces of a growing log, in process: the days an append takes, the columns and
cardinalities it keeps, a build window's bounds, a grown table's rows, and which run a watching
server picks from a folder."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import duckdb
import pytest
import torch

from recsys.data.split import Window, choose_split
from recsys.dataset.build import plan_partitions
from recsys.errors import UsageError
from recsys.run import METRICS
from recsys.serve.watch import POINTER, newest_run
from recsys.train.warm_start import grow


def test_a_window_takes_whole_days_both_included():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE t AS SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + "
                "INTERVAL (i) HOUR AS event_timestamp FROM range(96) r(i)")  # four days
    window = Window.of("2026-01-02", "2026-01-03")
    days = con.execute(f"SELECT DISTINCT event_timestamp::DATE FROM t WHERE {window.where()} "
                       f"ORDER BY 1").fetchall()
    assert [str(d) for (d,) in days] == ["2026-01-02", "2026-01-03"]
    assert con.execute(f"SELECT count(*) FROM t WHERE {Window.of('2026-01-03', None).where()}"
                       ).fetchone()[0] == 48
    assert Window().where() == "TRUE" and Window().to_json() is None
    assert Window.of("2026-01-02", "2026-01-03").to_json()["to"] == "2026-01-03"
    assert window.start == int(datetime(2026, 1, 2, tzinfo=timezone.utc).timestamp()) * 10**6
    with pytest.raises(UsageError, match="ends before it starts"):
        Window.of("2026-01-03", "2026-01-02")


def test_a_span_of_instants_partitions_only_its_rows():
    """`recsys follow` builds one import's impressions: a span inside a day, whose
    partitions must not reach the rest of that day (an earlier import's rows)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE t AS SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + "
                "INTERVAL (i) MINUTE AS event_timestamp, i AS user_id FROM range(600) r(i)")
    first = int(datetime(2026, 1, 1, 2, tzinfo=timezone.utc).timestamp()) * 10**6
    span = Window.span(first, first + 59 * 60 * 10**6)  # 02:00 .. 02:59, both included
    con.execute(f"CREATE VIEW w AS SELECT * FROM t WHERE {span.where()}")
    split = choose_split(con, "w")
    for max_rows in (1_000, 25):  # one run of days; the day in hash buckets
        parts = plan_partitions(con, split, max_rows, "w", span)
        taken = sum(con.execute(f"SELECT count(*) FROM t WHERE {p.where()}").fetchone()[0]
                    for p in parts)
        assert taken == sum(sum(p.rows.values()) for p in parts) == 60
    assert span.to_json() == {"from": "2026-01-01T02:00:00+00:00",
                              "to": "2026-01-01T02:59:00+00:00"}


def test_a_grown_table_keeps_known_rows_and_the_unknown_row_last():
    old = torch.arange(4 * 2, dtype=torch.float32).view(4, 2)  # 3 IDs, then the unknown row
    fresh = torch.full((6, 2), -1.0)  # 5 IDs now
    grown = grow(old, fresh)
    torch.testing.assert_close(grown[:3], old[:3])
    torch.testing.assert_close(grown[3:5], fresh[3:5])  # the new IDs: as a fresh run starts
    torch.testing.assert_close(grown[5], old[3])
    assert torch.equal(fresh, torch.full((6, 2), -1.0))  # not written in place


def _run(folder, name: str, finished_at: int | None):
    path = folder / name
    path.mkdir()
    if finished_at is not None:
        (path / METRICS).write_text("{}")
        os.utime(path / METRICS, ns=(finished_at, finished_at))
    return path


def test_a_watching_server_picks_the_newest_finished_run_or_the_pointer(tmp_path):
    assert newest_run(tmp_path) is None
    _run(tmp_path, "monday", 1_000_000_000)
    tuesday = _run(tmp_path, "tuesday", 2_000_000_000)
    _run(tmp_path, "training", None)  # no metrics.json: not finished, not served
    assert newest_run(tmp_path) == tuesday
    (tmp_path / POINTER).write_text("monday\n")
    assert newest_run(tmp_path) == tmp_path / "monday"


def test_an_append_takes_later_days_and_replaces_held_ones_only_when_forced(tmp_path):
    from datetime import date

    from recsys.data.append import Base
    from recsys.errors import DataError, OutputExistsError
    from recsys.antm2c import ANTM2C

    offline = tmp_path / "offline"
    for day in ("2026-01-01", "2026-01-02"):
        (offline / "interactions" / f"day={day}").mkdir(parents=True)
    base = Base(offline, {"start_epoch": 0}, ANTM2C, replace_days=False)
    later = [date(2026, 1, 3), date(2026, 1, 5)]
    assert base.check_days(later, ["new.csv"]) == []
    held = [date(2026, 1, 2), date(2026, 1, 3)]
    with pytest.raises(OutputExistsError, match="already holds 2026-01-02 .*--force"):
        base.check_days(held, ["new.csv"])
    forced = Base(offline, {"start_epoch": 0}, ANTM2C, replace_days=True)
    assert forced.check_days(held, ["new.csv"]) == [date(2026, 1, 2)]
    with pytest.raises(DataError, match="new.csv: rows of 2025-12-31 are before the repo's "
                                        "first day 2026-01-01"):
        forced.check_days([date(2025, 12, 31)], ["new.csv"])


def test_a_described_column_is_the_column_and_grown_cardinalities_replace_the_old():
    from pathlib import Path

    from recsys.data.import_columns import Column, ColumnStats
    from recsys.antm2c import ANTM2C

    for declared, why in ((True, "declared"), (False, "short strings")):
        col = Column("items", Path("items.csv"), "genre", "categorical", "|", declared, why,
                     ColumnStats(), "item_genre")
        again = Column.described(col.describe(), Path("items.csv"))
        assert again.describe() == col.describe() and again.name == "item_genre"
    name = next(f.name for f in ANTM2C.features if f.kind == "categorical" and f.cardinality)
    grown = ANTM2C.with_cardinalities({name: 12_345})
    assert {f.name: f.cardinality for f in grown.features}[name] == 12_345
    assert [f for f in grown.features if f.name != name] == \
        [f for f in ANTM2C.features if f.name != name]
