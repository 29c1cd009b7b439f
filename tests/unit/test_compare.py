"""Two runs compared on the same test rows (recsys runs compare): the paired bootstrap's point
difference is the two AUCs' (as sklearn computes them), its interval holds a real gain away
from 0 and a null one around it; runs of different data are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from recsys.cli import app
from recsys.eval.compare import _aucs, finished_runs, paired, run_table
from recsys.provenance import dataset_fingerprint
from recsys.run import Run


def _dataset(folder, labels, scenario):
    (folder / "test").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"rows": len(labels)}))
    pq.write_table(pa.table({"label": labels.astype(np.int8), "scenario": scenario}),
                   folder / "test" / "part-000.parquet")
    return folder


def _run(folder, dataset, scores, model="mmoe"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(
        {"model": model, "dataset": str(dataset), "dataset_fingerprint":
         dataset_fingerprint(dataset), "model_config": {"embedding_dim": 16}}))
    (folder / "best.pt").write_bytes(b"weights")
    pq.write_table(pa.table({"score": scores.astype(np.float32)}),
                   folder / "test_scores.parquet")
    (folder / "metrics.json").write_text(json.dumps(
        {"overall": {"auc": roc_auc_score(labels_of(dataset), scores)},
         "scenarios": {"0": {"name": "a", "auc": None}, "1": {"name": "b", "auc": None}}}))
    return Run(folder)


def labels_of(dataset):
    return pq.read_table(dataset / "test").column("label").to_numpy()


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    n = 4000
    labels = (rng.random(n) < 0.4).astype(np.float64)
    scenario = rng.integers(0, 2, n)
    ds = _dataset(tmp_path / "ds", labels, scenario)
    signal = labels + rng.normal(0, 1.5, n)
    weak = _run(tmp_path / "runs" / "weak", ds, signal + rng.normal(0, 2.0, n))
    strong = _run(tmp_path / "runs" / "strong", ds, signal, model="din")
    twin = _run(tmp_path / "runs" / "twin", ds, signal + rng.normal(0, 1e-3, n))
    return labels, scenario, weak, strong, twin


def test_aucs_equal_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = (rng.random((3, 500)) < 0.3).astype(float)
    s = rng.integers(0, 20, (3, 500)).astype(float)  # many ties
    assert _aucs(y, s) == pytest.approx([roc_auc_score(a, b) for a, b in zip(y, s)])


def test_a_real_gain_is_outside_noise_and_a_null_one_inside(runs):
    labels, scenario, weak, strong, twin = runs
    gain = paired(weak, strong, resamples=300)["slices"]
    overall = gain["overall"]
    sw, ss = (pq.read_table(r.scores("test")).column(0).to_numpy() for r in (weak, strong))
    assert overall["diff"] == pytest.approx(roc_auc_score(labels, ss) - roc_auc_score(labels, sw))
    assert 0 < overall["low"] <= overall["diff"] <= overall["high"]
    assert not overall["within_noise"] and overall["p_b_not_better"] < 0.05
    m = scenario == 1
    assert gain["b"]["auc_b"] == pytest.approx(roc_auc_score(labels[m], ss[m]))
    null = paired(strong, twin, resamples=300)["slices"]["overall"]
    assert null["within_noise"] and null["low"] < 0 < null["high"]


def test_runs_are_listed_with_what_differs(runs, tmp_path):
    found = finished_runs(tmp_path / "runs", tmp_path / "ds")
    assert [r.path.name for r in found] == ["strong", "twin", "weak"]
    table = run_table(found)
    assert table["differing"] == ["model"]  # the embedding_dim they share is no difference


def test_runs_of_different_data_are_refused_in_one_line(runs, tmp_path):
    labels, scenario, weak, *_ = runs
    other = _dataset(tmp_path / "other", labels[::-1].copy(), scenario)
    elsewhere = _run(tmp_path / "runs2" / "x", other, labels[::-1].copy())
    result = CliRunner().invoke(app, ["runs", "compare", str(weak.path), str(elsewhere.path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: ") and \
        "different data" in result.output
