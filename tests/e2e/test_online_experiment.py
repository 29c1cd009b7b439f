"""`recsys experiment online` through real processes: a tiny feed world generated up to its
day 5, a din run trained on it, its day 5 served to the four arms (three real `recsys serve`
processes), each arm's logs and updates checked against what the experiment says it served."""

from __future__ import annotations

import json

import duckdb
import pyarrow.compute as pc

from recsys.data.offline import read_repo_meta
from recsys.data.serving_logs import read_feedback, read_served
from tests.conftest import copy_repo, run

REQUESTS, SLICES, CANDIDATES, SHOWN = 160, 2, 8, 2


def test_each_arm_serves_logs_and_learns_from_its_own_clicks(tmp_path):
    repo, ds, din = copy_repo(tmp_path / "repo"), tmp_path / "ds", tmp_path / "din"
    run("recsys", "generate", "--preset", "tiny", "--seed", "3", "--feed", "--until", "5",
        "--repo", str(repo), "--workers", "1")
    run("feast", "apply", cwd=repo)
    run("recsys", "materialize", "--repo", str(repo))
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(ds))
    run("recsys", "train", "--model", "din", "--dataset", str(ds), "--out", str(din),
        "--epochs", "1")
    out = tmp_path / "online"
    printed = run("recsys", "experiment", "online", "--repo", str(repo), "--run", str(din),
                  "--days", "1", "--requests", str(REQUESTS), "--slices", str(SLICES),
                  "--candidates", str(CANDIDATES), "--shown", str(SHOWN), "--out",
                  str(out)).stdout
    results = json.loads((out / "results.json").read_text())
    (day,) = results["per_day"]
    assert day["day"] == 5 and "| 5 | minute |" in printed
    cells = day["arms"]
    assert sum(c["requests"] for c in cells.values()) == REQUESTS
    # the minute arm swapped in its first update for the day's second part; the others did not
    assert {a: len(c["runs"]) for a, c in cells.items()} == \
        {"popularity": 1, "frozen": 1, "daily": 1, "minute": 2}
    assert {a: len(c["cycle_seconds"]) for a, c in results["arms"].items()} == \
        {"popularity": 0, "frozen": 0, "daily": 1, "minute": 2}
    for arm in ("frozen", "daily", "minute"):
        arm_repo, cell = out / arm / "repo", cells[arm]
        served = read_served(arm_repo)  # only the shown items are impressions
        assert served.num_rows == cell["requests"] * SHOWN
        assert pc.count_distinct(served["request_id"]).as_py() == cell["requests"]
        clicks = read_feedback(arm_repo)
        assert clicks.num_rows == round(cell["clicks_per_request"] * cell["requests"])
        imported = read_repo_meta(arm_repo).raw.get("served", [])
        if arm == "frozen":
            assert not imported
        else:  # every impression and click came back as rows of the arm's own log
            assert sum(i["rows"] for i in imported) == served.num_rows
            assert sum(i["clicks"] for i in imported) == clicks.num_rows
    # the last update's training set: the impressions its import took, each once (though a
    # request showed several), none an earlier update trained on
    (built,) = (out / "minute" / "runs" / ".follow").glob("dataset-*")
    rows, distinct = duckdb.sql(f"SELECT count(*), count(DISTINCT (request_id, item_id)) FROM "
                                f"read_parquet('{built}/*/*.parquet')").fetchone()
    assert rows == distinct == imported[-1]["rows"] < served.num_rows
    assert not (repo / "data" / "served").exists()  # the source repo is left as it was
    assert (out / "report.md").is_file() and (out / "online_ctr.png").stat().st_size > 0
