"""Importers: the AntM2C CSV release and any interaction log, ugly parts included, then the
real pipeline (feast apply, build-dataset, a short training run) on the imported repo; bad
input is one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from antm2c_files import antm2c_rows, write_antm2c
from conftest import copy_repo, error_lines, run
from recsys.antm2c import ANTM2C
from recsys.data.offline import read_schema, validate_offline_store

OFFLINE = ("data", "offline")


@pytest.fixture(scope="module")
def antm2c_import(tmp_path_factory):
    """Two part files: an unparseable time, a label 2, a scene 9, an empty user, an exact
    duplicate row, an empty deep feature, tagged entities, a truncated last line."""
    tmp = tmp_path_factory.mktemp("antm2c")
    rows = antm2c_rows(3000)
    rows[5][2] = "2023-03-0X 10:00:00"
    rows[6][3] = "2"
    rows[7][9] = "9"
    rows[8][0] = ""
    rows.append(list(rows[10]))  # an exact duplicate, in the other file
    files = [write_antm2c(tmp / "antm2c_10m_part0", rows[:1500]),
             write_antm2c(tmp / "antm2c_10m_part1", rows[1500:], truncated_tail=True)]
    repo = copy_repo(tmp / "repo")
    proc = run("recsys", "import", "antm2c", *map(str, files), "--repo", str(repo))
    return {"repo": repo, "files": files, "rows": rows, "stdout": proc.stdout, "tmp": tmp}


def test_antm2c_rows_are_imported_or_quarantined_with_a_reason(antm2c_import):
    offline = antm2c_import["repo"].joinpath(*OFFLINE)
    validate_offline_store(offline, ANTM2C)  # the generator's tables and schema
    meta = json.loads((offline / "meta.json").read_text())
    imp = meta["import"]
    assert imp["quarantined"] == {
        "duplicate of an earlier row": 1, "empty user id": 1, "label not 0/1": 1,
        "scenario not in 0..4": 1, "unparseable time": 1,
        "wrong number of fields (4, expected 37)": 1}
    assert imp["rows_read"] == len(antm2c_import["rows"]) + 1  # + the truncated line
    assert imp["rows_read"] == imp["imported"] + sum(imp["quarantined"].values())
    quarantine = pq.read_table(offline / "quarantine").to_pylist()
    assert len(quarantine) == 6
    by_reason = {q["reason"]: q for q in quarantine}
    assert by_reason["unparseable time"]["row"] == 6  # row numbers count data rows from 1
    assert "2023-03-0X" in by_reason["unparseable time"]["raw"]
    assert by_reason["duplicate of an earlier row"]["source"] == "antm2c_10m_part1"
    interactions = pq.read_table(offline / "interactions").to_pandas()
    assert len(interactions) == imp["imported"] == meta["n_rows"]
    assert interactions["user_id"].max() == meta["n_users"] - 1
    assert interactions["p_true"].isna().all()  # real data has no true probability
    assert interactions["deep_features_3"].isna().sum() > 0  # empty fields stay null
    for line in ("rows read 3,002, imported 2,996, quarantined 6", "unparseable time"):
        assert line in antm2c_import["stdout"]
    ids = pq.read_table(offline / "id_maps" / "user_id.parquet").to_pydict()
    assert ids["user_id"] == list(range(meta["n_users"]))
    text = pq.read_table(offline / "item_text").to_pandas()
    # entity names vary between rows of one item: one snapshot per distinct text
    assert text.groupby("item_id").size().max() == 2
    assert "话费充值|BILL" in pq.read_table(offline / "user_text")["bill_entity_seq"][0].as_py()


def test_imported_antm2c_trains(antm2c_import):
    repo, tmp = antm2c_import["repo"], antm2c_import["tmp"]
    run("feast", "apply", cwd=repo)
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(tmp / "ds"))
    run("recsys", "train", "--dataset", str(tmp / "ds"), "--model", "dnn_mixed", "--epochs",
        "1", "--out", str(tmp / "run"))
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert 0.0 < metrics["overall"]["auc"] <= 1.0 and metrics["overall"]["n"] > 0


def test_import_refuses_to_overwrite_without_force(antm2c_import):
    repo, files = antm2c_import["repo"], antm2c_import["files"]
    before = (repo.joinpath(*OFFLINE) / "meta.json").read_text()
    proc = run("recsys", "import", "antm2c", str(files[0]), "--repo", str(repo), check=False)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (repo.joinpath(*OFFLINE) / "meta.json").read_text() == before


def _refused(repo, *args) -> str:
    proc = run("recsys", "import", *args, "--repo", str(repo), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not repo.joinpath(*OFFLINE).exists(), "bad input wrote data"
    return lines[0]


def test_bad_antm2c_input_is_refused(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("user_id,item_id,time,label\n1,2,3,1\n")
    assert "missing log_time" in _refused(repo, "antm2c", str(wrong))
    binary = tmp_path / "part0.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), binary)
    assert "not a CSV file" in _refused(repo, "antm2c", str(binary))
    assert "no such file" in _refused(repo, "antm2c", str(tmp_path / "absent.csv"))


def _ratings(path, n=2000, seed=0):
    """A MovieLens-like ratings table: epoch-second times over 6 days, ratings 1..5."""
    rng = np.random.default_rng(seed)
    item = rng.integers(80, size=n)
    rating = np.clip(np.round(3 + (item % 2) + rng.normal(size=n)), 1, 5)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for i in range(n):
            w.writerow([int(rng.integers(200)), int(item[i]), rating[i],
                        1_700_000_000 + int(rng.integers(6 * 86_400))])
        w.writerow([1, 1, 4.0, "yesterday"])  # an unparseable time
    return path


def test_interactions_ratings_with_threshold_and_titles(tmp_path):
    ratings = _ratings(tmp_path / "ratings.csv")
    movies = tmp_path / "movies.parquet"
    pq.write_table(pa.table({"movieId": list(range(80)),
                             "title": [f"Movie {i}" for i in range(80)],
                             "genres": ["Drama|Comedy"] * 80}), movies)
    repo = copy_repo(tmp_path / "repo")
    run("recsys", "import", "interactions", "--interactions", str(ratings), "--items",
        str(movies), "--user-col", "userId", "--item-col", "movieId", "--time-col",
        "timestamp", "--label-col", "rating", "--label-threshold", "4", "--text-cols",
        "title,genres", "--repo", str(repo))
    offline = repo.joinpath(*OFFLINE)
    validate_offline_store(offline, read_schema(repo))
    meta = json.loads((offline / "meta.json").read_text())
    assert meta["import"]["quarantined"] == {"unparseable time": 1}
    inter = pq.read_table(offline / "interactions").to_pandas()
    assert set(inter["scenario"]) == {0}  # no scenario column: one scenario
    assert 0.2 < inter["label"].mean() < 0.8
    text = pq.read_table(offline / "item_text").to_pydict()  # each text column a feature
    assert text["item_title"][0].startswith("Movie") and text["item_genres"][0] == "Drama|Comedy"
    run("feast", "apply", cwd=repo)
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(tmp_path / "ds"))
    run("recsys", "train", "--dataset", str(tmp_path / "ds"), "--model", "dnn", "--epochs",
        "1", "--out", str(tmp_path / "run"))


def test_interactions_from_a_yaml_mapping_and_parquet(tmp_path):
    log = tmp_path / "log.parquet"
    n = 600
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({
        "uid": [f"user-{i}" for i in rng.integers(50, size=n)],
        "iid": rng.integers(30, size=n),
        "when": [f"2024-05-{1 + d:02d} 08:{i // 60:02d}:{i % 60:02d}"  # no exact duplicates
                 for i, d in enumerate(rng.integers(4, size=n))],
        "clicked": rng.integers(2, size=n), "surface": rng.integers(5, size=n)}), log)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("interactions: log.parquet\nuser_col: uid\nitem_col: iid\n"
                       "time_col: when\nlabel_col: clicked\nscenario_col: surface\n")
    repo = copy_repo(tmp_path / "repo")
    run("recsys", "import", "interactions", "--mapping", str(mapping), "--repo", str(repo))
    meta = json.loads(repo.joinpath(*OFFLINE, "meta.json").read_text())
    assert meta["n_rows"] == n and meta["n_days"] == 4 and meta["import"]["quarantined"] == {}
    assert sorted(meta["summary"]["scenarios"]) == ["0", "1", "2", "3", "4"]
    # request ids number the rows in time order, 0..n-1 across the day partitions
    inter = pq.read_table(repo.joinpath(*OFFLINE, "interactions")).to_pandas()
    assert sorted(inter["request_id"]) == list(range(n))
    assert inter.sort_values("request_id")["event_timestamp"].is_monotonic_increasing


@pytest.mark.parametrize("times, kind", [
    ([1714521600 + 3600 * i for i in range(96)], "epoch seconds"),
    ([(1714521600 + 3600 * i) * 1000 for i in range(96)], "epoch milliseconds"),
    ([str((1714521600 + 3600 * i) * 10 ** 6) for i in range(96)], "epoch microseconds"),
    ([(1714521600 + 3600 * i) * 10 ** 9 for i in range(96)], "epoch nanoseconds"),
    ([f"2024-05-{1 + i // 24:02d}T{i % 24:02d}:00:00.5+00:00" for i in range(96)],
     "ISO date-time with zone"),
])
def test_time_columns_in_any_epoch_unit_or_iso(tmp_path, times, kind):
    """The same four days (2024-05-01..04, one row an hour) whatever the time's encoding; a
    value no encoding fits is quarantined, not read as another century."""
    n = len(times)
    log = tmp_path / "log.parquet"
    when = [str(t) for t in times] + ["next tuesday"] if isinstance(times[0], str) \
        else times + [-1]
    pq.write_table(pa.table({"u": [i % 7 for i in range(n + 1)],
                             "i": [i % 5 for i in range(n + 1)],
                             "t": when, "y": [i % 2 for i in range(n + 1)]}), log)
    repo = copy_repo(tmp_path / "repo")
    proc = run("recsys", "import", "interactions", "--interactions", str(log), "--user-col",
               "u", "--item-col", "i", "--time-col", "t", "--label-col", "y",
               "--repo", str(repo))
    assert f"times read as {kind} ({n})" in proc.stdout
    meta = json.loads(repo.joinpath(*OFFLINE, "meta.json").read_text())
    assert meta["start"].startswith("2024-05-01") and meta["n_days"] == 4
    assert meta["import"]["quarantined"] == {"unparseable time": 1}


def test_bad_interactions_input_is_refused(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    ratings = _ratings(tmp_path / "ratings.csv", n=50)
    base = ["interactions", "--interactions", str(ratings), "--user-col", "userId",
            "--item-col", "movieId", "--time-col", "timestamp"]
    assert "not binary" in _refused(repo, *base, "--label-col", "rating")
    assert "no column 'stars' (--label-col)" in _refused(repo, *base, "--label-col", "stars")
    missing = ["interactions", "--interactions", str(tmp_path / "nope.csv"), "--user-col", "u",
               "--item-col", "i", "--time-col", "t", "--label-col", "l"]
    assert "no such file" in _refused(repo, *missing)
    assert "missing --interactions" in _refused(repo, "interactions", "--user-col", "u")


def test_a_csv_reader_lets_go_of_its_row_handler_before_the_reading_returns(tmp_path):
    """pyarrow's read-ahead thread may still hold the Python row handler after the reader
    closes; dropped while the interpreter exits, it aborts the process (a refusal ended in
    "terminate called without an active exception", exit -6). Reading, whole or stopped
    early, returns only once nothing but the reading held the handler."""
    import gc

    from recsys.data.importers import _csv_blocks, _SkipInvalid

    path = tmp_path / "log.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(2000)) + "1\n")
    # handlers held by anything else this process ran (an earlier test's traceback) stay out
    others = {id(o) for o in gc.get_objects() if isinstance(o, _SkipInvalid)}
    for attempt in range(100):
        blocks = _csv_blocks(path, None, ["a", "b"])
        if attempt % 2:
            next(blocks)
            blocks.close()  # a refusal met in the first block
        else:
            assert sum(batch.num_rows for batch, _, _ in blocks if batch is not None) == 2000
        del blocks
        assert not [o for o in gc.get_objects()
                    if isinstance(o, _SkipInvalid) and id(o) not in others], attempt
