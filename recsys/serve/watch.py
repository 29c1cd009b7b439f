"""`recsys serve --watch DIR`: the server follows a folder of runs. DIR's newest finished run
(or the run its CURRENT file names) is loaded and checked in a background thread, then swapped
in by one assignment; a request reads the serving run once, so one in flight finishes on the
model it started with. A run that fails to load or to check is refused, logged and counted, and
the old one keeps serving; it is tried again only once its files change.

The loading and the checking are the app's (a Scorer for the run, and one scored request); this
module decides when, and keeps the server serving whatever happens."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from recsys.errors import UsageError
from recsys.run import CONFIG, METRICS, Run

POINTER = "CURRENT"  # a file in DIR naming the run to serve (relative to DIR, or absolute)
# the watcher thread's nice value: loading a run takes longer, the requests beside it less
LOAD_NICENESS = 19
log = logging.getLogger("recsys.serve")


def newest_run(folder: Path) -> Path | None:
    """The run DIR asks to serve: the one CURRENT names, else the newest finished run (by the
    time its metrics.json, written last, appeared); None when there is none yet."""
    pointer = folder / POINTER
    if pointer.is_file():
        name = pointer.read_text().strip()
        return folder / name if name else None
    finished = [p for p in folder.iterdir() if p.is_dir() and Run(p).finished] \
        if folder.is_dir() else []
    return max(finished, key=lambda p: ((p / METRICS).stat().st_mtime_ns, p.name), default=None)


def first_run(folder: Path) -> Path:
    """The run a watching server starts with, or a UsageError saying what DIR lacks."""
    if not folder.is_dir():
        raise UsageError(f"--watch {folder}: no such folder; pass the folder your runs are "
                         f"trained into", fields="watch")
    found = newest_run(folder)
    if found is None:
        raise UsageError(f"--watch {folder}: no finished run in it yet; train one into it "
                         f"(`recsys train --out {folder}/<name>`) or write the run's path "
                         f"into {folder / POINTER}", fields="watch")
    return found


def _version(run: Path) -> tuple:
    """What changes when a run folder is written again: its files' times and sizes."""
    files = [run / CONFIG, run / METRICS, Run(run).weights]
    return tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else None
                 for f in files)


class RunWatcher:
    """Polls `folder` every `seconds`. `load(run)` builds what serves a run and raises on a run
    that cannot serve (it checks, too); `swap(loaded)` puts it in service; `count(result)` is
    told "swapped" or "refused" of each run tried."""

    def __init__(self, folder: Path, seconds: float, serving: Path, load: Callable,
                 swap: Callable, count: Callable[[str], None]):
        self.folder, self.seconds = folder, seconds
        self.load, self.swap, self.count = load, swap, count
        self.tried = (serving.resolve(), _version(serving))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="run-watch")

    def start(self) -> "RunWatcher":
        self._thread.start()
        return self

    def poll(self) -> str | None:
        """One look at the folder: "swapped", "refused", or None (nothing new)."""
        try:
            found = newest_run(self.folder)
            if found is None:
                return None
            seen = (found.resolve(), _version(found))
        except OSError as e:  # the folder being written right now: look again next time
            log.warning("--watch %s: %s", self.folder, e)
            return None
        if seen == self.tried:
            return None
        self.tried = seen  # a refused run is not loaded again until its files change
        try:
            loaded = self.load(found)
        except Exception as e:  # noqa: BLE001 anything a bad run raises: the old one serves
            log.error("--watch %s: refused %s, still serving the previous run: %s",
                      self.folder, found, e)
            self.count("refused")
            return "refused"
        self.swap(loaded)
        log.info("--watch %s: now serving %s", self.folder, found)
        self.count("swapped")
        return "swapped"

    def _watch(self) -> None:
        # loading a run is background work: the request threads come first for the cores
        with contextlib.suppress(OSError, AttributeError):  # (Linux: a thread's own nice)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICENESS)
        while not self._stop.wait(self.seconds):
            self.poll()

    def close(self) -> None:
        self._stop.set()
