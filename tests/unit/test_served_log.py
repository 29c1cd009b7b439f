"""The served log's writer in process: a clean close writes every waiting answer, rows in the
answer's order with the features each item's row was made of, and a file cut mid-batch (a kill
while writing) is read up to its last whole batch."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from recsys.schema import ITEM_ID, SCENARIO, USER_ID
from recsys.serve.scorer import Seen
from recsys.data.serving_logs import read_served, served_dir
from recsys.serve.served_log import ServedLog, Shown


def _shown(request_id: int, user: int) -> Shown:
    caches = {"item": pa.table({"item_price": pa.array([1.5, 2.5, 3.5, None])}),  # then unknown
              SCENARIO: pa.table({"scenario_ctr": pa.array([0.1, 0.2, None])})}
    seen = Seen(user, 1, np.array([2, 0, -1]), pa.table({"user_age": pa.array([40])}),
                {"hour": 7}, {"hour": pa.int64()}, caches)
    return Shown(request_id, 1_000 + request_id, "score", "runs/a", "f00", seen,
                 np.array([0.9, 0.5, 0.1]))


def test_a_clean_close_writes_every_answer_with_its_features(tmp_path):
    log = ServedLog(tmp_path, flush_seconds=60)  # nothing flushes before the close
    for i in range(200):
        log.record(_shown(i, user=i))
    log.close()
    rows = read_served(tmp_path)
    assert rows.num_rows == 600 and sorted(set(rows["request_id"].to_pylist())) == list(range(200))
    first = rows.filter(pa.compute.equal(rows["request_id"], 7)).to_pylist()
    assert [r[ITEM_ID] for r in first] == [2, 0, None] and [r["position"] for r in first] == \
        [0, 1, 2]
    assert [r["item_price"] for r in first] == [3.5, 1.5, None]  # the unknown item: no values
    assert {(r[USER_ID], r["user_age"], r["hour"], r[SCENARIO], r["scenario_ctr"])
            for r in first} == {(7, 40, 7, 1, 0.2)}
    assert np.allclose([r["score"] for r in first], [0.9, 0.5, 0.1])


def test_a_file_cut_mid_batch_is_read_to_its_last_whole_batch(tmp_path):
    log = ServedLog(tmp_path, flush_seconds=0.05)
    log.record(_shown(1, user=1))
    deadline = time.monotonic() + 10
    while read_served(tmp_path).num_rows < 3:  # the first batch written on its own
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log.record(_shown(2, user=2))
    log.close()
    [path] = served_dir(tmp_path).glob("*.arrows")
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # the second batch torn
    assert read_served(tmp_path)["request_id"].to_pylist() == [1, 1, 1]
