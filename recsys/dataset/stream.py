"""A split streamed from its Parquet files in row groups: memory is bounded by the shuffle
buffer, never by the split's rows.

- Each epoch orders the row groups (shuffled from (seed, epoch) when training) and lays them
  end to end; in a job of `world` processes, rank r reads only its own stretch of that
  sequence (equal stretches, so every rank runs the same number of equal batches, as sharded
  lookups need; a remainder of fewer than `world` rows is left to the next epoch's order).
- Training batches come out of a shuffle buffer: row groups are read until it holds
  `buffer_rows` rows, which are permuted (seeded) and cut into batches; the rows left over
  join the next fill.
- A background thread reads, converts and batches ahead of the model; an error there is raised
  in the consumer, and a consumer that stops early stops the thread.
- `start_batch` skips the first batches of an epoch without building them: the stream is a
  pure function of (seed, epoch, rank), so a run resumed mid-epoch sees the batches an
  uninterrupted run would have.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.offline import check_parquet_files
from recsys.dataset.batch import Batch
from recsys.dataset.layout import Layout
from recsys.dataset.loader import check_labels, needed_columns, rows_batch, SplitData, to_split_data
from recsys.errors import DataError, actionable_os_error
from recsys.schema import LABEL

DEFAULT_BUFFER_ROWS = 262_144  # about 100 MB of model inputs at `small`'s width
PREFETCH = 4  # batches made ahead by the background thread


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of row group `group` of `file`."""

    file: str
    group: int
    start: int
    stop: int


class SplitFiles:
    """A split's Parquet files and their row groups, read from the footers only."""

    def __init__(self, dataset: Path, split: str, layout: Layout):
        self.folder = dataset / split
        files = sorted(self.folder.glob("*.parquet"))
        self.columns = needed_columns(layout, for_metrics=False)  # the metrics read their own
        check_parquet_files(files, self.columns, self.folder,
                            "rebuild with `recsys build-dataset --force`", check_types=False)
        self.groups: list[tuple[str, int, int]] = []  # (file, row group, rows)
        for f in files:
            md = pq.ParquetFile(f).metadata
            self.groups += [(str(f), g, md.row_group(g).num_rows)
                            for g in range(md.num_row_groups)]
        self.rows = sum(n for _, _, n in self.groups)
        if self.rows == 0:
            raise DataError(f"{self.folder}: the {split} split is empty; rebuild it with more "
                            f"data")
        for f in files:  # before any work: one narrow column, a row group at a time
            pf = pq.ParquetFile(f)
            for g in range(pf.metadata.num_row_groups):
                check_labels(pf.read_row_group(g, columns=[LABEL])[LABEL], self.folder)

    def pieces(self, order: np.ndarray, lo: int, hi: int) -> list[Piece]:
        """Rows [lo, hi) of the row groups laid end to end in `order`."""
        out, at = [], 0
        for g in order:
            file, group, n = self.groups[g]
            start, stop = max(lo - at, 0), min(hi - at, n)
            if start < stop:
                out.append(Piece(file, group, start, stop))
            at += n
            if at >= hi:
                break
        return out


class StreamLoader:
    """Batches of a split, streamed (see the module's text). Without shuffling, the rows come
    in file order; with `pad`, a rank's share is padded (its last row repeated) to the
    length of every other rank's, for sharded prediction."""

    def __init__(self, files: SplitFiles, layout: Layout, batch_size: int,
                 shuffle: bool = False, seed: int = 0, rank: int = 0, world: int = 1,
                 buffer_rows: int = DEFAULT_BUFFER_ROWS, prefetch: int = PREFETCH,
                 pad: bool = False):
        self.files, self.layout = files, layout
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world, self.pad = rank, world, pad
        self.buffer_rows, self.prefetch = max(buffer_rows, batch_size), prefetch
        self.epoch, self.start_batch = 0, 0

    @property
    def share(self) -> int:
        """Rows each rank is given per epoch (padded ones included)."""
        n = self.files.rows
        return n // self.world if self.shuffle else -(-n // self.world)

    @property
    def rows(self) -> int:
        """Real rows this rank yields per epoch."""
        lo = self.rank * self.share
        return max(0, min(lo + self.share, self.files.rows) - lo)

    def __len__(self) -> int:
        return -(-self.share // self.batch_size)

    def _pieces(self) -> list[Piece]:
        n = len(self.files.groups)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) \
            if self.shuffle else np.arange(n)
        lo = self.rank * self.share
        return self.files.pieces(order, lo, min(lo + self.share, self.files.rows))

    def _chunks(self) -> Iterator[SplitData]:
        for p in self._pieces():
            try:
                # a file is opened for each row group read: readers kept open for the epoch
                # held memory that grew with the number of files read (0.7 GiB at `large`)
                with pq.ParquetFile(p.file) as pf:
                    table = pf.read_row_group(p.group, columns=self.files.columns.names)
            except (OSError, pa.ArrowException) as e:  # damaged since the footer was checked
                if actionable_os_error(e) is not None:
                    raise
                raise DataError(f"{p.file}: row group {p.group} cannot be read "
                                f"({' '.join(str(e).split())[:80]}); rebuild the dataset with "
                                f"`recsys build-dataset --force`") from None
            yield to_split_data(table.slice(p.start, p.stop - p.start), self.layout,
                                self.files.folder)

    def row_sets(self) -> Iterator[SplitData]:
        """The epoch's batches as arrays, in order."""
        b = self.batch_size
        fill = self.buffer_rows if self.shuffle else b
        pending: list[SplitData] = []
        fills = 0
        chunk = None

        def cut(data: SplitData, last: bool) -> Iterator[SplitData]:
            nonlocal fills
            if self.shuffle:
                data = data.take(np.random.default_rng(
                    [self.seed, self.epoch, self.rank, fills]).permutation(len(data)))
                fills += 1
            whole = len(data) if last else len(data) // b * b
            for i in range(0, whole, b):
                yield data.rows(i, min(i + b, whole))
            if whole < len(data):
                pending.append(data.rows(whole, len(data)))

        for chunk in self._chunks():
            pending.append(chunk)
            if sum(len(p) for p in pending) >= fill:
                data = SplitData.concat(pending)
                pending.clear()
                yield from cut(data, last=False)
        if self.pad and chunk is not None and self.rows < self.share:
            pending.append(chunk.take(np.full(self.share - self.rows, len(chunk) - 1)))
        if pending:
            data = SplitData.concat(pending)
            pending.clear()
            yield from cut(data, last=True)

    def __iter__(self) -> Iterator[Batch]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for i, rows in enumerate(self.row_sets()):
                    if i >= self.start_batch and \
                            not put(rows_batch(rows, self.layout, slice(None))):
                        return
                put(done)
            except BaseException as e:  # handed to the consumer, which raises it
                put(_Failure(e))

        thread = threading.Thread(target=produce, daemon=True, name="stream-loader")
        thread.start()
        try:
            while (item := q.get()) is not done:
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stop.set()
            thread.join()
        self.epoch += 1
        self.start_batch = 0


@dataclass
class _Failure:
    error: BaseException
