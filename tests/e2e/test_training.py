"""Training on the tiny preset: the layout follows the data, checkpoints reload exactly, a
killed run resumes, metrics agree with scikit-learn, experiments write their report, bad input
is refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import BIN, error_lines, run
from recsys.dataset.batch import kjt
from recsys.dataset.layout import Layout
from recsys.dataset.loader import BatchLoader, load_split
from recsys.dataset.meta import DatasetMeta
from recsys.eval.evaluate import MIN_ROWS, compute_metrics, predict
from recsys.models.registry import build_model, model_names

MULTI_SCENARIO_MODELS = model_names(family="multi-scenario")
from recsys.experiments.catalog import EXPERIMENTS
from recsys.experiments.runner import run as run_experiment
from recsys.run import Run


@pytest.fixture(scope="module")
def data(tiny):
    layout = Layout.from_meta(DatasetMeta.read(tiny["dataset"]))
    return layout, load_split(tiny["dataset"], "train", layout), \
        load_split(tiny["dataset"], "test", layout)


def test_layout_follows_the_schema_and_dataset(tiny, data):
    layout, train, _ = data
    meta = DatasetMeta.read(tiny["dataset"])
    sizes = dict(zip(layout.sparse, layout.num_embeddings))
    # every table ends with one unknown row
    assert sizes["user_id"] == meta.n_users + 1 and sizes["item_id"] == meta.n_items + 1
    assert sizes["deep_features_0"] == 25 and "deep_features_26" in layout.dense
    assert (train.ids < np.array(layout.num_embeddings)).all() and (train.ids >= 0).all()


def test_dnn_routes_each_row_to_its_own_scenario_network(data):
    layout, train, _ = data
    model = build_model("dnn", layout)
    batch = next(iter(BatchLoader(train, layout, 256)))
    before = model(batch).detach()
    with torch.no_grad():  # change scenario 3's network only
        for p in model.nets[3].net.parameters():
            p.add_(0.5)
    changed = (model(batch).detach() != before)
    assert torch.equal(changed, batch.scenario == 3)


@pytest.mark.parametrize("n_scenarios", [1, 2, 7])
@pytest.mark.parametrize("name", ["dnn", "shared_bottom", "mmoe", "ple"])
def test_models_have_one_tower_per_scenario_of_the_layout(data, name, n_scenarios):
    """The scenarios come from the dataset's schema: the model has as many towers (or
    networks) and routes every row to its own, whatever their number."""
    layout, train, _ = data
    layout = replace(layout, scenarios=tuple(f"s{i}" for i in range(n_scenarios)))
    model = build_model(name, layout)
    heads = model.nets if name == "dnn" else model.towers
    assert len(heads) == n_scenarios
    batch = next(iter(BatchLoader(train, layout, 256)))
    batch.scenario = batch.scenario % n_scenarios
    before = model(batch).detach()
    with torch.no_grad():  # change the last scenario's head only
        for p in heads[-1].parameters():
            p.add_(0.5)
    assert torch.equal(model(batch).detach() != before, batch.scenario == n_scenarios - 1)


@pytest.mark.parametrize("n_scenarios", [1, 2, 7])
@pytest.mark.parametrize("name", ["star", "pepnet", "m2m"])
def test_scenario_conditioned_models_size_themselves_from_the_layout(data, name, n_scenarios):
    """star (a network per scenario on a shared centre), pepnet (a scenario gate on the
    embeddings) and m2m (a tower generated from the scenario): for any number of scenarios, a
    row's score depends on its scenario."""
    layout, train, _ = data
    layout = replace(layout, scenarios=tuple(f"s{i}" for i in range(n_scenarios)))
    torch.manual_seed(0)
    model = build_model(name, layout)
    batch = next(iter(BatchLoader(train, layout, 256)))
    batch.scenario = batch.scenario % n_scenarios
    model.eval()
    with torch.no_grad():
        before = model(batch)
        if n_scenarios == 1:
            assert before.shape == (256,) and torch.isfinite(before).all()
            return
        if name == "star":  # a scenario's own factors: only its rows move
            model.layers[0].scenario_weight[1].mul_(1.5)
            assert torch.equal(model(batch) != before, batch.scenario == 1)
            return
        slot = layout.slot("scenario")  # the scenario feature is what conditions them
        other = batch.ids.clone()
        other[:, slot] = (other[:, slot] + 1) % n_scenarios
        moved = model(replace(batch, sparse=kjt(layout.sparse, other, layout.widths),
                              ids=other))
    assert (moved != before).float().mean() > 0.9


