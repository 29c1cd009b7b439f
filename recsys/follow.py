"""`recsys follow`: what was served and clicked becomes the served model within minutes.

Every cycle (each `every` seconds, or once):
1. `recsys import served`: the served log's impressions a label window old and new since the
   last cycle, labeled by the feedback log, appended to the repo's log (data.served);
2. `recsys materialize`: the online store takes the new day(s) (data.online);
3. those impressions, and no others, are built into a training set (point in time: the
   window from the first one's instant to the last one's), so no update trains again on what
   the run it starts from was trained on;
4. the run DIR serves (its CURRENT or newest finished run) is warm-started on it: its own
   config, the dense layers at UPDATE_DENSE_LR_SHARE of its rate, FOLLOW_EPOCHS passes (one:
   a stream's impressions are each trained on once), kept only where it beats the parent on
   the cycle's validation rows (train.loop);
5. the new run is checked as a watching server checks one (it loads, reads the same schema,
   feature service and scenarios, and scores a request) and moved into DIR under a new name,
   where `recsys serve --watch DIR` swaps it in; DIR keeps the newest KEEP runs (and
   DIR/.follow the last cycle's training set).
A cycle with nothing new says so and waits. A click reaches the served model within the
interval plus the label window, the build and the training."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from recsys.config import FOLLOW_EPOCHS, UPDATE_DENSE_LR_SHARE
from recsys.data.online import materialize
from recsys.data.served import NothingNew, import_served
from recsys.data.split import Window
from recsys.dataset.build import build_dataset
from recsys.run import METRICS, Run
from recsys.serve.scorer import Scorer
from recsys.serve.state import check_run
from recsys.serve.watch import first_run
from recsys.train.loop import train

KEEP = 3  # runs kept in the watched folder (the newest, by when each finished)
WORK = ".follow"  # DIR/.follow: each cycle's dataset and the run being trained


def cycle(repo: Path, watch: Path, window_seconds: float, log=print) -> Path | None:
    """One cycle; the run published, or None when nothing new was served."""
    started = time.perf_counter()
    serving = first_run(watch)
    try:
        meta = import_served(repo, window_seconds)
    except NothingNew:
        log("nothing new served since the last cycle")
        return None
    done = meta["served"][-1]
    log(f"imported {done['rows']:,} served impressions ({done['clicks']:,} clicked)")
    materialize(repo)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    work = watch / WORK
    dataset = work / f"dataset-{stamp}"
    span = Window.span(done["first_us"], done["last_us"])
    build_dataset(repo, dataset, force=True, progress=False, window=span)
    cfg = Run(serving).config()
    cfg = replace(cfg, dense_lr=cfg.dense_lr * UPDATE_DENSE_LR_SHARE, epochs=FOLLOW_EPOCHS)
    name = f"follow-{stamp}"
    staged = work / name
    train(dataset, staged, cfg, force=True, progress=False, log=lambda *a, **k: None,
          init_from=serving)
    _check(serving, staged, repo)
    published = watch / name
    staged.rename(published)  # one rename: a watching server sees a finished run appear
    _prune(watch, published, dataset)
    served = span.to_json()
    log(f"published {published} (warm-started from {serving.name} on the impressions "
        f"served {served['from']} .. {served['to']}) in {time.perf_counter() - started:.0f} s")
    return published


def follow(repo: Path, watch: Path, every_seconds: float, window_seconds: float,
           once: bool = False, log=print) -> None:
    while True:
        cycle(repo, watch, window_seconds, log)
        if once:
            return
        time.sleep(every_seconds)


def _check(serving: Path, new: Path, repo: Path) -> None:
    """As a watching server checks a run before it serves it (serve.state.check_run)."""
    old = Scorer(serving, repo, refresh_seconds=0)  # for its info: what the new one must match
    old.close()
    check_run(old.info, new, repo)


def _prune(watch: Path, keep: Path, dataset: Path) -> None:
    """The newest KEEP finished runs of DIR stay (and `keep`), and the last cycle's dataset;
    older ones go."""
    finished = sorted((p for p in watch.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and Run(p).finished), key=lambda p: (p / METRICS).stat().st_mtime_ns)
    for old in finished[:-KEEP]:
        if old != keep:
            shutil.rmtree(old)
    for old in (watch / WORK).glob("dataset-*"):
        if old != dataset:
            shutil.rmtree(old)

