"""`recsys generate`: write the synthetic world into a feature repo's offline store.

Impressions are produced in chunks, each a pure function of (seed, day, chunk), in parallel
worker processes; entity snapshots are pure functions of (seed, id); aggregates are computed
afterwards by DuckDB from the written impressions. Everything lands in a temporary folder that
replaces the old offline store only when complete.

To fan a large preset out over machines, `--chunks a:b` writes only chunks a..b-1 (numbered
over the whole run) into the repo's staging folder for (preset, rows, seed), one file each,
skipping files already there; the plain `recsys generate` that follows takes the staged chunks
in instead of producing them again, and writes the rest.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import shutil
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data import vectors
from recsys.data.aggregates import write_aggregates
from recsys.data.append import Base
from recsys.data.presets import START, Preset
from recsys.data.offline import check_repo, offline_dir, read_repo_meta
from recsys.data.writer import write_offline_store
from recsys.data.summary import summarize
from recsys.data.synth import ENTITY_CHUNK, World
from recsys.errors import DataError, RecsysError, UsageError
from recsys.schema import EVENT_TIMESTAMP, INTERACTIONS, ITEM_ID, LABEL, P_TRUE, REQUEST_ID, \
    SCENARIO, TIMESTAMP_TYPE, USER_ID
from recsys.antm2c import ANTM2C, DEEP_FEATURES, TABLES
from recsys.memory import check_fits, free_disk
from recsys.files import check_output_free, link_or_copy, replacing

START_EPOCH = int(START.timestamp())
_WORLD: World | None = None  # set in the parent before forking the workers


def staging_dir(repo: Path, preset: Preset, seed: int) -> Path:
    feed = "-feed" if preset.feed else ""
    return repo / "data" / "staging" / \
        f"{preset.name}-rows{preset.n_rows}-days{preset.n_days}-seed{seed}{feed}"


def parse_chunks(text: str, preset: Preset) -> range:
    """`a:b` -> chunks a..b-1 of the preset's run, checked against its chunk count."""
    total = len(chunk_plan(preset))
    try:
        first, end = (int(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"chunks {text}: write it as FIRST:END, e.g. 0:{min(total, 10)} "
                         f"(the {preset.name} preset is cut into {total})",
                         fields="chunks") from None
    if not 0 <= first < end <= total:
        raise UsageError(f"chunks {text}: need 0 <= FIRST < END <= {total} (the "
                         f"{preset.name} preset with {preset.n_rows:,} rows is cut into {total})",
                         fields="chunks")
    return range(first, end)


def generate_chunks(repo: Path, preset: Preset, chunks: range, seed: int = 0, workers: int = 1,
                    progress: bool = True) -> dict:
    """Write impression chunks `chunks` into the staging folder; a chunk whose file is already
    there is kept (a rerun resumes)."""
    _check_args(repo, seed, workers)
    folder = staging_dir(repo, preset, seed) / INTERACTIONS
    tasks = [task for i, task in enumerate(_tasks(folder, preset)) if i in chunks]
    todo = [t for t in tasks if not _part_path(*t[:3]).exists()]
    _build_world(preset, seed)
    _run(todo, workers, sum(t[3] for t in todo), progress)
    return {"staging": str(folder.parent), "chunks": len(tasks), "written": len(todo),
            "rows": sum(t[3] for t in todo)}


def _check_args(repo: Path, seed: int, workers: int) -> None:
    check_repo(repo)
    if seed < 0:
        raise UsageError(f"seed {seed}: the seed must be a non-negative integer", fields="seed")
    if workers < 1:
        raise UsageError(f"workers {workers}: need at least one worker", fields="workers")


def _build_world(preset: Preset, seed: int) -> None:
    global _WORLD
    _WORLD = World(preset, seed)


# The offline store's bytes per impression (large preset: 6.7 GB for 100M rows), a floor for
# the disk a generation needs.
DISK_BYTES_PER_ROW = 60


def generate(repo: Path, preset: Preset, seed: int = 0, workers: int = 1, force: bool = False,
             progress: bool = True, until: int | None = None, append: bool = False) -> dict:
    """Generate `preset` into `repo`'s offline store and return its metadata with a summary.
    `until`: only the world's days before it (its users and items that have arrived by
    then); `append`: the days after those the repo holds, onto the same world's store."""
    _check_args(repo, seed, workers)
    until = preset.n_days if until is None else until
    if not 1 <= until <= preset.n_days:
        raise UsageError(f"until {until}: the world's last day is {preset.n_days - 1}; pass "
                         f"1..{preset.n_days}, or a longer world (more --days)", fields="until")
    held = _held_days(repo, preset, seed, until) if append else 0
    if not append:
        check_output_free(offline_dir(repo), force)  # fail before building the world
    rows = day_rows(preset, range(held, until))
    check_fits(f"rows {rows:,}", rows * DISK_BYTES_PER_ROW,
               free_disk(repo), f"disk at {repo}", "pass fewer rows or free some space", "rows")
    _build_world(preset, seed)
    staged = staging_dir(repo, preset, seed)

    def fill(tmp: Path) -> dict:
        _write_impressions(tmp, preset, workers, progress, staged / INTERACTIONS,
                           range(held, until))
        _write_entities(_WORLD, tmp, until)
        if append:  # the days the repo holds, and the vectors made for it, as they are
            Base(offline_dir(repo), read_repo_meta(repo), ANTM2C, False).link_into(tmp, [])
        write_aggregates(tmp, START_EPOCH, until, ANTM2C)
        meta = {"preset": preset.name, "seed": seed, "n_users": preset.n_users,
                "n_items": preset.n_items,
                "n_rows": day_rows(preset, range(until)),
                "n_days": until, "start": START.isoformat(), "start_epoch": START_EPOCH,
                "world": {"n_days": preset.n_days, "n_rows": preset.n_rows,
                          "feed": preset.feed},
                "scenario_bias": [round(float(b), 4) for b in _WORLD.bias]}
        meta["summary"] = summarize(tmp, meta, ANTM2C.scenario_names)
        return meta, ANTM2C

    meta = write_offline_store(repo, force, fill, append=append, progress=progress)
    if append:  # what the command says it added (not kept in meta.json)
        meta["appended_days"] = [(START + timedelta(days=d)).date().isoformat()
                                 for d in (held, until - 1)]
    shutil.rmtree(staged, ignore_errors=True)  # its chunks are in the store now
    if staged.parent.is_dir() and not any(staged.parent.iterdir()):
        staged.parent.rmdir()
    return meta


def _held_days(repo: Path, preset: Preset, seed: int, until: int) -> int:
    """The days a generated repo holds, checked to be of this world and fewer than `until`."""
    meta = read_repo_meta(repo)
    if meta.world is None:
        raise DataError(f"{offline_dir(repo)}: generated by an older recsys (its meta.json has "
                        f"no world); generate it again with --force", fields="append")
    world = meta.world
    ours = {"preset": preset.name, "seed": seed, "days": preset.n_days, "rows": preset.n_rows,
            "feed": preset.feed}
    theirs = {"preset": meta.preset, "seed": meta.seed, "days": world["n_days"],
              "rows": world["n_rows"], "feed": world["feed"]}
    differ = [f"{k} {theirs[k]} (not {ours[k]})" for k in ours if ours[k] != theirs[k]]
    if differ:
        raise UsageError(f"{offline_dir(repo)}: holds another world ({', '.join(differ)}); "
                         f"--append continues the world the repo was generated from: pass its "
                         f"--preset, --seed, --days, --rows and --feed", fields="append")
    if until <= meta.n_days:
        raise UsageError(f"until {until}: the repo holds days 0..{meta.n_days - 1} already; "
                         f"pass a later --until (at most {preset.n_days})", fields="until")
    return meta.n_days


def day_rows(preset: Preset, days: range) -> int:
    """The rows of `days`: the preset's rows per day, the last day taking the remainder."""
    last = preset.n_days - 1
    return sum(preset.rows_per_day if day < last else
               preset.n_rows - preset.rows_per_day * last for day in days)


def chunk_plan(preset: Preset) -> list[tuple[int, int, int]]:
    """(day, chunk, rows) for every chunk."""
    plan = []
    for day in range(preset.n_days):
        rows = day_rows(preset, range(day, day + 1))
        for chunk, first in enumerate(range(0, rows, preset.rows_per_chunk)):
            plan.append((day, chunk, min(preset.rows_per_chunk, rows - first)))
    return plan


def _timestamps(seconds: np.ndarray) -> pa.Array:
    micros = (START_EPOCH + np.asarray(seconds, dtype=np.int64)) * 1_000_000
    return pa.array(micros, pa.int64()).cast(TIMESTAMP_TYPE)


def _part_path(folder: Path, day: int, chunk: int) -> Path:
    date = (START + timedelta(days=day)).date().isoformat()
    return folder / f"day={date}" / f"part-{chunk:05d}.parquet"


def _tasks(folder: Path, preset: Preset) -> list[tuple[Path, int, int, int]]:
    return [(folder, day, chunk, n) for day, chunk, n in chunk_plan(preset)]


def _write_chunk(task: tuple[Path, int, int, int]) -> int:
    folder, day, chunk, n = task
    rows = _WORLD.impressions(day, chunk, n)
    columns = {REQUEST_ID: rows.request_id, EVENT_TIMESTAMP: _timestamps(rows.seconds),
               USER_ID: rows.user_id, ITEM_ID: rows.item_id, SCENARIO: rows.scenario,
               **dict(zip(DEEP_FEATURES, rows.deep)), LABEL: rows.label,
               P_TRUE: rows.p_true}
    table = pa.table(columns).cast(TABLES[INTERACTIONS])
    part = _part_path(folder, day, chunk)
    part.parent.mkdir(parents=True, exist_ok=True)
    with replacing(part) as tmp:  # a killed worker leaves no half-written part
        pq.write_table(table, tmp)
    return n


def _die_with_parent() -> None:
    """A worker ends with the command, even when the command is killed with -9 (no chance to
    shut its pool down): the kernel sends it SIGKILL when its parent exits (Linux's
    PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was already gone before prctl
        os._exit(1)


def _run(tasks: list, workers: int, rows: int, progress: bool) -> None:
    def bar():  # closed before any error is printed
        return tqdm(total=rows, unit="rows", unit_scale=True, desc="impressions",
                    disable=not progress)

    if workers == 1:
        with bar() as shown:
            for task in tasks:
                shown.update(_write_chunk(task))
        return
    # fork: workers inherit the World built above. An executor, not a Pool: a worker that
    # dies (killed, out of memory) ends the command instead of leaving it waiting forever.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                               initializer=_die_with_parent)
    try:
        # the workers are forked by the first submit, before the bar shows: Python loses a
        # Ctrl-C that lands inside a fork (printed as an ignored exception, the run goes on)
        futures = [pool.submit(_write_chunk, t) for t in tasks]
        with bar() as shown:
            for done in as_completed(futures):
                shown.update(done.result())
    except BrokenProcessPool:
        raise RecsysError("a generator worker died (killed, or out of memory): rerun "
                          "with fewer workers", fields="workers") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _write_impressions(tmp: Path, preset: Preset, workers: int, progress: bool,
                       staged: Path, days: range) -> None:
    """Every chunk of `days` into tmp: taken from `staged` where a `--chunks` run wrote it,
    else made."""
    todo = []
    for task in _tasks(tmp / INTERACTIONS, preset):
        if task[1] not in days:
            continue
        ready = _part_path(staged, *task[1:3])
        if ready.exists():  # a hard link: the staged chunk stays until the store is in place
            link_or_copy(ready, _part_path(*task[:3]))
        else:
            todo.append(task)
    _run(todo, workers, sum(t[3] for t in todo), progress)


def _write_entities(world: World, tmp: Path, until: int) -> None:
    """Profile and text snapshots, stamped at arrival / launch (user text also at a refresh),
    of the users and items that have arrived before day `until`."""
    p = world.preset
    for part, lo in enumerate(range(0, p.n_users, ENTITY_CHUNK)):
        ids = np.arange(lo, min(lo + ENTITY_CHUNK, p.n_users), dtype=np.int64)
        arrival = world.user_arrival_day(ids)
        ids, arrival = ids[arrival < until], arrival[arrival < until]
        _write(tmp, "user_profile", part, {USER_ID: ids, EVENT_TIMESTAMP:
               _timestamps(arrival * 86_400), **world.user_profile(ids)})
        refresh = world.user_refresh_day(ids)
        again = refresh < until
        first, second = world.user_text(ids, 0), world.user_text(ids[again], 1)
        _write(tmp, "user_text", part, {
            USER_ID: np.concatenate([ids, ids[again]]),
            EVENT_TIMESTAMP: _timestamps(np.concatenate([arrival, refresh[again]]) * 86_400),
            **{k: pa.concat_arrays([first[k], second[k]]) for k in first}})
    for part, lo in enumerate(range(0, p.n_items, ENTITY_CHUNK)):
        ids = np.arange(lo, min(lo + ENTITY_CHUNK, p.n_items), dtype=np.int64)
        launch = world.item_launch_day(ids)
        ids, stamp = ids[launch < until], _timestamps(launch[launch < until] * 86_400)
        _write(tmp, "item_profile", part, {ITEM_ID: ids, EVENT_TIMESTAMP: stamp,
                                           **world.item_profile(ids)})
        _write(tmp, "item_text", part, {ITEM_ID: ids, EVENT_TIMESTAMP: stamp,
                                        **world.item_text(ids)})
        _write(tmp, "item_image", part, {ITEM_ID: ids, EVENT_TIMESTAMP: stamp,
                                         "item_image_vec": vectors.to_arrow(world.item_image(ids))})


def _write(tmp: Path, table: str, part: int, columns: dict) -> None:
    path = tmp / table / f"part-{part:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns).cast(TABLES[table]), path)
