"""The offline feedback log: every event `POST /feedback` accepts, on disk before the answer.

Each server process appends JSON lines to a file of its own under the repo's `data/feedback/`
(no two processes share a file, so no line is torn by another) and fsyncs before the request
is answered: an acknowledged event survives a kill -9 of the server. A process killed while
writing leaves at most one unfinished last line, of an event that was never acknowledged;
`data.serving_logs.read_feedback` leaves it out. The log is what a training set of the served
days is made from; the online history is what the next `/score` reads."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from recsys.data.serving_logs import FEEDBACK_FIELDS as FIELDS
from recsys.data.serving_logs import feedback_dir


class _OnePerRepo:
    """One instance per process and repo (`of`): the serving objects a hot swap replaces go on
    with the same one."""

    _made = threading.Lock()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._open = {}

    @classmethod
    def of(cls, repo: Path):
        with _OnePerRepo._made:
            key = repo.resolve()
            if key not in cls._open:
                cls._open[key] = cls(repo)
            return cls._open[key]


class FeedbackLog(_OnePerRepo):
    """This process's file of the log, opened for appending on first use."""

    def __init__(self, repo: Path):
        self.folder = feedback_dir(repo)
        self.path = self.folder / (f"{socket.gethostname()}-{os.getpid()}-"
                                   f"{time.time_ns() // 1000}.jsonl")
        self.lock = threading.Lock()
        self._file = None

    def append(self, events: list[tuple[int, int, int, bool, int, int]]) -> None:
        """(user, item, scenario, clicked, time µs, request) each, on disk when this returns."""
        received = time.time_ns() // 1000
        lines = "".join(json.dumps(dict(zip(FIELDS.names, (*e, received)))) + "\n"
                        for e in events)
        with self.lock:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(lines)
            self._file.flush()
            os.fsync(self._file.fileno())


class HistoryLock(_OnePerRepo):
    """One writer at a time for the users' online histories, across every server process of
    one machine on the repo (an exclusive flock on a file beside the log) and every thread of
    this one: a click's merge (read the history, add it, write it back) is never interleaved
    with another's, so neither is lost."""

    def __init__(self, repo: Path):
        self.path = feedback_dir(repo) / "history.lock"
        self.threads = threading.Lock()
        self._fd = None

    def __enter__(self) -> "HistoryLock":
        self.threads.acquire()
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self.threads.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.threads.release()

    def stamp(self) -> datetime:
        """A write time (held lock only) later than any before it on the repo: an online store
        keeps a row only over an older one (Redis skips a write not strictly newer), so two
        processes' writes within one clock tick must still be ordered. The last one lives in
        the lock file."""
        last = os.pread(self._fd, 32, 0).strip()
        now = max(time.time_ns() // 1000, int(last or 0) + 1)
        os.pwrite(self._fd, f"{now:>20}".encode(), 0)
        return datetime.fromtimestamp(now / 1_000_000, timezone.utc)
