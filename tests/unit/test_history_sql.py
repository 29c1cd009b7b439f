"""The history view's SQL on a hand-made log, in process: after each instant a user clicked,
his last `length` clicks up to it, most recent first (ties at one instant by request, then
item), stamped a microsecond later, each with its item's category as of the click; against an
independent replay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb

from recsys.data.history import history_sql

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
# (request, seconds after T0, user, item, scenario, label): user 1 clicks twice at t=10
LOG = [(1, 0, 1, 5, 0, 1), (2, 10, 1, 6, 1, 1), (3, 10, 1, 7, 2, 1), (4, 20, 1, 8, 0, 0),
       (5, 30, 1, 9, 3, 1), (6, 5, 2, 4, 1, 0), (7, 40, 2, 3, 4, 1)]
# (item, seconds after T0, category): item 6 changes category at t=10, item 9 at t=31 (after
# its click); item 3 has no profile row
PROFILE = [(5, 0, 50), (6, 0, 60), (6, 10, 61), (7, 0, 70), (8, 0, 80), (9, 0, 90), (9, 31, 91),
           (4, 0, 40)]


def _category(item: int, at: int):
    """The item's category in its latest profile row at or before `at`."""
    rows = sorted((t, c) for i, t, c in PROFILE if i == item and t <= at)
    return rows[-1][1] if rows else -1  # none known: the unknown code


def _replay(length: int) -> list[tuple]:
    rows = []
    for user in sorted({r[2] for r in LOG}):
        clicks = sorted((r[1], r[0], r[3], r[4]) for r in LOG if r[2] == user and r[5] == 1)
        for at in sorted({c[0] for c in clicks}):
            upto = [c for c in clicks if c[0] <= at][-length:][::-1]
            rows.append((user, T0 + timedelta(seconds=at, microseconds=1),
                         [c[2] for c in upto], [c[3] for c in upto],
                         [int((T0 + timedelta(seconds=c[0])).timestamp() * 1_000_000)
                          for c in upto],
                         [_category(c[2], c[0]) for c in upto]))
    return rows


def _by_user(row):
    return row[0], row[1]


def _log_table(log) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection holding `log` as its interactions table."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE interactions (request_id BIGINT, event_timestamp TIMESTAMPTZ, "
                "user_id BIGINT, item_id BIGINT, scenario BIGINT, label TINYINT)")
    con.executemany("INSERT INTO interactions VALUES (?, ?, ?, ?, ?, ?)",
                    [(r[0], T0 + timedelta(seconds=r[1]), *r[2:]) for r in log])
    return con


def test_history_sql_equals_a_replay():
    con = _log_table(LOG)
    con.execute("CREATE TABLE item_profile (item_id BIGINT, event_timestamp TIMESTAMPTZ, "
                "item_category BIGINT)")
    con.executemany("INSERT INTO item_profile VALUES (?, ?, ?)",
                    [(i, T0 + timedelta(seconds=t), c) for i, t, c in PROFILE])
    carried = (("item_category", "item_profile"),)
    for length in (1, 2, 50):
        got = [tuple(row) for row in
               con.execute(history_sql(length, item_features=carried)).fetchall()]
        assert [r[1] for r in got] == sorted(r[1] for r in got)  # in time order
        assert sorted(got, key=_by_user) == _replay(length), length
    # a repo whose clicks carry no item feature: the three lists alone
    assert sorted((tuple(r) for r in con.execute(history_sql(2)).fetchall()), key=_by_user) \
        == [r[:5] for r in _replay(2)]
    # the two clicks of one instant make one row holding both
    assert [r[2] for r in _replay(2) if r[0] == 1] == [[5], [7, 6], [9, 7]]
    assert [r[5] for r in _replay(50) if r[0] == 1][-1] == [90, 70, 61, 50]  # as of each click
    assert _replay(50)[-1][5] == [-1]  # an item without a profile row: the unknown code


def test_feedback_merges_clicks_where_the_sql_puts_them():
    """One rule for the build and for /feedback: clicks sent one at a time, in any order, ties
    at one instant among them, merge into the list the SQL gives for the whole log."""
    import itertools
    import random

    from recsys.data.history import merge_clicks

    # user 1: three clicks at t=10 from two requests, two of them in one request
    log = [(1, 0, 1, 5, 0, 1), (3, 10, 1, 7, 2, 1), (2, 10, 1, 6, 1, 1), (3, 10, 1, 4, 1, 1),
           (4, 20, 1, 8, 0, 1), (5, 30, 1, 9, 3, 1)]
    con = _log_table(log)
    rng = random.Random(0)
    for length in (2, 3, 50):
        sql = con.execute(history_sql(length)).fetchall()[-1]  # after the last click
        expected = list(zip(sql[2], sql[3], sql[4]))
        orders = list(itertools.permutations(log))
        for order in rng.sample(orders, 40):
            history: list[tuple] = []
            for request, at, _, item, scenario, _ in order:  # each click its own request
                us = int((T0 + timedelta(seconds=at)).timestamp() * 1_000_000)
                history = merge_clicks(history, [(request, (item, scenario, us))], length)
            if _ties_arrive_in_order(order):
                assert history == expected, (length, order)
        # whatever the order within it, one batch holding every click gives the SQL's list
        batch = [(r[0], (r[3], r[4], int((T0 + timedelta(seconds=r[1])).timestamp()
                                           * 1_000_000))) for r in log]
        assert merge_clicks([], batch, length) == expected, length
    # latest first, ties by the later request then the larger item
    assert [c[0] for c in merge_clicks([], batch, 50)] == [9, 8, 7, 4, 6, 5]


def _ties_arrive_in_order(order) -> bool:
    """Whether the clicks of one instant arrive in the order the rule ranks them (a stored
    click keeps no request, so a later arrival at the same instant cannot pass it)."""
    tied = [(r[0], r[3]) for r in order if r[1] == 10]
    return tied == sorted(tied)
