"""build-dataset (Feast point-in-time join per partition + flags + Parquet) next to a raw
DuckDB ASOF join of the same tables written to Parquet, the price of going through the feature
store; the build's peak memory at 10x the rows under the same budget (flat in rows); and the
price of the user's history: the default service with it and without it, in time and peak
memory, at both sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest

from conftest import NO_HISTORY, RESULTS, generated_repo, tenth
from recsys.data.offline import connect, offline_dir, read_repo_meta
from recsys.dataset.build import build_dataset
from recsys.antm2c import ENTITY_BY_NAME, MODEL_VIEWS, view_features

MEMORY_GB = 1.0  # the budget both sizes are built under


def test_build_dataset(benchmark, applied_repo, tmp_path):
    out = tmp_path / "ds"
    benchmark.group = "point-in-time join"
    # a warm-up round first, as for the raw join: the first build in a process also imports
    # Feast (several seconds, once per process, whatever the rows); reported apart
    start = time.perf_counter()
    build_dataset(applied_repo, out, force=True, progress=False)
    RESULTS["build-dataset first round in a process (Feast import)"] = \
        time.perf_counter() - start
    benchmark.pedantic(lambda: build_dataset(applied_repo, out, force=True, progress=False),
                       rounds=1, iterations=1)
    RESULTS["build-dataset (Feast)"] = benchmark.stats.stats.mean


def raw_asof_sql(target: str) -> str:
    joins, cols = [], []
    for v in MODEL_VIEWS:  # those of the default service
        key = ENTITY_BY_NAME[v.entity].join_key
        joins.append(f"ASOF LEFT JOIN {v.name} ON i.{key} = {v.name}.{key} "
                     f"AND i.event_timestamp >= {v.name}.event_timestamp")
        cols += [f"{v.name}.{f.name}" for f in view_features(v.name)]
    return (f"COPY (SELECT i.* EXCLUDE (day_index), {', '.join(cols)} FROM interactions i "
            f"{' '.join(joins)}) TO '{target}' (FORMAT parquet)")


def test_raw_duckdb_asof_join(benchmark, applied_repo, tmp_path):
    meta = read_repo_meta(applied_repo)
    con: duckdb.DuckDBPyConnection = connect(offline_dir(applied_repo), meta.start_epoch)
    sql = raw_asof_sql(str(tmp_path / "raw.parquet"))
    benchmark.group = "point-in-time join"
    benchmark.pedantic(lambda: con.execute(sql), rounds=2, iterations=1, warmup_rounds=1)
    rows = duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'raw.parquet'}'").fetchone()[0]
    assert rows == meta.n_rows
    RESULTS["raw DuckDB ASOF join"] = benchmark.stats.stats.mean


# The child's peak from /proc (VmHWM belongs to the process image exec made; getrusage's
# ru_maxrss would keep the forking pytest process's peak); its time from after the imports.
_MEASURE = """
import json, re, sys, time
from pathlib import Path
import feast  # noqa: F401  (imported before the clock starts, as in a warm process)
from recsys.dataset.build import build_dataset
start = time.perf_counter()
info = build_dataset(Path(sys.argv[1]), Path(sys.argv[2]), memory_gb=float(sys.argv[3]),
                     service_name=sys.argv[4] or None, progress=False)
seconds = time.perf_counter() - start
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(json.dumps({"peak_rss": int(hwm) * 1024, "partitions": info["build"]["partitions"],
                  "seconds": seconds}))
"""


@pytest.fixture(scope="module")
def tenth_repo(tmp_path_factory):
    """The benchmark preset at a tenth of its rows, generated and applied."""
    return generated_repo(tmp_path_factory.mktemp("tenth") / "feature_repo", tenth())


@pytest.mark.parametrize("history", ["with", "without"])
@pytest.mark.parametrize("size", ["1x", "10x"])
def test_build_peak_memory(benchmark, applied_repo, tenth_repo, tmp_path, size, history):
    """Peak RSS and time of a whole `build-dataset` process under a 1 GB budget, the default
    service with and without the user's history."""
    repo = tenth_repo if size == "1x" else applied_repo
    service = "" if history == "with" else NO_HISTORY
    out = {}

    def build():
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(repo), str(tmp_path / "ds"),
                               str(MEMORY_GB), service], capture_output=True, text=True,
                              check=True)
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        subprocess.run(["rm", "-rf", str(tmp_path / "ds")], check=True)

    benchmark.group = f"build, 1x vs 10x rows, {history} the history"
    benchmark.pedantic(build, rounds=1, iterations=1)
    label = f"{size} rows, {history} the history"
    RESULTS[f"build peak RSS bytes, {label}"] = out["peak_rss"]
    RESULTS[f"build s, {label}"] = out["seconds"]
    RESULTS[f"build partitions, {label}"] = out["partitions"]
