"""Real logs have holes: a missing value in every column kind (a categorical, a numeric, a
text, a multi-valued list, and an item whose category the history carries) goes through
import -> feast apply -> feast materialize -> build -> train -> serve: every view
materializes, the missing list elements are the unknown code, and the served run scores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import yaml

from conftest import copy_repo, run
from recsys.schema import SCHEMA_FILE, UNKNOWN_CODE, history_column
from serving import recsys_server

DAY = 86_400


def _write(folder):
    """ratings / users / items, a tenth of each side column left empty."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    hole = lambda value: "" if rng.random() < 0.1 else value  # noqa: E731
    with open(folder / "users.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uid", "job", "age"])
        for u in range(60):
            w.writerow([u, hole(str(rng.choice(["a", "b", "c"]))), hole(str(20 + u % 40))])
    with open(folder / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iid", "kind", "genres", "title"])
        for i in range(80):
            w.writerow([i, hole(f"k{i % 5}"), hole("|".join(rng.choice(list("xyzw"), 2))),
                        hole(f"the {rng.choice(['red', 'blue'])} story of thing {i}")])
    start = 1_700_000_000 // DAY * DAY
    with open(folder / "ratings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uid", "iid", "clicked", "ts"])
        for k in range(3000):
            w.writerow([int(rng.integers(60)), int(rng.integers(80)), int(rng.random() < 0.4),
                        start + int(k * 8 * DAY / 3000)])
    return folder, start


def test_missing_values_of_every_kind_import_materialize_build_train_and_serve(tmp_path):
    data, start = _write(tmp_path / "data")
    repo = copy_repo(tmp_path / "repo")
    args = ["import", "interactions", "--interactions", str(data / "ratings.csv"),
            "--users", str(data / "users.csv"), "--items", str(data / "items.csv"),
            "--user-col", "uid", "--item-col", "iid", "--time-col", "ts", "--label-col",
            "clicked", "--categorical-cols", "job,kind", "--numeric-cols", "age",
            "--text-cols", "title", "--repo", str(repo)]
    run("recsys", *args)
    # the history carries each click's item kind (a tenth of the items have none)
    schema = yaml.safe_load((repo / SCHEMA_FILE).read_text())
    schema["history_item_features"] = ["item_kind"]
    (repo / SCHEMA_FILE).write_text(yaml.safe_dump(schema))
    run("recsys", *args, "--force")
    history = pq.read_table(repo / "data" / "offline" / "user_history").column(
        history_column("item_kind")).to_pylist()
    carried = [v for row in history for v in row]
    assert None not in carried and UNKNOWN_CODE in carried
    run("feast", "apply", cwd=repo)
    end = start + 9 * DAY
    stamp = lambda t: np.datetime_as_string(np.datetime64(t, "s")) + "Z"  # noqa: E731
    run("feast", "materialize", stamp(start - DAY), stamp(end), cwd=repo)
    ds = tmp_path / "ds"
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(ds))
    out = tmp_path / "din"
    run("recsys", "train", "--model", "din", "--dataset", str(ds), "--epochs", "1",
        "--out", str(out))
    assert json.loads((out / "metrics.json").read_text())["overall"]["auc"] is not None
    with recsys_server(out, repo) as client:
        answer = client.post("/score", json={"user_id": 1, "scenario": 0,
                                             "item_ids": [0, 1, 2, 3]})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["scores"]) == 4
        # a user the import's ID maps do not hold: refused, saying how users arrive
        click = {"user_id": 10 ** 6, "item_id": 1, "scenario": 0, "clicked": True}
        answer = client.post("/feedback", json=click)
        assert answer.status_code == 422 and "not a user of this repo yet" in \
            answer.json()["error"], answer.text
        assert client.post("/feedback", json={**click, "user_id": 1}).status_code == 200
