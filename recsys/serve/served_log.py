"""The served log: every item a `/score` or `/recommend` answer showed, one row each, with the
request, its position and score, the serving run and the features the model saw.

A request only puts what it used (`scorer.Seen`: references, no copies) on a bounded queue; a
thread of the process turns the waiting requests into one Arrow table every `flush_seconds` and
appends it to the process's own file under the repo's `data/served/` (an Arrow IPC stream,
flushed and fsynced). Memory is bounded by the queue (a full queue makes a request wait for the
writer, it never drops one); a clean shutdown writes every waiting request; a kill -9 loses at
most what was answered in the last flush interval (and a torn last batch, which
`data.serving_logs.read_served` leaves out). A file holds one feature layout: a swap to a run
that reads other columns starts a new file. Times are µs since the epoch; IDs and the scenario
are the store's (null: unknown)."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys.data.serving_logs import SERVED_FIELDS as FIELDS
from recsys.data.serving_logs import served_dir
from recsys.serve.scorer import Seen

WAITING = 10_000  # requests queued for the writer at most (then a request waits for it)
log = logging.getLogger("recsys.serve")


def new_request_id() -> int:
    """A request's ID: random, 63 bits (what /feedback's `request_id` names)."""
    return secrets.randbits(63)


@dataclass
class Shown:
    """One answer: the items it showed (Seen's, in the answer's order) and their scores."""

    request_id: int
    served_at: int  # µs
    endpoint: str
    run: str
    model_fingerprint: str
    seen: Seen
    scores: np.ndarray



def served_table(shown: list[Shown]) -> pa.Table:
    """The rows of answers of one layout (`Seen.layout`), one per item shown, in order."""
    counts = [len(s.seen.items) for s in shown]
    request = pa.array(np.repeat(np.arange(len(shown)), counts))  # each row's answer

    def each(values, type):  # an answer's value on each of its rows: one take, in Arrow
        return pa.array(values, type).take(request)

    items = np.concatenate([s.seen.items for s in shown]).astype(np.int64)
    own = [each([s.request_id for s in shown], pa.int64()),
           each([s.served_at for s in shown], pa.int64()),
           each([s.endpoint for s in shown], pa.string()),
           each([s.run for s in shown], pa.string()),
           each([s.model_fingerprint for s in shown], pa.string()),
           each([s.seen.user if s.seen.user >= 0 else None for s in shown], pa.int64()),
           each([s.seen.scenario for s in shown], pa.int64()),
           pa.array(items, mask=items < 0),
           pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in counts])),
           pa.array(np.concatenate([np.asarray(s.scores, dtype=np.float32) for s in shown]))]
    features = Seen.features_of([s.seen for s in shown])
    return pa.table(own + list(features.values()),
                    schema=pa.schema(list(FIELDS) + [pa.field(c, a.type)
                                                     for c, a in features.items()]))


class ServedLog:
    """A server's writer of the served log (one per app, so per worker process): `record` on
    the request's path, the rest in its thread."""

    _files = itertools.count()  # two apps of one process never share a file

    def __init__(self, repo: Path, flush_seconds: float):
        self.folder, self.flush_seconds = served_dir(repo), flush_seconds
        self.waiting: queue.Queue = queue.Queue(maxsize=WAITING)
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._file = self._writer = self._schema = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="served-log")
        self._thread.start()

    def record(self, shown: Shown) -> None:
        if self.failed is not None:  # a request fails while its answer cannot be logged
            raise RuntimeError(f"the served log cannot be written ({self.folder}): "
                               f"{self.failed}") from self.failed
        self.waiting.put(shown)

    def close(self) -> None:
        """Write every waiting request, then stop (a clean shutdown loses nothing)."""
        self._stop.set()
        self._thread.join()

    # ---- the writer's thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._stop.wait(self.flush_seconds)
                self._flush()
            self._flush()
        except BaseException as e:  # said on every request from now on, and here once
            self.failed = e
            log.error("the served log stopped: %s: %s", type(e).__name__, e)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._file.close()

    def _flush(self) -> None:
        shown = []
        while True:
            try:
                shown.append(self.waiting.get_nowait())
            except queue.Empty:
                break
        tables = [served_table(part) for part in _layouts(shown)]
        for table in tables:  # consecutive answers of one layout go out as one write
            if self._schema is None or not table.schema.equals(self._schema):
                self._open(table.schema)
            self._writer.write_table(table)
        if tables:
            self._file.flush()
            os.fsync(self._file.fileno())

    def _open(self, schema: pa.Schema) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / (f"{socket.gethostname()}-{os.getpid()}-"
                              f"{time.time_ns() // 1000}-{next(self._files)}.arrows")
        self._file = open(path, "wb")
        self._writer = pa.ipc.new_stream(self._file, schema)
        self._schema = schema


def _layouts(shown: list[Shown]) -> list[list[Shown]]:
    """`shown` cut into runs of consecutive answers of one layout (a swap starts a new one)."""
    parts: list[list[Shown]] = []
    for s in shown:
        if parts and parts[-1][-1].seen.layout() == s.seen.layout():
            parts[-1].append(s)
        else:
            parts.append([s])
    return parts
