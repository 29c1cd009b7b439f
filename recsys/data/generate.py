"""`recsys generate`: write the synthetic world into a feature repo's offline store.

Impressions are produced in chunks, each a pure function of (seed, day, chunk), in parallel
worker processes; entity snapshots are pure functions of (seed, id); aggregates are computed
afterwards by DuckDB from the written impressions. Everything lands in a temporary folder that
replaces the old offline store only when complete.
"""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data import vectors
from recsys.data.aggregates import write_aggregates
from recsys.data.presets import START, Preset
from recsys.data.store import check_repo, offline_dir, write_offline_store
from recsys.data.summary import summarize
from recsys.data.synth import World
from recsys.errors import UsageError
from recsys.schema import DEEP_FEATURES, EVENT_TIMESTAMP, INTERACTIONS, TABLES, TIMESTAMP_TYPE
from recsys.storage import check_output_free

ENTITY_CHUNK = 1_000_000
START_EPOCH = int(START.timestamp())
_WORLD: World | None = None  # set in the parent before forking the workers


def generate(repo: Path, preset: Preset, seed: int = 0, workers: int = 1, force: bool = False,
             progress: bool = True) -> dict:
    """Generate `preset` into `repo`'s offline store and return its metadata with a summary."""
    check_repo(repo)
    if seed < 0:
        raise UsageError(f"--seed {seed}: the seed must be a non-negative integer")
    if workers < 1:
        raise UsageError(f"--workers {workers}: need at least one worker")
    check_output_free(offline_dir(repo), force)  # fail before building the world
    global _WORLD
    _WORLD = World(preset, seed)

    def fill(tmp: Path) -> dict:
        _write_impressions(tmp, preset, workers, progress)
        _write_entities(_WORLD, tmp)
        write_aggregates(tmp, START_EPOCH, preset.n_days)
        meta = {"preset": preset.name, "seed": seed, "n_users": preset.n_users,
                "n_items": preset.n_items, "n_rows": preset.n_rows, "n_days": preset.n_days,
                "start": START.isoformat(), "start_epoch": START_EPOCH,
                "scenario_bias": [round(float(b), 4) for b in _WORLD.bias]}
        meta["summary"] = summarize(tmp, meta)
        return meta

    return write_offline_store(repo, force, fill)


def chunk_plan(preset: Preset) -> list[tuple[int, int, int]]:
    """(day, chunk, rows) for every chunk; the last day takes the remainder."""
    plan = []
    for day in range(preset.n_days):
        rows = preset.rows_per_day if day < preset.n_days - 1 else \
            preset.n_rows - preset.rows_per_day * (preset.n_days - 1)
        for chunk, first in enumerate(range(0, rows, preset.rows_per_chunk)):
            plan.append((day, chunk, min(preset.rows_per_chunk, rows - first)))
    return plan


def _timestamps(seconds: np.ndarray) -> pa.Array:
    micros = (START_EPOCH + np.asarray(seconds, dtype=np.int64)) * 1_000_000
    return pa.array(micros, pa.int64()).cast(TIMESTAMP_TYPE)


def _write_chunk(task: tuple[Path, int, int, int]) -> int:
    folder, day, chunk, n = task
    rows = _WORLD.impressions(day, chunk, n)
    columns = {"request_id": rows.request_id, EVENT_TIMESTAMP: _timestamps(rows.seconds),
               "user_id": rows.user_id, "item_id": rows.item_id, "scenario": rows.scenario,
               **dict(zip(DEEP_FEATURES, rows.deep)), "label": rows.label,
               "p_true": rows.p_true}
    table = pa.table(columns).cast(TABLES[INTERACTIONS])
    date = (START + timedelta(days=day)).date().isoformat()
    part = folder / f"day={date}" / f"part-{chunk:05d}.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, part)
    return n


def _write_impressions(tmp: Path, preset: Preset, workers: int, progress: bool) -> None:
    folder = tmp / INTERACTIONS
    tasks = [(folder, day, chunk, n) for day, chunk, n in chunk_plan(preset)]
    bar = tqdm(total=preset.n_rows, unit="rows", unit_scale=True, desc="impressions",
               disable=not progress)
    if workers == 1:
        for task in tasks:
            bar.update(_write_chunk(task))
    else:  # fork: workers inherit the World built above
        with mp.get_context("fork").Pool(workers) as pool:
            for n in pool.imap_unordered(_write_chunk, tasks):
                bar.update(n)
    bar.close()


def _write_entities(world: World, tmp: Path) -> None:
    """Profile and text snapshots, stamped at arrival / launch (user text also at a refresh)."""
    p = world.preset
    for part, lo in enumerate(range(0, p.n_users, ENTITY_CHUNK)):
        ids = np.arange(lo, min(lo + ENTITY_CHUNK, p.n_users), dtype=np.int64)
        arrival = world.user_arrival_day(ids)
        _write(tmp, "user_profile", part, {"user_id": ids, EVENT_TIMESTAMP:
               _timestamps(arrival * 86_400), **world.user_profile(ids)})
        refresh = world.user_refresh_day(ids)
        again = refresh < p.n_days
        first, second = world.user_text(ids, 0), world.user_text(ids[again], 1)
        _write(tmp, "user_text", part, {
            "user_id": np.concatenate([ids, ids[again]]),
            EVENT_TIMESTAMP: _timestamps(np.concatenate([arrival, refresh[again]]) * 86_400),
            **{k: pa.concat_arrays([first[k], second[k]]) for k in first}})
    for part, lo in enumerate(range(0, p.n_items, ENTITY_CHUNK)):
        ids = np.arange(lo, min(lo + ENTITY_CHUNK, p.n_items), dtype=np.int64)
        stamp = _timestamps(world.item_launch_day(ids) * 86_400)
        _write(tmp, "item_profile", part, {"item_id": ids, EVENT_TIMESTAMP: stamp,
                                           **world.item_profile(ids)})
        _write(tmp, "item_text", part, {"item_id": ids, EVENT_TIMESTAMP: stamp,
                                        **world.item_text(ids)})
        _write(tmp, "item_image", part, {"item_id": ids, EVENT_TIMESTAMP: stamp,
                                         "item_image_vec": vectors.to_arrow(world.item_image(ids))})


def _write(tmp: Path, table: str, part: int, columns: dict) -> None:
    path = tmp / table / f"part-{part:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns).cast(TABLES[table]), path)
