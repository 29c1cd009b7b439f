"""What a server answers with, built and swapped by one loader: a run's scorer (its features
and model), the history writer and the recommender that use it, and the headers naming it.
The served log (one per app) outlives the swaps. `--watch DIR` loads a newer run here, in the
watcher's thread, checks it, and swaps it in with one assignment; every request reads
`Serving.served` once, so it ends on the run it started with."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from recsys.data.offline import read_repo_meta
from recsys.data.online import freshness
from recsys.serve.feedback import HistoryWriter
from recsys.serve.metrics import ServerMetrics
from recsys.serve.recommender import Recommender
from recsys.serve.scorer import Request as ScoreRequest
from recsys.serve.scorer import Scorer
from recsys.serve.served_log import ServedLog
from recsys.serve.settings import Settings
from recsys.serve.swap import SWAP_DIR_ENV, Follower, SwapBoard
from recsys.serve.watch import RunWatcher

log = logging.getLogger("recsys.serve")


@dataclass(frozen=True)
class Served:
    """One run's serving objects, replaced whole."""

    scorer: Scorer
    history_writer: HistoryWriter
    recommender: Recommender | None
    headers: dict

    @classmethod
    def of(cls, scorer: Scorer, recommender: Recommender | None) -> "Served":
        info = scorer.info
        return cls(scorer, HistoryWriter(scorer, scorer.schema),
                   recommender.ranked_by(scorer) if recommender else None,
                   {"X-Recsys-Model": f"{info['name']} {info['model_fingerprint']}",
                    "X-Recsys-Run": info["run"],
                    "X-Recsys-Dataset": str(info["dataset_fingerprint"])})

    def labels(self) -> tuple[str, str]:
        return self.scorer.info["run"], self.scorer.info["model_fingerprint"]


class Serving:
    """The loader: the first run's serving objects, and each newer one `--watch` finds."""

    def __init__(self, settings: Settings, metrics: ServerMetrics, scorer: Scorer | None = None):
        self.settings, self.metrics = settings, metrics
        board = SwapBoard(Path(os.environ[SWAP_DIR_ENV])) \
            if settings.watch and os.environ.get(SWAP_DIR_ENV) else None
        # a worker started after a swap serves the run the supervisor switched to
        run = (Follower.current_run(board) if board else None) or settings.run
        scorer = scorer or self._scorer(Path(run))
        recommender = Recommender(scorer, Path(settings.retrieval), Path(settings.repo),
                                  settings.refresh_seconds) if settings.retrieval else None
        self._served = Served.of(scorer, recommender)
        self.served_log = ServedLog(Path(settings.repo), settings.log_flush_seconds) \
            if settings.log_served else None
        metrics.serving.labels(*self._served.labels()).set(1)
        for warning in self.warnings():
            log.warning(warning)
        # --watch: one worker watches DIR itself; one of several follows its supervisor
        self.follower = Follower(board, self.load, self.swap, lambda s: s.scorer.close()) \
            if board else None
        self.watcher = self._watch() if settings.watch and not board else None

    def freshness(self) -> dict:
        """The log's latest instant, its days not materialized yet and each view's
        materialized-until (data.online), also set in the metrics."""
        store = self._served.scorer.features.store
        store.refresh_registry()
        found = freshness(store, Path(self.settings.repo))
        if found["log_latest"]:
            self.metrics.log_latest.set(datetime.fromisoformat(found["log_latest"]).timestamp())
        pending = found["pending_days"]
        self.metrics.pending_days.set(-1 if pending is None else len(pending))
        for view, until in found["views"].items():
            if until:
                self.metrics.materialized.labels(view).set(
                    datetime.fromisoformat(until).timestamp())
        return found

    def warnings(self, fresh: dict | None = None) -> list[str]:
        """What a person should know: the online store behind the log (`fresh`: the
        freshness just read, else read here), a run trained on data the repo no longer
        holds."""
        out, repo = [], self.settings.repo
        pending = (fresh or self.freshness())["pending_days"]
        if pending:
            out.append(f"the online store is behind the log: {len(pending)} day(s) since "
                       f"{pending[0]} not materialized; run `recsys materialize --repo {repo}`")
        scorer = self._served.scorer
        held = read_repo_meta(Path(repo)).origin()
        if scorer.trained_on is not None and scorer.trained_on != held:
            out.append(f"{scorer.info['run']} was trained on data the repo no longer holds "
                       f"(its dataset was built of {scorer.trained_on}, the repo now holds "
                       f"{held}): build and train on the repo's data again")
        return out

    @property
    def served(self) -> Served:
        """The serving run's objects (a following worker first takes a switch the board
        announced)."""
        if self.follower is not None:
            self.follower.follow()
        return self._served

    def _scorer(self, run: Path) -> Scorer:
        return Scorer(run, Path(self.settings.repo), self.settings.refresh_seconds)

    def load(self, run: Path) -> Served:
        """A newer run's serving objects, checked against the serving run's."""
        serving = self._served
        scorer = self._scorer(run)
        try:
            check_swappable(serving.scorer.info, scorer)
        except BaseException:
            scorer.close()
            raise
        return Served.of(scorer, serving.recommender)

    def swap(self, new: Served) -> None:
        old, self._served = self._served, new
        self.metrics.serving.labels(*old.labels()).set(0)
        self.metrics.serving.labels(*new.labels()).set(1)
        old.scorer.close()  # stops its cache refresh; requests still on it finish

    def _watch(self) -> RunWatcher:
        s = self.settings
        return RunWatcher(Path(s.watch), s.watch_seconds, Path(s.run), self.load, self.swap,
                          lambda result: self.metrics.swaps.labels(result).inc()).start()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.follower is not None:
            self.follower.close()
        if self.served_log is not None:
            self.served_log.close()
        self._served.scorer.close()


def check_run(serving: dict, run: Path, repo: Path) -> None:
    """check_swappable of a run not served yet: loaded, checked, let go (the supervisor of
    several workers and `recsys follow` check a run so before offering it)."""
    scorer = Scorer(run, repo, refresh_seconds=0)
    try:
        check_swappable(serving, scorer)
    finally:
        scorer.close()


def check_swappable(serving: dict, new: Scorer) -> None:
    """A run (`new`) may replace the serving one (`serving`: its info) if it reads the same
    repo's features the same way and scores a request: refused (ValueError) otherwise, before
    any request reaches it."""
    for what in ("schema", "feature_service", "scenarios"):
        if serving[what] != new.info[what]:
            raise ValueError(f"its {what} {new.info[what]!r} is not the serving run's "
                             f"{serving[what]!r}")
    first = np.zeros(1, dtype=np.int64)  # the first user and item of the store
    scores = new.score(ScoreRequest(new.features.users.raw_ids(first)[0], 0,
                                    new.features.items.raw_ids(first))).scores
    if not np.isfinite(scores).all():
        raise ValueError(f"it scored a request {scores.tolist()}: not a probability")
