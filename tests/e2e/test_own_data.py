"""Your own data, your own features: a ratings-style log with string IDs, a string scenario
column, a users table (categorical and numeric columns) and an items table (a multi-valued
genre column and a title) over months with gaps, through import -> feast apply -> build with a
quantile split -> train, with the side features reaching the model; bad declarations are one
line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import copy_repo, error_lines, run
from recsys.data.offline import read_schema
from recsys.schema import SCHEMA_FILE

GENRES = ("Action", "Comedy", "Drama", "Noir", "Romance", "Sci-Fi")
DAY = 86_400


def write_ratings_files(folder, n_users=150, n_items=240, n_rows=4000, seed=0):
    """ratings.csv / users.csv / movies.csv. A rating is 5 exactly when the movie's genres
    include Noir (else 1..3), so the genre alone tells the label. The last fifth of the
    movies appear only in the last fifth of the log, each on one day: the test split's
    movies are new (their ID rows untrained) and their 7-day aggregates empty (a day's
    aggregates describe the days before it), so only their genres can score them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "users.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "occupation", "income", "age"])
        for u in range(n_users):
            w.writerow([f"user-{u:04d}", rng.choice(["artist", "doctor", "student"]),
                        round(float(rng.lognormal(10, 0.5)), 2), int(rng.choice([18, 25, 35]))])
    noir = set()
    with open(folder / "movies.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        for i in range(n_items):
            genres = list(rng.choice(GENRES, size=int(rng.integers(1, 4)), replace=False))
            noir.update([i] if "Noir" in genres else [])
            w.writerow([f"m{i}", f"The {rng.choice(['long', 'lost', 'last'])} "
                        f"{rng.choice(['night', 'road', 'city'])} ({1950 + i % 60})",
                        "|".join(genres)])
    start, days = 1_600_000_000 // DAY * DAY, 180  # six months, the third without a row
    old = int(n_items * 0.8)
    launch = rng.integers(int(days * 0.8), days, size=n_items)  # a new movie's one day
    with open(folder / "ratings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp", "surface"])
        for k in range(n_rows):
            late = k >= 0.8 * n_rows
            item = int(rng.integers(old, n_items) if late else rng.integers(old))
            day = launch[item] if late else int(rng.integers(int(days * 0.8)))
            day += 30 if 60 <= day < 90 else 0
            t = start + day * DAY + int(rng.integers(DAY))
            w.writerow([f"user-{int(rng.integers(n_users)):04d}", f"m{item}",
                        5 if item in noir else int(rng.integers(1, 4)), t,
                        rng.choice(["home", "search", "feed"])])
    return folder


IMPORT = ["--interactions", "ratings.csv", "--users", "users.csv", "--items", "movies.csv",
          "--user-col", "userId", "--item-col", "movieId", "--time-col", "timestamp",
          "--label-col", "rating", "--label-threshold", "4", "--scenario-col", "surface"]


def _pipeline(tmp, data, *flags, models=("mmoe",)) -> dict:
    """import -> feast apply -> build (quantiles) -> train each model; test metrics by model."""
    repo = copy_repo(tmp / "repo")
    args = [a if not a.endswith(".csv") else str(data / a) for a in IMPORT]
    proc = run("recsys", "import", "interactions", *args, *flags, "--repo", str(repo))
    run("feast", "apply", cwd=repo)
    ds = tmp / "ds"
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(ds), "--split",
        "quantiles")
    metrics = {}
    for model in models:
        run("recsys", "train", "--dataset", str(ds), "--model", model, "--epochs", "4",
            "--batch-size", "128", "--out", str(tmp / model))
        metrics[model] = json.loads((tmp / model / "metrics.json").read_text())
    return {"repo": repo, "ds": ds, "stdout": proc.stdout, "metrics": metrics}


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("own")
    data = write_ratings_files(tmp / "data")
    return {"data": data, **_pipeline(tmp, data, models=("mmoe", "dnn_mixed"))}


