"""Sizes of the synthetic AntM2C world. `tiny` is for tests, `small` for the demo."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from recsys.errors import UsageError

# A fixed start keeps data a pure function of (seed, chunk); the long feature TTL (schema.View)
# keeps it inside `feast materialize-incremental`'s window for years.
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Preset:
    name: str
    n_users: int
    n_items: int
    n_rows: int
    n_days: int
    rows_per_chunk: int
    # Users / items arriving after day 0, as a share of all users / items.
    new_user_frac: float = 0.2
    new_item_frac: float = 0.2
    # Share of a day's impressions that go to the users / items arriving that very day: the
    # zero-shot traffic of the test day.
    new_user_traffic: float = 0.06
    new_item_traffic: float = 0.06
    # The log of a personalized feed, whose users' interests drift (synth.World): off in every
    # preset, `recsys generate --feed` turns it on.
    feed: bool = False

    @property
    def rows_per_day(self) -> int:
        return self.n_rows // self.n_days


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("tiny", n_users=2_000, n_items=400, n_rows=24_000, n_days=6, rows_per_chunk=2_000),
    Preset("small", n_users=20_000, n_items=20_000, n_rows=1_000_000, n_days=8,
           rows_per_chunk=125_000, new_user_frac=0.5),
    # About the public 10M release.
    Preset("medium", n_users=2_000_000, n_items=200_000, n_rows=10_000_000, n_days=10,
           rows_per_chunk=250_000),
    # A tenth of the published scale: end to end on one 2-core, 24 GB machine.
    Preset("large", n_users=20_000_000, n_items=1_000_000, n_rows=100_000_000, n_days=10,
           rows_per_chunk=1_000_000),
    # The published scale: for clusters, chunks spread over many workers.
    Preset("full", n_users=200_000_000, n_items=6_000_000, n_rows=1_000_000_000, n_days=14,
           rows_per_chunk=1_000_000),
)}


def get_preset(name: str, rows: int | None = None, days: int | None = None,
               feed: bool = False) -> Preset:
    """The named preset, optionally with its row count (`--rows`) or its number of days
    (`--days`: a longer or shorter log of the same users and items, at the preset's rows per
    day unless `rows` says otherwise) overridden, and with `feed` the log of a personalized
    feed (`--feed`)."""
    if name not in PRESETS:
        raise UsageError(f"preset {name!r}: unknown; choose one of {', '.join(PRESETS)}",
                         fields="preset")
    preset = PRESETS[name]
    if days is not None:
        if days < 1:
            raise UsageError(f"days {days}: need at least one day", fields="days")
        preset = replace(preset, n_days=days, n_rows=preset.rows_per_day * days)
    if rows is not None:
        if rows < preset.n_days:
            raise UsageError(f"rows {rows}: need at least one row per day "
                             f"({preset.n_days} days in preset '{name}'); pass a larger rows",
                             fields="rows")
        preset = replace(preset, n_rows=rows)
    return replace(preset, feed=True) if feed else preset
