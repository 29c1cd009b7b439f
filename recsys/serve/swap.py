"""One swap for every worker of `recsys serve --workers N --watch DIR`.

The supervisor process alone watches DIR (serve.watch's RunWatcher). A new run is checked there
(loaded, compared with the serving one, one request scored) and then offered to the workers in
two steps, through a folder of small files they share (`SwapBoard`):

1. `prepare.json` names the run and a generation; each worker loads it beside the serving one,
   checks it and says `ready-<generation>-<pid>` (or `failed-...`, which calls the swap off);
2. once all N are ready, `switch.json` names the generation: each worker puts the prepared run
   in service at its next request (a request reads the board's switch first, one stat call), so
   every answer that starts after the switch is written comes from the new run.

A worker that fails to prepare, or not all N ready within READY_SECONDS, refuses the run for
all (they keep serving the old one). A worker started later (uvicorn restarts a dead one) starts
with the run the switch names. Each worker loads each run once."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

SWAP_DIR_ENV = "RECSYS_SERVE_SWAP"  # the board's folder, set by the supervisor for its workers
READY_SECONDS = 300.0  # how long the supervisor waits for every worker to load a new run
FOLLOW_SECONDS = 0.05  # how often a worker looks for a run to prepare
log = logging.getLogger("recsys.serve")


class SwapBoard:
    """The shared folder: prepare.json, switch.json ({"generation", "run"}, each written whole
    by a rename) and one empty file per worker's answer to a prepare."""

    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, name: str, generation: int, run: str | None) -> None:
        tmp = self.folder / f".{name}.{os.getpid()}"
        tmp.write_text(json.dumps({"generation": generation, "run": run}))
        os.replace(tmp, self.folder / name)

    def read(self, name: str) -> dict | None:
        try:
            return json.loads((self.folder / name).read_text())
        except FileNotFoundError:
            return None

    def answer(self, generation: int, ok: bool) -> None:
        (self.folder / f"{'ready' if ok else 'failed'}-{generation}-{os.getpid()}").touch()

    def answers(self, generation: int) -> tuple[int, int]:
        """(ready, failed) workers of a generation."""
        return (len(list(self.folder.glob(f"ready-{generation}-*"))),
                len(list(self.folder.glob(f"failed-{generation}-*"))))


class Coordinator:
    """The supervisor's side: `offer(run)` (a RunWatcher's load: raises when the run is
    refused) prepares a checked run in every worker; `switch(run)` (its swap) puts it in
    service everywhere."""

    def __init__(self, board: SwapBoard, workers: int, check: Callable[[Path], None]):
        self.board, self.workers, self.check = board, workers, check
        self.generation = 0

    def offer(self, run: Path) -> Path:
        self.check(run)  # loaded and scored here once before any worker spends on it
        self.generation += 1
        self.board.write("prepare.json", self.generation, str(run))
        deadline = time.monotonic() + READY_SECONDS
        while True:
            ready, failed = self.board.answers(self.generation)
            if ready >= self.workers:
                return run
            if failed or time.monotonic() > deadline:
                self.board.write("prepare.json", self.generation, None)  # called off
                raise ValueError(f"{failed} worker(s) failed to load it" if failed else
                                 f"{ready} of {self.workers} workers loaded it in "
                                 f"{READY_SECONDS:.0f} s")
            time.sleep(FOLLOW_SECONDS)

    def switch(self, run: Path) -> None:
        self.board.write("switch.json", self.generation, str(run))


class Follower:
    """A worker's side: prepares what the board offers (in a thread, `load(run)` -> loaded),
    and `follow()` (per request) swaps the prepared run in once the board switches to it."""

    def __init__(self, board: SwapBoard, load: Callable, swap: Callable, drop: Callable):
        self.board, self.load, self.swap, self.drop = board, load, swap, drop
        self.prepared: tuple[int, object] | None = None
        self.offered = self.switched = 0
        self._seen = None  # switch.json's (mtime, size) when last read
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._prepare_loop, daemon=True, name="swap-follow").start()

    @staticmethod
    def current_run(board: SwapBoard) -> str | None:
        """The run the board last switched to (a worker starting late serves it)."""
        switched = board.read("switch.json")
        return switched["run"] if switched else None

    def follow(self) -> None:
        try:
            st = os.stat(self.board.folder / "switch.json")
        except FileNotFoundError:
            return
        if (st.st_mtime_ns, st.st_size) == self._seen:
            return
        with self._lock:
            switched = self.board.read("switch.json")
            self._seen = (st.st_mtime_ns, st.st_size)
            if switched["generation"] <= self.switched:
                return
            if self.prepared is None or self.prepared[0] != switched["generation"]:
                self.prepared = (switched["generation"], self.load(Path(switched["run"])))
            self.swap(self.prepared[1])
            self.switched, self.prepared = switched["generation"], None
            log.info("worker %d: now serving %s", os.getpid(), switched["run"])

    def _prepare_loop(self) -> None:
        while not self._stop.wait(FOLLOW_SECONDS):
            offer = self.board.read("prepare.json")
            if offer is None or offer["generation"] <= self.offered:
                continue
            self.offered = offer["generation"]
            if offer["run"] is None:  # called off: what was prepared for it is let go
                with self._lock:
                    if self.prepared is not None and self.prepared[0] == offer["generation"]:
                        self.drop(self.prepared[1])
                        self.prepared = None
                continue
            try:
                loaded = self.load(Path(offer["run"]))
            except Exception as e:  # noqa: BLE001 the supervisor refuses it for everyone
                log.error("worker %d: cannot load %s: %s", os.getpid(), offer["run"], e)
                self.board.answer(offer["generation"], False)
                continue
            with self._lock:
                if self.prepared is not None:  # an older offer never switched to
                    self.drop(self.prepared[1])
                self.prepared = (offer["generation"], loaded)
            log.info("worker %d: loaded %s", os.getpid(), offer["run"])
            self.board.answer(offer["generation"], True)

    def close(self) -> None:
        self._stop.set()