def test_the_schema_comes_from_the_data(own):
    schema = read_schema(own["repo"])
    assert schema.scenario_names == ("feed", "home", "search")  # the strings, sorted
    kinds = {f.name: (f.kind, f.dtype, f.cardinality) for f in schema.features}
    assert kinds["user_occupation"] == ("categorical", "int64", 3)
    assert kinds["user_age"] == ("categorical", "int64", 3)  # few whole numbers: codes
    assert kinds["user_income"][:2] == ("numeric", "float32")
    assert kinds["item_genres"] == ("categorical", "list<int64>", len(GENRES))
    assert kinds["item_title"][0] == "text"
    assert [f"user_clicks_7d_s{c}" in kinds for c in range(3)] == [True] * 3
    assert "user_clicks_7d_s3" not in kinds  # one per scenario of the data
    offline = own["repo"] / "data" / "offline"
    vocab = pq.read_table(offline / "vocabularies" / "item_genres.parquet").to_pydict()
    assert sorted(vocab["value"]) == sorted(GENRES) and sorted(vocab["code"]) == list(range(6))
    genres = pq.read_table(offline / "item_profile").to_pydict()["item_genres"]
    assert all(1 <= len(g) <= 3 for g in genres)
    ids = pq.read_table(offline / "id_maps" / "user_id.parquet").to_pydict()
    assert ids["raw_id"][0].startswith("user-")
    stdout = "".join(own["stdout"].split())  # the tables wrap at the terminal's width
    for line in ("item_genres", "vocabularies/item_genres.parquet", "id_maps/user_id.parquet"):
        assert line in stdout, line
    columns = json.loads((offline / "meta.json").read_text())["import"]["columns"]
    how = {c["feature"]: c["how"] for c in columns}
    assert how["item_genres"] == "inferred (values holding '|')"
    assert how["user_age"] == "inferred (3 distinct whole numbers)"
    assert "Bayes" not in own["stdout"]  # real data has no true click probability


def test_the_build_cuts_at_time_quantiles_and_keeps_the_side_features(own):
    meta = json.loads((own["ds"] / "meta.json").read_text())
    rows = {s: v["rows"] for s, v in meta["splits"].items()}
    assert abs(rows["train"] / sum(rows.values()) - 0.8) < 0.02
    test = pq.read_table(own["ds"] / "test").to_pandas()
    assert {"item_genres", "user_occupation", "user_income", "item_title"} <= set(test)
    assert test["zero_shot_item"].mean() > 0.9  # new movies, as written


@pytest.mark.parametrize("model", ["mmoe", "dnn_mixed"])
def test_a_side_feature_alone_lifts_auc_on_new_items(own, model):
    metrics = own["metrics"][model]
    assert metrics["overall"]["auc"] > 0.85, metrics["overall"]
    assert [s["name"] for s in metrics["scenarios"].values()] == ["feed", "home", "search"]


def test_without_the_genre_the_new_items_are_a_guess(own, tmp_path):
    """The control: the same data with the genres left out scores the new movies near
    chance, so the lift above comes from the genre feature."""
    control = _pipeline(tmp_path, own["data"], "--ignore-cols", "genres",
                        models=("dnn_mixed",))
    assert "item_genres" not in {f.name for f in read_schema(control["repo"]).features}
    assert control["metrics"]["dnn_mixed"]["overall"]["auc"] < 0.7


def _refused(tmp_path, data, *args) -> str:
    repo = copy_repo(tmp_path / "repo")
    proc = run("recsys", "import", "interactions", *args, "--repo", str(repo), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (repo / "data" / "offline").exists() and \
        (repo / SCHEMA_FILE).read_text() == copy_repo(tmp_path / "fresh").joinpath(
            SCHEMA_FILE).read_text(), "a refused import wrote something"
    return lines[0]


def test_bad_declarations_are_one_line_and_write_nothing(own, tmp_path):
    data = own["data"]
    args = [a if not a.endswith(".csv") else str(data / a) for a in IMPORT]
    assert "declared numeric" in _refused(tmp_path / "a", data, *args, "--numeric-cols", "title")
    assert "no column 'budget'" in _refused(tmp_path / "b", data, *args, "--categorical-cols",
                                            "budget")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({
        "interactions": str(data / "ratings.csv"), "user_col": "userId",
        "item_col": "movieId", "time_col": "timestamp", "label_col": "rating",
        "label_threshold": 4, "columns": {"genres": {"kind": "numeric", "separator": "|"}}}))
    assert "separator" in _refused(tmp_path / "c", data, "--mapping", str(mapping))
    assert "is a mapped column" in _refused(tmp_path / "d", data, *args, "--text-cols",
                                            "surface")
    assert "no column 'stars' (--scenario-col)" in _refused(
        tmp_path / "e", data, *args[:-1], "stars")


