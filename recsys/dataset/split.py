"""The chronological split and the cold-start definitions, shared by the generator's summary and
by build-dataset so both count the same thing."""

from __future__ import annotations

from recsys.schema import FEW_SHOT_MAX

SPLITS = ("train", "val", "test")


def split_of_day(day: int, n_days: int) -> str:
    """Last day is test, the day before is validation, everything earlier is training."""
    if day >= n_days - 1:
        return "test"
    if day == n_days - 2:
        return "val"
    return "train"


def train_days(n_days: int) -> int:
    """Number of leading days that form the training split."""
    return n_days - 2


def cold_start_flags_sql(interactions: str, n_days: int) -> str:
    """DuckDB query: (request_id, day_index, zero_shot_user, few_shot_user, zero_shot_item,
    few_shot_item) for every row of the relation `interactions` (which has a day_index column).

    Zero-shot: the user / item has no training interaction; few-shot: 1..FEW_SHOT_MAX of them.
    Training rows are flagged by the same counts, so few-shot users are visible there too.
    """
    t = train_days(n_days)

    def flags(n: str, who: str) -> str:
        return (f"coalesce({n}, 0) = 0 AS zero_shot_{who}, "
                f"coalesce({n}, 0) BETWEEN 1 AND {FEW_SHOT_MAX} AS few_shot_{who}")

    return f"""
        WITH train AS (SELECT user_id, item_id FROM {interactions} WHERE day_index < {t}),
             tu AS (SELECT user_id, count(*) AS n FROM train GROUP BY user_id),
             ti AS (SELECT item_id, count(*) AS n FROM train GROUP BY item_id)
        SELECT i.request_id, i.day_index, {flags('tu.n', 'user')}, {flags('ti.n', 'item')}
        FROM {interactions} AS i
        LEFT JOIN tu ON i.user_id = tu.user_id
        LEFT JOIN ti ON i.item_id = ti.item_id
    """