def test_checkpoint_reloads_to_identical_predictions(tiny, data, tmp_path):
    """...and the run's stored test scores are those predictions, row for row, with the
    metrics computed from them out of core equal to the same metrics in memory."""
    layout, _, test = data
    from recsys.config import TrainConfig
    from recsys.run import BEST, SCORES
    from recsys.train.loop import train
    train(tiny["dataset"], tmp_path / "run", TrainConfig(model="mmoe", epochs=1),
          progress=False, log=lambda s: None)
    first, second = build_model("mmoe", layout), build_model("mmoe", layout)
    for m in (first, second):
        m.load_state_dict(torch.load(tmp_path / "run" / BEST, weights_only=True))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    probs = predict(first, test, layout)
    assert np.array_equal(probs, predict(second, test, layout))
    assert metrics["overall"]["auc"] == pytest.approx(roc_auc_score(test.labels, probs), abs=1e-6)
    stored = pq.read_table(tmp_path / "run" / SCORES.format(split="test"))["score"].to_numpy()
    assert np.array_equal(stored, probs)
    in_memory = compute_metrics(test, probs, layout.scenarios)
    assert_close({k: metrics[k] for k in in_memory}, in_memory)


def assert_close(a, b, path: str = "") -> None:
    """Nested metrics equal, floats within 1e-9 (DuckDB's parallel sums may round apart)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-9, nan_ok=True), path
    else:
        assert a == b, path


def test_killed_run_resumes_from_its_checkpoint(tiny, tmp_path):
    """Early stopping too: the run stops once validation AUC has not improved for `patience`
    epochs, keeps the best one, and a killed run resumes to the same epochs and scores."""
    (tmp_path / "stop.yaml").write_text("patience: 1\n")
    args = ["train", "--model", "dnn_mixed", "--dataset", str(tiny["dataset"]), "--epochs", "8",
            "--batch-size", "256", "--config", str(tmp_path / "stop.yaml")]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "recsys"), *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint.pt").exists() and not (killed / "metrics.json").exists()
    resumed = run("recsys", *args, "--out", str(killed))
    assert "resuming" in resumed.stdout
    run("recsys", *args, "--out", str(tmp_path / "straight"))
    a = json.loads((killed / "metrics.json").read_text())
    b = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert [h["val_auc"] for h in a["train"]["history"]] == \
        pytest.approx([h["val_auc"] for h in b["train"]["history"]], abs=1e-6)
    assert a["overall"]["auc"] == pytest.approx(b["overall"]["auc"], abs=1e-6)
    trained = a["train"]
    val = [h["val_auc"] for h in trained["history"]]
    assert trained["epochs"] == len(val) < 8  # stopped before the most epochs
    best = int(np.argmax(val))
    assert trained["best_epoch"] == best + 1 and trained["epochs"] == best + 1 + 1  # patience 1
    # the test scores are the best epoch's: its weights score validation to its AUC
    assert max(val) == pytest.approx(_val_auc_of_best(killed, tiny["dataset"]), abs=1e-6)
    # and the run's stored validation scores are the kept epoch's, not the last one's
    labels = load_split(tiny["dataset"], "val", Run(killed).layout()).labels
    stored = pq.read_table(Run(killed).scores("val"))["score"].to_numpy()
    assert roc_auc_score(labels, stored) == pytest.approx(max(val), abs=1e-6) != val[-1]
    assert not list(killed.glob(".epoch-*"))


def _val_auc_of_best(out, dataset) -> float:
    """Validation AUC of the run's kept weights (best.pt), scored afresh."""
    kept = Run(out)
    layout = kept.layout()
    data = load_split(dataset, "val", layout)
    return roc_auc_score(data.labels, predict(kept.load_model(layout), data, layout))


def test_metrics_per_scenario_match_sklearn_and_small_subsets_get_no_auc(data):
    layout, _, test = data
    probs = np.random.default_rng(0).random(len(test))
    m = compute_metrics(test, probs, layout.scenarios)
    for code, cell in m["scenarios"].items():
        mask = test.scenario == int(code)
        assert cell["auc"] == pytest.approx(roc_auc_score(test.labels[mask], probs[mask]),
                                            abs=1e-6)
    assert m["oracle"]["overall_auc"] == pytest.approx(roc_auc_score(test.labels, test.p_true))
    for flag, cell in m["subsets"].items():
        if cell["n"] < MIN_ROWS:
            assert cell["auc"] is None and cell["note"] == "too few rows"
    few = np.zeros(len(test), dtype=bool)
    few[:MIN_ROWS - 1] = True
    small = replace(test, flags={**test.flags, "few_shot_item": few})
    assert compute_metrics(small, probs, layout.scenarios)["subsets"]["few_shot_item"]["auc"] \
        is None


