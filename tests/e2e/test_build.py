"""build-dataset out of core: partitions under a memory budget give the same training set as
one partition per split and as an independent DuckDB ASOF join; Feast's Spark offline store
gives the same as DuckDB; logs with gaps, of months and of one day build; a killed build
resumes to the same result."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from conftest import BIN, copy_repo, error_lines, in_process, run
from recsys.data.offline import table_glob
from recsys.schema import HISTORY_ITEMS, INTERACTIONS
from recsys.antm2c import ENTITY_BY_NAME, MODEL_VIEWS, view_features

DAY = 86_400


def _table(dataset, split=None):
    files = sorted(dataset.glob(f"{split or '*'}/*.parquet"))
    return pads.dataset([str(f) for f in files], format="parquet").to_table() \
        .sort_by("request_id")


def _same_dataset(a, b):
    for split in ("train", "val", "test"):
        ta, tb = _table(a, split), _table(b, split)
        assert ta.num_rows > 0 and ta.equals(tb), split


@pytest.fixture(scope="module")
def builds(tiny, tmp_path_factory):
    """The tiny repo as the default budget builds it (one partition) and in many
    small partitions (time ranges and hash buckets)."""
    out = tmp_path_factory.mktemp("builds") / "parts"
    run("recsys", "build-dataset", "--repo", str(tiny["repo"]), "--out", str(out),
        "--partition-rows", "1500")
    return {"whole": tiny["dataset"], "parts": out}


def test_partitioned_build_equals_one_partition(tiny, builds):
    whole = json.loads((builds["whole"] / "meta.json").read_text())
    parts = json.loads((builds["parts"] / "meta.json").read_text())
    assert whole["build"]["partitions"] == 1
    assert parts["build"]["partitions"] > 6 and parts["build"]["hash_partitioned"] > 0
    assert parts["splits"]["train"]["parts"] > 1
    _same_dataset(builds["whole"], builds["parts"])


def test_partitioned_build_equals_an_independent_asof_join(tiny, builds):
    """Every feature of every row equals DuckDB's ASOF join of the raw offline tables."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("ds", _table(builds["parts"]))
    joins, checks = [], []
    for v in MODEL_VIEWS:  # the dataset's views
        key = ENTITY_BY_NAME[v.entity].join_key
        con.execute(f"CREATE VIEW {v.name} AS SELECT * FROM "
                    f"read_parquet('{table_glob(tiny['offline'], v.name)}')")
        joins.append(f"ASOF LEFT JOIN {v.name} ON i.{key} = {v.name}.{key} "
                     f"AND i.event_timestamp >= {v.name}.event_timestamp")
        checks += [f"ds.{f.name} IS NOT DISTINCT FROM {v.name}.{f.name}"
                   for f in view_features(v.name)]
    raw = f"read_parquet('{table_glob(tiny['offline'], INTERACTIONS)}', hive_partitioning=false)"
    rows, mismatched = con.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE NOT ({' AND '.join(checks)}))
        FROM {raw} i {' '.join(joins)} JOIN ds USING (request_id)""").fetchone()
    assert rows == con.execute("SELECT count(*) FROM ds").fetchone()[0] == 24_000
    assert mismatched == 0


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (`java` not on "
                                                           "PATH)")
def test_a_window_builds_its_rows_as_the_whole_log_does(tiny, tmp_path):
    """--from / --to builds the window's rows only, split inside it, each row with the features,
    the history (reaching back before the window) and the cold-start flags the whole log's
    build gives it; an empty window is refused with one line."""
    raw = f"read_parquet('{table_glob(tiny['offline'], INTERACTIONS)}', hive_partitioning=false)"
    first, last = duckdb.sql(f"SELECT min(event_timestamp)::DATE, max(event_timestamp)::DATE "
                             f"FROM {raw}").fetchone()
    start = first + timedelta(days=2)
    out = tmp_path / "window"
    run("recsys", "build-dataset", "--repo", str(tiny["repo"]), "--out", str(out), "--from",
        str(start), "--to", str(last), "--split", "days")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["window"]["to"] == str(last) and meta["window"]["from"].startswith(str(start))
    inside = duckdb.sql(f"SELECT count(*) FROM {raw} WHERE event_timestamp::DATE >= "
                        f"'{start}'").fetchone()[0]
    assert sum(v["rows"] for v in meta["splits"].values()) == inside
    for split in ("train", "val", "test"):  # the last two days: the same cuts as the whole's
        window, whole = _table(out, split), _table(tiny["dataset"], split)
        kept = whole.filter(pc.is_in(whole["request_id"], value_set=window["request_id"]))
        assert window.num_rows > 0 and window.equals(kept), split
    train = _table(out, "train")
    day_one = train.filter(pc.less(train["event_timestamp"],
                                   pa.scalar(datetime.combine(start + timedelta(days=1),
                                                              datetime.min.time()),
                                             pa.timestamp("us", "UTC"))))
    lengths = pc.list_value_length(day_one[HISTORY_ITEMS]).fill_null(0)
    assert pc.sum(lengths).as_py() > 0  # its first day's history: clicks before the window

    result = run("recsys", "build-dataset", "--repo", str(tiny["repo"]), "--out",
                 str(tmp_path / "empty"), "--from", "2001-01-01", "--to", "2001-01-02",
                 check=False)
    assert result.returncode == 2 and "no rows in that window" in result.stderr
    assert f"the log has rows from {first} to {last}" in result.stderr
    assert not (tmp_path / "empty").exists()


def test_spark_build_equals_duckdb_build(tiny, tmp_path):
    pytest.importorskip("pyspark", reason="make test installs pyspark (the spark extra)")
    out = tmp_path / "spark"
    proc = run("recsys", "build-dataset", "--repo", str(tiny["repo"]), "--out", str(out),
               "--engine", "spark")
    assert "on spark" in proc.stdout
    _same_dataset(tiny["dataset"], out)
    train = _table(out, "train")
    for name in ("item_title_vec", "history_item_ids"):  # the encoded text, the user's
        assert train[name].null_count < len(train), name   # history: through Spark too


def _log(path, days, rows_per_day=150, seed=0):
    """An interaction log with rows on the given day offsets (epoch seconds), 0/1 labels."""
    rng = np.random.default_rng(seed)
    start = 1_700_006_400  # a midnight, UTC
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "ts", "click"])
        for day in days:
            for s in sorted(rng.choice(DAY, rows_per_day, replace=False)):
                w.writerow([int(rng.integers(60)), int(rng.integers(40)),
                            start + day * DAY + int(s), int(rng.integers(2))])
    return path


def _imported(tmp_path, days) -> Path:
    """A repo holding an imported log of 150 rows on each of `days`, applied."""
    repo = copy_repo(tmp_path / "repo")
    log = _log(tmp_path / "log.csv", days)
    run("recsys", "import", "interactions", "--interactions", str(log), "--user-col", "user",
        "--item-col", "item", "--time-col", "ts", "--label-col", "click", "--repo", str(repo))
    run("feast", "apply", cwd=repo)
    return repo


@pytest.mark.parametrize("days, split, test_day, val_day", [
    ([0, 1, 4, 5, 9, 12], [], 12, 9),                     # days without a row between (auto)
    (list(range(0, 150, 7)), ["--split", "days"], 147, 140),  # five months, weekly
    ([0], [], None, None),                                # a single day: time quantiles
])
def test_any_time_span_builds(tmp_path, days, split, test_day, val_day):
    repo = _imported(tmp_path, days)
    out = tmp_path / "ds"
    # the single day in hash buckets that each hold rows of all three splits
    buckets = ["--partition-rows", "40"] if test_day is None else []
    proc = run("recsys", "build-dataset", "--repo", str(repo), "--out", str(out), *buckets,
               *split)
    meta = json.loads((out / "meta.json").read_text())
    rows = {s: meta["splits"][s]["rows"] for s in ("train", "val", "test")}
    assert sum(rows.values()) == 150 * len(days) and min(rows.values()) > 0
    assert meta["build"]["hash_partitioned"] == (4 if buckets else 0)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    first = lambda split: con.execute(  # noqa: E731
        f"SELECT min(epoch(event_timestamp))::BIGINT, max(epoch(event_timestamp))::BIGINT "
        f"FROM read_parquet('{out}/{split}/*.parquet')").fetchone()
    train, val, test = first("train"), first("val"), first("test")
    assert train[1] < val[0] <= val[1] < test[0]  # chronological, nothing of the future leaks
    if test_day is not None:
        assert (test[0] - 1_700_006_400) // DAY == test_day
        assert (val[0] - 1_700_006_400) // DAY == val_day == (val[1] - 1_700_006_400) // DAY
        return
    assert "quantiles" in proc.stdout and abs(rows["train"] - 0.8 * 150) <= 2
    run("recsys", "train", "--dataset", str(out), "--model", "dnn_mixed", "--epochs", "1",
        "--batch-size", "64", "--out", str(tmp_path / "run"))  # one day of data trains


def test_killed_build_resumes_where_it_stopped(tiny, builds, tmp_path):
    out = tmp_path / "ds"
    args = [str(BIN / "recsys"), "build-dataset", "--repo", str(tiny["repo"]), "--out",
            str(out), "--partition-rows", "1500"]
    partial = tmp_path / ".ds.partial"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(partial.glob("*/part-*.parquet"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in partial.glob("*/part-*.parquet")}
    assert len(done) >= 3 and not out.exists()
    run("recsys", *args[1:])
    assert not partial.exists()
    for p, mtime in done.items():  # the parts written before the kill were kept, not redone
        assert (out / p.relative_to(partial)).stat().st_mtime_ns == mtime
    _same_dataset(builds["parts"], out)


def test_build_refuses_bad_flags_and_changes_nothing(tiny, tmp_path):
    for flags, says in ((["--memory-gb", "0.1"], "--memory-gb 0.1"),
                        (["--partition-rows", "0"], "--partition-rows 0"),
                        (["--engine", "hive"], "--engine 'hive': unknown")):
        proc = run("recsys", "build-dataset", "--repo", str(tiny["repo"]), "--out",
                   str(tmp_path / "ds"), *flags, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr
        assert not list(tmp_path.iterdir())


def _split_days(out: Path) -> dict[str, tuple[int, int]]:
    """The first and last day (since the log's start) of each split's rows, and its rows."""
    con = duckdb.connect()
    return {s: con.execute(
        f"SELECT min(epoch(event_timestamp))::BIGINT // {DAY} - {1_700_006_400 // DAY}, "
        f"max(epoch(event_timestamp))::BIGINT // {DAY} - {1_700_006_400 // DAY}, count(*) "
        f"FROM read_parquet('{out}/{s}/*.parquet')").fetchone() for s in ("train", "val", "test")}


def test_split_choices(tmp_path):
    """auto picks quantiles for months of data and says so; days, dates and shares cut where
    asked; a flag of another mode, or a cut that leaves a split empty, is one clear line."""
    repo = _imported(tmp_path, list(range(0, 150, 7)))  # 22 weekly days, 3,300 rows

    def build(*args, name="ds"):
        proc = run("recsys", "build-dataset", "--repo", str(repo), "--out",
                   str(tmp_path / name), "--force", *args, check=False)
        return proc, tmp_path / name

    proc, out = build()
    assert "time quantiles 80/10/10 of the rows (auto: 22 day(s)" in proc.stdout
    rows = {s: n for s, (_, _, n) in _split_days(out).items()}
    assert abs(rows["train"] - 0.8 * 3300) <= 150 and abs(rows["test"] - 0.1 * 3300) <= 150
    proc, out = build("--split", "days", "--val-days", "2", "--test-days", "3")
    got = _split_days(out)
    assert got["test"][:2] == (133, 147) and got["val"][:2] == (119, 126), proc.stdout
    proc, out = build("--split", "dates", "--val-from", "2023-12-15",
                      "--test-from", "2024-02-01T00:00")
    got = _split_days(out)
    assert got["train"][1] < got["val"][0] and got["val"][1] < got["test"][0]
    assert got["test"][0] == 84 and got["val"][0] == 35, got  # the first days with rows after
    proc, out = build("--split", "quantiles", "--shares", "50/25/25")
    assert abs(_split_days(out)["train"][2] - 1650) <= 150
    for args, says in [
        (["--split", "quantiles", "--val-days", "2"], "--val-days applies to --split days"),
        (["--split", "dates", "--val-from", "2023-12-15"], "needs --val-from and --test-from"),
        (["--split", "dates", "--val-from", "2024-02-01", "--test-from", "2023-12-15"],
         "must come before"),
        (["--split", "dates", "--val-from", "soon", "--test-from", "2024-02-01"],
         "--val-from soon: not an ISO date"),
        (["--split", "dates", "--val-from", "2030-01-01", "--test-from", "2030-02-01"],
         "cannot be cut that way"),
        (["--split", "days", "--val-days", "20", "--test-days", "2"], "too few"),
        (["--shares", "80/20"], "--shares 80/20: three positive"),
        (["--shares", "a/b/c"], "three whole percentages"),
        (["--split", "weeks"], "--split weeks: choose one of"),
    ]:
        # refusals in this process (CliRunner): the builds above are the processes
        bad = tmp_path / "bad"
        code, err = in_process("build-dataset", "--repo", str(repo), "--out", str(bad),
                               "--force", *args)
        assert code == 2 and says in err, (args, err)
        assert len(error_lines(err)) == 1 and not bad.exists(), args
