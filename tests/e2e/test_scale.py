"""Scale-out on the tiny preset: a 2-process gloo run (TorchRec DistributedModelParallel under
torchrun) against one process, its sharded checkpoints, `recsys plan` for the full preset, and
raw IDs far beyond a table hashed into it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import BIN, run
from recsys.dataset.layout import Layout
from recsys.dataset.loader import load_split
from recsys.dataset.meta import DatasetMeta
from recsys.eval.evaluate import predict
from recsys.metrics import auc
from recsys.run import Run

# Seeds of the tiny mmoe run differ by up to about 0.013 in test AUC; a sharded run starts
# from other random tables (each rank initialises its own shards), so it is held to that noise.
AUC_TOLERANCE = 0.02


def _train(tiny, out: Path, *extra: str, dataset: Path | None = None) -> dict:
    run("recsys", "train", "--model", "mmoe", "--dataset", str(dataset or tiny["dataset"]),
        "--out", str(out), *extra)
    return json.loads((out / "metrics.json").read_text())


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc (torchrun's workers may sit in their own
    session)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    base = tmp_path_factory.mktemp("scale")
    return {"one": _train(tiny, base / "one"), "two": _train(tiny, base / "two", "--nproc", "2"),
            "two_dir": base / "two", "base": base}


def test_two_process_gloo_run_matches_one_process(runs):
    one, two = runs["one"], runs["two"]
    assert one["nproc"] == 1 and two["nproc"] == 2
    assert two["overall"]["auc"] > 0.65  # it learned
    assert abs(two["overall"]["auc"] - one["overall"]["auc"]) < AUC_TOLERANCE
    for code, cell in two["scenarios"].items():  # per scenario, every scenario scored
        assert cell["n"] == one["scenarios"][code]["n"]
    assert len(two["train"]["memory"]["peak_rss_bytes"]) == 2
    assert (runs["two_dir"] / "best").is_dir() and not (runs["two_dir"] / "best.pt").exists()


def test_sharded_checkpoint_loads_into_one_process(tiny, runs):
    """torch.distributed.checkpoint reshards: the 2-rank best epoch, read by one process,
    scores the test split exactly as the 2-rank run did."""
    layout = Layout.from_meta(DatasetMeta.read(tiny["dataset"]))
    test = load_split(tiny["dataset"], "test", layout)
    model = Run(runs["two_dir"]).load_model(layout)
    assert auc(test.labels, predict(model, test, layout)) == \
        pytest.approx(runs["two"]["overall"]["auc"], abs=1e-6)


def test_sharded_run_resumes_only_with_its_process_count(tiny, runs, tmp_path):
    copy = tmp_path / "two"
    shutil.copytree(runs["two_dir"], copy)
    (copy / "metrics.json").unlink()
    proc = run("recsys", "train", "--model", "mmoe", "--dataset", str(tiny["dataset"]),
               "--out", str(copy), check=False)
    assert proc.returncode == 2
    assert "written by 2 process(es); resume it with --nproc 2" in proc.stderr


def test_killed_sharded_run_resumes_to_the_same_result(tiny, runs, tmp_path):
    killed = tmp_path / "killed"
    args = ["train", "--model", "mmoe", "--dataset", str(tiny["dataset"]), "--nproc", "2",
            "--out", str(killed)]
    proc = subprocess.Popen([str(BIN / "recsys"), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint" / "state.json").exists() and time.time() < deadline:
        time.sleep(0.02)
    for pid in _process_tree(proc.pid):  # recsys, torchrun and both ranks, at once
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    resumed = run("recsys", *args)
    assert "resuming" in resumed.stdout
    a = json.loads((killed / "metrics.json").read_text())
    b = runs["two"]
    assert [h["val_auc"] for h in a["train"]["history"]] == \
        pytest.approx([h["val_auc"] for h in b["train"]["history"]], abs=1e-6)
    assert a["overall"]["auc"] == pytest.approx(b["overall"]["auc"], abs=1e-6)


@pytest.mark.parametrize("args, says", [
    (["--model", "maml"], "maml trains in one process only"),
    (["--model", "mmoe", "--batch-size", "1001"], "not a multiple of --nproc 2"),
    (["--model", "mmoe", "--device", "cuda"], "no CUDA GPU"),
])
def test_sharded_training_refuses_what_it_cannot_do(tiny, tmp_path, args, says):
    proc = run("recsys", "train", *args, "--nproc", "2", "--dataset", str(tiny["dataset"]),
               "--out", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, \
        proc.stderr
    assert not (tmp_path / "run").exists()


def test_plan_for_the_full_preset_over_8_gpus_fits():
    proc = run("recsys", "plan", "--preset", "full", "--world-size", "8", "--device", "cuda",
               "--memory-gb", "80")
    out = proc.stdout
    assert "FITS" in out and "DOES NOT FIT" not in out
    user = next(line for line in out.splitlines() if line.startswith("| t_user_id "))
    assert "200,000,001" in user and "row_wise" in user and "0-7" in user
    # 200M rows x 16 fp32 + one Adagrad float per row, split over 8 ranks
    assert float(user.split("|")[-2]) == pytest.approx(200_000_001 * 68 / 8 / 2 ** 30, rel=0.01)


def test_plan_that_cannot_fit_says_so_and_exits_nonzero():
    proc = run("recsys", "plan", "--preset", "full", "--world-size", "2", "--device", "cuda",
               "--memory-gb", "4", check=False)
    assert proc.returncode == 1
    assert "DOES NOT FIT" in proc.stdout
    # what would fit (the dot part's own user and item tables count: ModelConfig.interaction)
    assert "--world-size 8" in proc.stdout and "--dim 4" in proc.stdout


def test_plan_refuses_bad_flags():
    proc = run("recsys", "plan", "--dtype", "fp8", check=False)
    assert proc.returncode == 2 and "--dtype fp8" in proc.stderr


def test_ids_far_beyond_the_table_train_and_score(tiny, runs, tmp_path):
    """User IDs around 10^12 (the table has 20,001 rows) hashed into it: every row gets a real
    embedding row, none falls to the unknown row, and the run scores as the one with dense IDs."""
    far = tmp_path / "far"
    shutil.copytree(tiny["dataset"], far)
    for part in far.glob("*/*.parquet"):
        table = pq.read_table(part)
        i = table.schema.get_field_index("user_id")
        raw = pc.add(pc.multiply(table["user_id"].cast(pa.int64()), 1_000_003), 10 ** 12)
        pq.write_table(table.set_column(i, table.schema.field(i), raw), part)
    layout = Layout.from_meta(DatasetMeta.read(far), hashed_rows={"user_id": 20_000})
    ids = load_split(far, "test", layout).ids[:, layout.slot("user_id")]
    assert (ids < 20_000).all()  # no row sent to the unknown row (20,000)
    hashed = _train(tiny, tmp_path / "run", "--user-rows", "20000", dataset=far)
    assert abs(hashed["overall"]["auc"] - runs["one"]["overall"]["auc"]) < AUC_TOLERANCE
    stats = hashed["hashing"]["user_id"]
    assert stats["rows"] == 20_000 and stats["distinct_ids"] > 1_000
    assert stats["colliding_share"] == pytest.approx(stats["expected_share"], abs=0.05)