def test_experiment_writes_results_report_and_plot(tiny, tmp_path):
    """--models and --backbones pick the arms; the report has the paired gains over dnn."""
    out = tmp_path / "exp"
    results = run_experiment(EXPERIMENTS["multi-scenario"], tiny["dataset"], out, seeds=1,
                             options={"models": ("dnn", "mmoe", "star"),
                                      "backbones": ("mlp", "dcn")},
                             flags={"epochs": 1, "batch_size": 512}, progress=False,
                             log=lambda s: None)
    arms = ["dnn", "mmoe", "star", "dnn+dcn", "mmoe+dcn", "star+dcn"]
    assert list(results["models"]) == arms
    assert list(results["gains"]) == [f"{a} − dnn" for a in arms[1:]]
    gain = results["gains"]["mmoe − dnn"]["auc"]["overall"]
    mean = results["models"]
    assert gain["mean"] == pytest.approx(mean["mmoe"]["auc"]["overall"]["mean"] -
                                         mean["dnn"]["auc"]["overall"]["mean"])
    report = (out / "report.md").read_text()
    assert "Bayes (p_true)" in report and "| mmoe+dcn |" in report and "**" in report
    assert "AUC gain over dnn" in report and "| star − dnn |" in report
    assert (out / "per_scenario_auc.png").stat().st_size > 10_000
    config = json.loads((out / "runs" / "star+dcn-seed0" / "config.json").read_text())
    assert config["model_config"]["backbone"] == "dcn" and config["epochs"] == 1
    for arm in arms:
        auc = results["models"][arm]["auc"]["overall"]["mean"]
        assert 0.5 < auc < results["oracle_auc"]["overall"]


def _copy_dataset(tiny, tmp_path, edit, which=0):
    ds = tmp_path / "ds"
    shutil.copytree(tiny["dataset"], ds)
    part = sorted((ds / "train").glob("*.parquet"))[which]
    pq.write_table(edit(pq.read_table(part)), part)
    return ds


def _fails(*args, says):
    proc = run("recsys", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and says in lines[0], proc.stderr


def test_unknown_model(tiny, tmp_path):
    _fails("train", "--model", "xgboost", "--dataset", str(tiny["dataset"]),
           "--out", str(tmp_path / "r"), says="--model 'xgboost': unknown")


def test_missing_dataset(tmp_path):
    _fails("train", "--model", "dnn", "--dataset", str(tmp_path / "none"),
           "--out", str(tmp_path / "r"), says="build-dataset")


@pytest.mark.parametrize("which", [0, -1])
def test_dataset_missing_a_column(tiny, tmp_path, which):
    """In the first part or in a later one (which a dataset scan would fill with nulls)."""
    ds = _copy_dataset(tiny, tmp_path, lambda t: t.drop_columns(["item_brand"]), which)
    _fails("train", "--model", "dnn", "--dataset", str(ds), "--out", str(tmp_path / "r"),
           says="missing column 'item_brand'")


def test_nan_labels(tiny, tmp_path):
    def nan_label(t):
        labels = t["label"].to_numpy().astype(np.float32)
        labels[3] = np.nan
        return t.set_column(t.schema.get_field_index("label"), "label", pa.array(labels))
    ds = _copy_dataset(tiny, tmp_path, nan_label)
    _fails("train", "--model", "dnn", "--dataset", str(ds), "--out", str(tmp_path / "r"),
           says="'label' must be 0 or 1")


def test_empty_split(tiny, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(tiny["dataset"], ds)
    for part in (ds / "val").glob("*.parquet"):
        pq.write_table(pq.read_table(part).slice(0, 0), part)
    _fails("train", "--model", "dnn", "--dataset", str(ds), "--out", str(tmp_path / "r"),
           says="val split is empty")


def test_finished_run_needs_force(tiny, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    _fails("train", "--model", "dnn", "--dataset", str(tiny["dataset"]), "--out", str(out),
           says="pass --force")
    assert (out / "metrics.json").read_text() == "{}"
