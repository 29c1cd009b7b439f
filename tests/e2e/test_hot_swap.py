"""`recsys serve --watch DIR` on the tiny preset: a newer run appearing in DIR is swapped into
two workers at once while 8 clients keep scoring, with no failed request and every answer
named by the old run or the new one (and scored as that run scores offline); a corrupt run is
refused, counted and logged while the old one keeps serving (one process); a CURRENT file
names the run to serve."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from recsys.run import BEST, METRICS, SCORES
from recsys.serve.watch import POINTER
from recsys.config import TrainConfig
from recsys.train.loop import train
from serving import copy_applied, materialize, recsys_server, score_request

QUIET = {"progress": False, "log": lambda *a, **k: None}
CLIENTS = 8


@pytest.fixture(scope="module")
def watched(tiny, tmp_path_factory) -> dict:
    """A materialized copy of the tiny repo; run "old" in the watched folder, "new" (another
    seed) and "other" (another model) trained beside it, to be moved in."""
    base = tmp_path_factory.mktemp("watch")
    repo = copy_applied(tiny["repo"], base / "repo")
    materialize(repo)
    (base / "runs").mkdir()
    for name, folder, model, seed in (("old", "runs", "mmoe", 0), ("new", "staged", "mmoe", 1),
                                      ("other", "staged", "dnn", 0)):
        train(tiny["dataset"], base / folder / name,
              TrainConfig(model=model, epochs=1, batch_size=512, seed=seed), **QUIET)
    test = pads.dataset(sorted(str(p) for p in (tiny["dataset"] / "test").glob("*.parquet"))
                        ).to_table()
    return {"repo": repo, "runs": base / "runs", "staged": base / "staged", "test": test}


def _wait(client, run: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/metadata").json()["run"] != str(run):
        assert time.monotonic() < deadline, f"{run} never served: {client.log.read_text()}"
        time.sleep(0.2)


def _metric(client, line: str) -> float:
    found = [x for x in client.get("/metrics").text.splitlines() if x.startswith(line + " ")]
    return float(found[0].split()[-1]) if found else 0.0


def test_a_new_run_is_swapped_into_two_workers_at_once_under_load(watched):
    """`--workers 2 --watch`: the supervisor alone watches; a new run appearing is loaded by
    every worker once and switched to together: no failed request, every answer its run's own
    score, and every request started after the switch answered by the new run."""
    runs, test = watched["runs"], watched["test"]
    rows = np.random.default_rng(0).choice(test.num_rows, 40, replace=False)
    offline = {name: pq.read_table(path / SCORES.format(split="test"))["score"].to_numpy()
               for name, path in (("old", runs / "old"), ("new", watched["staged"] / "new"))}
    with recsys_server(None, watched["repo"], "--watch", str(runs), "--watch-seconds",
                       "0.3", "--workers", "2") as client:
        assert client.get("/metadata").json()["run"] == str(runs / "old")
        answers, stop = [], threading.Event()

        def score(worker: int) -> None:  # each its own connection, as separate clients
            with client.__class__(base_url=client.base_url, timeout=30) as own:
                i = worker
                while not stop.is_set():
                    row, started = int(rows[i % len(rows)]), time.monotonic()
                    r = own.post("/score", json=score_request(test, row))
                    answers.append((r.status_code, r.headers.get("x-recsys-run"), row,
                                    r.json()["scores"][0]["score"] if r.is_success else r.text,
                                    started))
                    i += CLIENTS

        threads = [threading.Thread(target=score, args=(w,)) for w in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(2)  # load before the swap
        shutil.move(watched["staged"] / "new", runs / "new")  # a finished run appears
        deadline = time.monotonic() + 300
        while "now serving" not in client.log.read_text():  # the supervisor switched
            assert time.monotonic() < deadline, client.log.read_text()
            time.sleep(0.05)
        switched = time.monotonic()
        time.sleep(2)  # and after it
        stop.set()
        for t in threads:
            t.join()
        metrics = client.get("/metrics").text
    assert [a for a in answers if a[0] != 200] == []
    for _, run, row, value, _ in answers:  # each answer is its run's own score
        assert abs(value - offline[Path(run).name][row]) < 1e-5, (run, row, value)
    assert {Path(a[1]).name for a in answers if a[4] < switched - 1} == {"old"}
    assert {Path(a[1]).name for a in answers if a[4] > switched} == {"new"}
    loaded = [line for line in client.log.read_text().splitlines()
              if "loaded" in line and line.endswith(str(runs / "new"))]
    assert len({line.split(":")[1] for line in loaded}) == len(loaded) == 2, loaded
    assert 'recsys_serving_run{model_fingerprint=' in metrics


def test_a_run_that_cannot_serve_is_refused_and_the_old_one_serves_on(watched):
    runs, test = watched["runs"], watched["test"]
    with recsys_server(None, watched["repo"], "--watch", str(runs), "--watch-seconds",
                       "0.3") as client:
        serving = client.get("/metadata").json()["run"]
        body = score_request(test, 0)
        before = client.post("/score", json=body).json()["scores"]
        # a finished run whose weights are damaged, then one of another model's weights
        shutil.copytree(Path(serving), runs / "corrupt")
        (runs / "corrupt" / BEST).write_bytes(b"not a checkpoint")
        (runs / "corrupt" / METRICS).touch()
        deadline = time.monotonic() + 300  # the watcher loads at the lowest priority
        while _metric(client, 'recsys_swaps_total{result="refused"}') < 1:
            assert time.monotonic() < deadline, client.log.read_text()
            time.sleep(0.2)
        assert client.get("/metadata").json()["run"] == serving
        assert client.post("/score", json=body).json()["scores"] == before
        assert "refused" in client.log.read_text() and "corrupt" in client.log.read_text()

        shutil.move(watched["staged"] / "other", runs / "other")  # loads and scores: swapped
        (runs / "other" / METRICS).touch()  # finished now, after the corrupt one
        _wait(client, runs / "other")
        (runs / POINTER).write_text("old\n")  # the pointer wins over the newest run
        _wait(client, runs / "old")
        assert client.post("/score", json=body).status_code == 200
        assert _metric(client, 'recsys_swaps_total{result="refused"}') == 1

