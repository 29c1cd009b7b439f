"""The two logs a server writes into its repo, as files: what it served (`data/served/`, Arrow
IPC streams, one row per item shown) and the feedback it was sent (`data/feedback/`, JSON
lines). The server writes them (serve.served_log, serve.feedback_log); `recsys import served`
and the tests read them here. A process killed mid-write leaves a torn tail, never acknowledged
(feedback) or within the last flush interval (served): the readers leave it out."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.json as pajson

from recsys.schema import ITEM_ID, SCENARIO, USER_ID

SERVED_DIR = "data/served"  # in the feature repo, beside the offline store
FEEDBACK_DIR = "data/feedback"
# a served row's own fields (times in µs since the epoch; IDs and the scenario the store's,
# null: unknown); the features the model saw follow, in the dataset's names and types
SERVED_FIELDS = pa.schema([("request_id", pa.int64()), ("served_at", pa.int64()),
                           ("endpoint", pa.string()), ("run", pa.string()),
                           ("model_fingerprint", pa.string()), (USER_ID, pa.int64()),
                           (SCENARIO, pa.int64()), (ITEM_ID, pa.int64()),
                           ("position", pa.int32()), ("score", pa.float32())])
# a feedback line's fields: IDs and scenario in the store's terms, times in µs since the epoch
FEEDBACK_FIELDS = pa.schema([(USER_ID, pa.int64()), (ITEM_ID, pa.int64()),
                             (SCENARIO, pa.int64()), ("clicked", pa.bool_()),
                             ("event_timestamp", pa.int64()), ("request_id", pa.int64()),
                             ("received", pa.int64())])


def served_dir(repo: Path) -> Path:
    return repo / SERVED_DIR


def feedback_dir(repo: Path) -> Path:
    return repo / FEEDBACK_DIR


def served_batches(repo: Path) -> Iterator[pa.RecordBatch]:
    """The served log's batches, file by file (each file's torn last batch left out)."""
    for path in sorted(served_dir(repo).glob("*.arrows")):
        with pa.OSFile(str(path)) as f:
            try:
                reader = pa.ipc.open_stream(f)
            except pa.ArrowInvalid:  # killed before its schema was written
                continue
            while True:
                try:
                    yield reader.read_next_batch()
                except (StopIteration, pa.ArrowInvalid, OSError):
                    break


def read_served(repo: Path) -> pa.Table:
    """Every row of the repo's served log, the files' layouts unified (a column one file
    lacks is null there)."""
    tables = [pa.Table.from_batches([b]) for b in served_batches(repo)]
    return pa.concat_tables(tables, promote_options="default") if tables else \
        SERVED_FIELDS.empty_table()


def read_feedback(repo: Path) -> pa.Table:
    """Every event of the repo's feedback log (each file's unfinished last line left out)."""
    tables = [FEEDBACK_FIELDS.empty_table()]
    for path in sorted(feedback_dir(repo).glob("*.jsonl")):
        data = path.read_bytes()
        data = data[:data.rfind(b"\n") + 1]  # a kill mid-write: the tail was never answered
        if data:
            tables.append(pajson.read_json(io.BytesIO(data), parse_options=pajson.ParseOptions(
                explicit_schema=FEEDBACK_FIELDS)))
    return pa.concat_tables(tables)