def test_short_aggregate_ttls_equal_an_unbounded_asof_join(own):
    """The imported schema's aggregates have TTLs of 8 days (7-day counts) and 1 day (the
    previous day's scenario statistics), which keep Feast's join small over months of data;
    every built value equals DuckDB's ASOF join without any TTL, a null where a count is 0
    or the scenario had no rows the day before."""
    import duckdb

    offline, schema = own["repo"] / "data" / "offline", read_schema(own["repo"])
    assert {v.name: v.ttl.days for v in schema.views if v.ttl.days < 30} == \
        {"user_agg": 8, "item_agg": 8, "scenario_stats": 1}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for view, key in (("user_agg", "user_id"), ("item_agg", "item_id"),
                      ("scenario_stats", "scenario")):
        names = [f.name for f in schema.view_features(view)]
        for split in ("train", "test"):
            rows = con.execute(f"""
                SELECT {', '.join(f'b.{n}' for n in names)},
                       {', '.join(f'a.{n} AS asof_{n}' for n in names)},
                       epoch_us(b.event_timestamp) - epoch_us(a.event_timestamp) AS age
                FROM read_parquet('{own['ds'] / split}/*.parquet') b
                ASOF LEFT JOIN read_parquet('{offline / view}/*.parquet') a
                  ON b.{key} = a.{key} AND b.event_timestamp >= a.event_timestamp
                """).fetchdf()
            for n in names:
                built, asof = rows[n], rows[f"asof_{n}"]
                stale = rows["age"] > 86_400e6  # the day before had no rows
                if view == "scenario_stats":
                    assert (built[~stale] == asof[~stale]).all() and built[stale].isna().all()
                else:  # a null is a zero count
                    assert (built.fillna(0) == asof.fillna(0)).all(), (view, n, split)


def test_multi_valued_rows_become_bags_of_codes():
    """bag_matrix: codes padded with -1 to the width, a row's extra values left out, a value
    beyond the table and an empty or null row on the unknown row; kjt hands each row's values
    to its feature's bag, and a scenario's selection keeps them."""
    import pyarrow as pa
    import torch

    from recsys.dataset.batch import Batch, kjt
    from recsys.dataset.layout import bag_matrix

    column = pa.chunked_array([pa.array([[0, 2], [], None, [1, 9, 3, 2]], pa.list_(pa.int64()))])
    bags = bag_matrix(column, 3, unknown=5)
    assert bags.tolist() == [[0, 2, -1], [5, -1, -1], [5, -1, -1], [1, 5, 3]]
    ids = torch.cat([torch.tensor([[7], [8], [9], [6]]), torch.from_numpy(bags)], dim=1)
    widths = (1, 3)
    sparse = kjt(["user_id", "item_genres"], ids, widths)
    genres = sparse["item_genres"]
    assert genres.lengths().tolist() == [2, 1, 1, 3]
    assert genres.values().tolist() == [0, 2, 5, 5, 1, 5, 3]
    assert sparse["user_id"].values().tolist() == [7, 8, 9, 6]
    batch = Batch(sparse, ids, torch.zeros(4, 0), torch.zeros(4), torch.tensor([0, 1, 0, 1]),
                  torch.zeros(4, 0), widths)
    picked = batch.select(batch.scenario == 1).sparse["item_genres"]
    assert picked.lengths().tolist() == [1, 3] and picked.values().tolist() == [5, 1, 5, 3]
