"""`recsys experiment rolling` on the tiny preset: two rolled days, each arm trained and
evaluated on the next day; the update arm warm-starts from the day before and trains on its day
alone; the table, the report, the plot and a gate recorded from the results."""

from __future__ import annotations

import json
from pathlib import Path
from datetime import date, timedelta

import duckdb
import pytest

from conftest import run
from recsys.data.offline import table_glob
from recsys.eval.gates import auc_blocks
from recsys.schema import INTERACTIONS
from recsys.experiments.rolling import log_days


@pytest.fixture(scope="module")
def rolled(tiny, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("rolling") / "rolling"
    days = log_days(tiny["repo"])
    start = days[-4]  # rolled: the last day with two after it, and the one before
    run("recsys", "experiment", "rolling", "--dataset-repo", str(tiny["repo"]), "--model",
        "mmoe", "--start", str(start), "--batch-size", "512", "--out", str(out))
    return {"out": out, "start": start, "results": json.loads((out / "results.json")
                                                              .read_text())}


def test_each_day_is_trained_and_evaluated_on_the_next(tiny, rolled):
    results, start = rolled["results"], rolled["start"]
    second = start + timedelta(days=1)
    assert [(d["day"], d["arm"]) for d in results["days"]] == [
        (str(start), "update"), (str(start), "retrain"), (str(second), "update"),
        (str(second), "retrain")]
    raw = f"read_parquet('{table_glob(tiny['offline'], INTERACTIONS)}', hive_partitioning=false)"

    def rows_of(day: date) -> int:
        return duckdb.sql(f"SELECT count(*) FROM {raw} WHERE event_timestamp::DATE = "
                          f"'{day}'").fetchone()[0]

    for d in results["days"]:  # every arm evaluated on all of the next day's rows
        assert d["evaluated_on"] == str(date.fromisoformat(d["day"]) + timedelta(days=1))
        assert d["overall"]["n"] == rows_of(date.fromisoformat(d["evaluated_on"]))
        assert 0.5 < d["overall"]["auc"] < 1
    update, retrain = results["days"][2], results["days"][3]
    assert update["examples"] == rows_of(second)  # one epoch of its own day
    assert retrain["examples"] == sum(rows_of(d) for d in log_days(tiny["repo"]) if d <= second)
    assert update["overall"]["auc"] != retrain["overall"]["auc"]
    config = json.loads((rolled["out"] / "runs" / f"update-{second}" / "config.json")
                        .read_text())
    assert config["init_from"] == str(rolled["out"] / "runs" / f"retrain-{start}")
    assert results["examples_share"] == pytest.approx(update["examples"] / retrain["examples"])


def test_the_report_plot_and_gates(rolled, tmp_path):
    out, results = rolled["out"], rolled["results"]
    report = (out / "report.md").read_text()
    assert "# Rolling evaluation" in report and "| update |" in report
    assert (out / "rolling_auc.png").stat().st_size > 10_000
    means = results["models"]["update"]["auc"]["overall"]
    assert means["mean"] == pytest.approx(results["days"][2]["overall"]["auc"])
    assert set(auc_blocks(results)) == {"per_scenario"}
    gates = tmp_path / "gates.json"
    run("recsys", "experiment", "gate", str(out), "--gates", str(gates), "--record")
    recorded = json.loads(gates.read_text())
    assert recorded["experiments"]["rolling"]
    # every dataset a day read, with its fingerprint: the window of each day and up to each day
    read = recorded["measured_at"]["datasets"]["rolling"]
    assert sorted(Path(d["dataset"]).name for d in read) == sorted(
        f"{kind}-{day}" for kind in ("day", "upto") for day in
        (rolled["start"], rolled["start"] + timedelta(days=1)) if kind == "day" or
        day == rolled["start"] or results["retrain_every"] == 1)
    assert all(len(d["fingerprint"]) == 16 for d in read)
    run("recsys", "experiment", "gate", str(out), "--gates", str(gates))
