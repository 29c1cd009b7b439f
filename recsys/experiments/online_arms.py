"""The arms of `recsys experiment online`: each ranks its users' candidates and learns (or not)
from what it served.

- `Popularity`: the items' clicks in the repo's log, ranked in this process (no server, no
  update): the baseline a ranker must beat.
- `Served`: a real `recsys serve --watch` process on a copy of the repo of its own (its own
  online store, served log and feedback log), started on the given run. Its update, `never`,
  `daily` or `slice`, is one `recsys follow` cycle (follow.cycle) on its own logs, published
  into the folder its server watches; the arm waits until the server answers with the new run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from recsys.data.offline import connect, offline_dir, read_repo_meta
from recsys.errors import DataError
from recsys.features.feature_store import copy_applied
from recsys.serve.settings import free_port
from recsys.schema import INTERACTIONS, ITEM_ID, LABEL

FLUSH_SECONDS = 0.2  # each server's served-log interval: an update waits two of them
SERVE_FLAGS = ("--watch-seconds", "0.5", "--refresh-seconds", "1", "--log-flush-seconds",
               str(FLUSH_SECONDS))
LABEL_WINDOW_SECONDS = 1.0  # every click is sent right after its answer, so a second is plenty
STARTUP_SECONDS = 300.0  # a server's load, or a swap, taking longer than this is a failure


class Popularity:
    """Ranks candidates by their clicks in the log the repo holds."""

    name, update, cycle_seconds = "popularity", "never", []

    def __init__(self, repo: Path):
        meta = read_repo_meta(repo)
        con = connect(offline_dir(repo), meta.start_epoch)
        try:
            ids, clicks = con.execute(f"SELECT {ITEM_ID}, sum({LABEL})::DOUBLE FROM "
                                      f"{INTERACTIONS} GROUP BY ALL").fetchnumpy().values()
        finally:
            con.close()
        self.clicks = np.zeros(meta.n_items)
        self.clicks[ids] = clicks
        self.run = "popularity"

    def ready(self) -> None:
        pass

    def score(self, user_id: int, scenario: int, items: np.ndarray, context: dict,
              shown: int) -> tuple[np.ndarray, int]:
        return self.clicks[items], 0

    def clicked(self, events: list[dict]) -> None:
        pass

    def close(self) -> None:
        pass


class Served:
    """One `recsys serve` process over its own copy of the repo, and its update rule."""

    def __init__(self, name: str, update: str, repo: Path, run: Path, folder: Path, log):
        import httpx

        self.name, self.update, self.log = name, update, log
        self.cycle_seconds: list[float] = []
        self.repo, self.watch = folder / "repo", folder / "runs"
        copy_applied(repo, self.repo, ignore=("feedback", "served"))
        shutil.copytree(run, self.watch / run.name)
        self.server_log = folder / "serve.log"
        port = free_port()
        with open(self.server_log, "w") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "recsys"), "serve", "--watch", str(self.watch),
                 "--repo", str(self.repo), "--port", str(port), *SERVE_FLAGS],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self.run, self.context = "", []

    def ready(self) -> None:
        """Wait for the server to answer (the servers of all arms load at once)."""
        self.run = self._wait(lambda run: True, "start")
        self.context = self.client.get("/metadata").json()["context"]

    def score(self, user_id: int, scenario: int, items: np.ndarray, context: dict,
              shown: int) -> tuple[np.ndarray, int]:
        """Each candidate's score (in `items`' order) and the answer's request ID; the server
        logs the `shown` best as impressions."""
        answer = self._post("/score", {"user_id": int(user_id), "scenario": int(scenario),
                                       "item_ids": items.tolist(), "shown": shown,
                                       "context": {k: context[k] for k in self.context
                                                   if k in context}})
        by_item = {s[ITEM_ID]: s["score"] for s in answer["scores"]}
        return np.array([by_item[i] for i in items.tolist()]), answer["request_id"]

    def clicked(self, events: list[dict]) -> None:
        if events:
            self._post("/feedback", events)

    def updated(self) -> None:
        """One follow cycle on what this arm served and was clicked; returns once the server
        answers with the new run."""
        from recsys.follow import cycle

        time.sleep(LABEL_WINDOW_SECONDS + 2 * FLUSH_SECONDS)  # the served log flushed
        started = time.perf_counter()
        published = cycle(self.repo, self.watch, LABEL_WINDOW_SECONDS,
                          log=lambda line: self.log(f"{self.name}: {line}"))
        if published is not None:
            self.run = self._wait(lambda run: Path(run).name == published.name, "swap")
        # log -> published -> answering: what a click waits for, less the label window
        self.cycle_seconds.append(round(time.perf_counter() - started, 1))

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _post(self, path: str, body) -> dict:
        response = self.client.post(path, json=body)
        if response.status_code != 200:
            raise DataError(f"arm {self.name}: {path} answered {response.status_code}: "
                            f"{response.text} (server log: {self.server_log})")
        return response.json()

    def _wait(self, ready, what: str) -> str:
        """The run the server answers with, once `ready(run)`."""
        import httpx

        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DataError(f"arm {self.name}: its server exited (see {self.server_log})")
            try:
                response = self.client.get("/health")
                if response.status_code == 200 and ready(run := response.headers["X-Recsys-Run"]):
                    return run
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise DataError(f"arm {self.name}: no {what} within {STARTUP_SECONDS:.0f} s (see "
                        f"{self.server_log})")
