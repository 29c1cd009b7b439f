"""The online store against the offline log: `recsys materialize` brings it up to date, and
`freshness` says how far each view is materialized beside the log's latest instant.

Feast's `materialize-incremental` starts where its last run ended, in event time. A log that
grows by days dated before that end (a synthetic world's days, an import of yesterday after a
materialization to now) is then never materialized: the interval runs backwards and Feast says
nothing. `materialize` goes by the log's files instead: it remembers each day's files (names,
sizes, times) at its last run (`data/materialized.json`), and materializes from the first day
that is new or changed (or from its last end, when rows stamped after it have come of age) up
to now, every view, through Feast's own `materialize`. The first run takes the whole log."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from recsys.data.append import DAY_FOLDER
from recsys.data.offline import offline_dir, read_repo_meta
from recsys.features.feature_store import MATERIALIZED as STATE
from recsys.features.feature_store import open_store
from recsys.schema import EVENT_TIMESTAMP, INTERACTIONS


def _days(repo: Path) -> dict[str, list]:
    """Each day folder of the log: its files' (name, size, mtime)."""
    log = offline_dir(repo) / INTERACTIONS
    return {p.name.removeprefix(DAY_FOLDER): sorted(  # lists: as the state's JSON reads back
        [f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in p.glob("*.parquet"))
        for p in sorted(log.glob(f"{DAY_FOLDER}*"))}


def log_latest(repo: Path) -> datetime | None:
    """The latest event time of the log (its last day's files' statistics, no data read)."""
    folders = sorted((offline_dir(repo) / INTERACTIONS).glob(f"{DAY_FOLDER}*"))
    if not folders:
        return None
    folder, latest = folders[-1], None
    for f in folder.glob("*.parquet"):
        meta = pq.ParquetFile(f).metadata
        column = meta.schema.to_arrow_schema().get_field_index(EVENT_TIMESTAMP)
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is not None and stats.has_min_max:
                latest = stats.max if latest is None else max(latest, stats.max)
    return latest


def materialize(repo: Path, now: datetime | None = None) -> dict:
    """Materialize what the log gained since the last run, up to now: {"from", "to", "days"}
    (no "from": nothing to do). Rows stamped after now (the aggregates of a day are stamped up
    to a week after it) are left for a later run: the online store never holds a value from
    the future, which training, joined point in time, never sees."""
    path = repo / STATE
    days, state = _days(repo), _state(repo)
    now = now or datetime.now(timezone.utc)
    if state is None:  # never ran here: the whole log
        changed, start = sorted(days), datetime.fromtimestamp(read_repo_meta(repo).start_epoch,
                                                             timezone.utc)
    else:
        changed = sorted(d for d, files in days.items() if state["days"].get(d) != files)
        until = datetime.fromisoformat(state["until"])
        start = min([until, *(_midnight(d) for d in changed[:1])])
        if not changed and not _came_of_age(repo, until, now):
            return {"days": 0}
    open_store(repo).materialize(start - timedelta(days=1), now)
    tmp = path.with_suffix(f".{os.getpid()}")
    tmp.write_text(json.dumps({"days": days, "until": now.isoformat()}))
    os.replace(tmp, path)
    return {"from": start.isoformat(), "to": now.isoformat(), "days": len(changed)}


def pending_days(repo: Path, days: dict | None = None) -> list[str] | None:
    """The log's days (`days`: as `_days` just listed them) new or changed since the last
    `materialize` (None: it never ran here, so what the online store holds is not known:
    Feast's own intervals cannot tell a day added behind their end)."""
    state = _state(repo)
    if state is None:
        return None
    days = _days(repo) if days is None else days
    return sorted(d for d, files in days.items() if state["days"].get(d) != files)


def _state(repo: Path) -> dict | None:
    """What the last `materialize` saw: {"days": each day's files, "until": its end}; None
    when it never ran (or ran before it kept its end: then it runs over the whole log)."""
    path = repo / STATE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return state if "until" in state else None


def _came_of_age(repo: Path, until: datetime, now: datetime) -> bool:
    """Whether rows stamped after the last run's end may be due by now: a day began since
    (the aggregates are stamped at midnights), or the log reaches past that end."""
    latest = log_latest(repo)
    return until.date() < now.date() or (latest is not None and latest > until)


def _midnight(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)


def freshness(store, repo: Path) -> dict:
    """The log's latest event time, the days `materialize` has yet to take, and each feature
    view's materialized-until (the end of Feast's last interval: None, never materialized)."""
    latest = log_latest(repo)
    views = {}
    for view in store.list_feature_views():
        ends = [b for _, b in view.materialization_intervals]
        views[view.name] = max(ends).isoformat() if ends else None
    return {"log_latest": latest.isoformat() if latest else None,
            "pending_days": pending_days(repo), "views": views}
