"""The loop closed through real processes: a server's answers and the clicks sent back become
new rows of the repo's log (`recsys import served`), a training set is built from them and a run
warm-started on it scores the same request."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pyarrow.dataset as pads

from conftest import error_lines, run
from recsys.config import TrainConfig
from recsys.data.serving_logs import read_served
from recsys.schema import INTERACTIONS, ITEM_ID, LABEL, USER_ID
from recsys.serve.scorer import Request, Scorer
from recsys.train.loop import train
from serving import copy_applied, materialize, recsys_server, score_request

QUIET = {"progress": False, "log": lambda *a, **k: None}


def _rows(folder) -> set:
    table = pads.dataset(sorted(str(p) for p in folder), format="parquet").to_table(
        columns=["request_id", USER_ID, ITEM_ID, LABEL])
    return set(zip(*(table[c].to_pylist() for c in table.column_names)))


def test_what_was_served_and_clicked_becomes_the_next_training_set(tiny, tmp_path):
    repo = copy_applied(tiny["repo"], tmp_path / "repo")
    materialize(repo)
    first = tmp_path / "runs" / "mmoe"
    train(tiny["dataset"], first, TrainConfig(model="mmoe", epochs=1, batch_size=1024), **QUIET)
    test = pads.dataset(sorted(str(p) for p in (tiny["dataset"] / "test").glob("*.parquet"))
                        ).to_table()
    clicked = set()
    with recsys_server(first, repo, "--log-flush-seconds", "0.2") as client:
        for r in range(30):
            body = score_request(test, r)
            body["item_ids"] = list(dict.fromkeys(body["item_ids"] + [1, 2, 3]))
            answer = client.post("/score", json=body).json()
            top = answer["scores"][0]["item_id"]
            if r % 3 == 0:  # a click on the top item, naming its request (or, once, not)
                event = {"user_id": body["user_id"], "item_id": top, "clicked": True,
                         "scenario": body["scenario"]}
                if r != 0:
                    event["request_id"] = answer["request_id"]
                assert client.post("/feedback", json=event).status_code == 200
                clicked.add((answer["request_id"], body["user_id"], top))
    # the server stopped cleanly: every answer is in the served log
    served = read_served(repo)
    assert served.num_rows == sum(len(set(score_request(test, r)["item_ids"] + [1, 2, 3]))
                                  for r in range(30))
    time.sleep(1.5)  # past the label window given below
    run("recsys", "import", "served", "--repo", str(repo), "--label-window", "1")
    want = {(q, u, i, int((q, u, i) in clicked)) for q, u, i in zip(
        served["request_id"].to_pylist(), served[USER_ID].to_pylist(),
        served[ITEM_ID].to_pylist())}
    log = repo / "data" / "offline" / INTERACTIONS
    assert _rows(log.glob("day=*/part-served-*.parquet")) == want
    assert sum(label for *_, label in want) == len(clicked)
    # nothing new to take: refused in one line, the store unchanged
    again = run("recsys", "import", "served", "--repo", str(repo), "--label-window", "1",
                check=False)
    assert again.returncode != 0 and len(error_lines(again.stderr)) == 1, again.stderr
    assert "nothing new to import" in again.stderr
    # tomorrow's training set: the served day, point in time, every row a served impression
    today = datetime.now(timezone.utc).date().isoformat()
    dataset = tmp_path / "dataset"
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(dataset), "--from", today,
        "--to", today)
    assert _rows(dataset.glob("*/*.parquet")) == want
    # warm-started from the serving run, the new run scores the same request
    second = tmp_path / "runs" / "mmoe-2"
    run("recsys", "train", "--model", "mmoe", "--dataset", str(dataset), "--init-from",
        str(first), "--out", str(second), "--epochs", "1")
    scorer = Scorer(second, repo, refresh_seconds=0)
    body = score_request(test, 0)
    scores = scorer.score(Request(body["user_id"], body["scenario"], body["item_ids"])).scores
    scorer.close()
    assert np.isfinite(scores).all() and ((0 < scores) & (scores < 1)).all()
