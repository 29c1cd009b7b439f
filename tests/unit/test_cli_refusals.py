"""Refusals in process (Typer's CliRunner): a bad flag, a missing dataset or run is one line
naming it, exit 2, and none of them needs torch, TorchRec or Feast to say so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from recsys.antm2c import ANTM2C
from recsys.cli import app

runner = CliRunner()


def _dataset(folder) -> None:
    """A dataset's meta.json: what a command reads before it reads the data."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({"schema": ANTM2C.to_json(), "n_users": 10,
                                                  "n_items": 10}))



@pytest.mark.parametrize("args, says", [
    (["train", "--model", "mmoe", "--dataset", "{tmp}/missing"], "meta.json is missing"),
    (["serve", "--run", "{tmp}/missing"], "not a finished run"),
    (["generate", "--seed", "99999999999999999999"], "--seed"),
    (["generate", "--seed", "-1"], "--seed"),
    (["train", "--model", "mmoe", "--epochs", "0"], "--epochs"),
    # a dataset's folder is there: the config is checked before its data is read
    (["train", "--model", "mmoe", "--dataset", "{tmp}", "--history", "last"],
     "--history 'last': choose one of attention, mean, none"),
    (["train", "--model", "din", "--dataset", "{tmp}", "--history", "mean"],
     "--history 'mean': din always pools it by attention; leave --history out"),
    (["train", "--model", "two_tower", "--dataset", "{tmp}", "--history", "attention"],
     "--history 'attention': two_tower pools it by mean only"),
    (["build-dataset", "--from", "2026-01-09", "--to", "2026-01-08"],
     "the window ends before it starts"),
    (["build-dataset", "--from", "9 January"], "--from 9 January: not an ISO date"),
    (["serve"], "missing --run"),
    (["export", "{tmp}/missing"], "not a finished run"),
    (["export", "{tmp}/missing", "--dtype", "int2"], "--dtype: 'int2' is not a table type"),
    (["serve", "--run", "{tmp}", "--watch", "{tmp}"], "--run and --watch: pass one"),
    (["serve", "--watch", "{tmp}"], "no finished run in it yet"),
    (["train", "--model", "mmoe", "--dataset", "{tmp}", "--init-from", "{tmp}/missing"],
     "not a finished run"),
    (["tune", "--model", "mmoe", "--dataset", "{tmp}/missing"], "meta.json is missing"),
    (["tune", "--dataset", "{tmp}"], "missing --model"),
    (["tune", "--model", "mmoe", "--trials", "0"], "--trials"),
    (["runs", "compare", "{tmp}/a", "{tmp}/b"], "not a finished run"),
    (["runs", "list", "--folder", "{tmp}/none"], "--folder"),
    (["train", "--model", "two_tower", "--dataset", "{tmp}", "--config", "{tmp}/dot.yaml"],
     "two_tower has no dot part"),
    (["experiment", "online", "--run", "{tmp}/missing", "--shown", "30"],
     "shown 30: more than the 20 candidates"),
    (["experiment", "online", "--run", "{tmp}/missing", "--epochs", "2"],
     "drop --config, --epochs and --batch-size"),
    (["experiment", "online", "--run", "{tmp}/missing"], "not a finished run"),
    # a dataset (or a run's copy of its meta) from before schemas were recorded
    (["train", "--model", "mmoe", "--dataset", "{tmp}/old", "--out", "{tmp}/run"],
     "old/meta.json: written by an older recsys (no schema in it): build the dataset again"),
])
def test_refusal_is_one_line(tmp_path, args, says):
    _dataset(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "meta.json").write_text("{}")
    (tmp_path / "dot.yaml").write_text("model_config:\n  interaction: dot\n")
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["train", "--model", "mmoe", "--dataset", "/nonexistent"],
                                  ["serve", "--run", "/nonexistent"],
                                  ["train", "--model", "mmoe", "--dataset", "{tmp}",
                                   "--out", "{tmp}/done"],
                                  ["train", "--model", "mmoe", "--text", "--dataset", "{tmp}"]])
def test_refusal_imports_no_heavy_library(args, tmp_path):
    """The command is refused before numpy, torch, torchrec or feast is imported: a missing dataset
    or run; a finished run, named by --out or by the flags (runs/mmoe+text)."""
    _dataset(tmp_path)
    for run in (tmp_path / "done", tmp_path / "runs" / "mmoe+text"):
        run.mkdir(parents=True)
        (run / "metrics.json").write_text("{}")
    args = [a.format(tmp=tmp_path) for a in args]
    code = ("import sys\nfrom recsys.cli import main\nsys.argv = ['recsys', *%r]\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    heavy = [m for m in ('numpy', 'torch', 'torchrec', 'feast') if m in sys.modules]\n"
            "    print(e.code, heavy)\n" % (args,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.stdout.strip() == "2 []", (out.stdout, out.stderr)
    assert ("holds a finished run" in out.stderr) == (str(tmp_path) in " ".join(args))


def test_an_append_to_a_repo_without_data_is_one_line(tmp_path):
    from conftest import copy_repo

    repo = copy_repo(tmp_path / "repo")
    for args in (["antm2c", str(tmp_path / "part0.csv")],
                 ["interactions", "--interactions", str(tmp_path / "log.csv")]):
        result = runner.invoke(app, ["import", *args, "--append", "--repo", str(repo)])
        assert result.exit_code == 2, result.output
        assert "no data in" in result.output and "Traceback" not in result.output
        assert not (repo / "data").exists()


def test_a_run_of_an_older_recsys_is_refused_not_misread(tmp_path):
    """A run whose config.json this version no longer reads (dropoutnet once carried maml's
    keys) is one line saying to train it again, whatever reads it."""
    import json

    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"model": "dropoutnet", "model_config": {"meta_tasks": 32, "inner_lr": 0.01}}))
    (run / "best.pt").write_bytes(b"")
    (run / "metrics.json").write_text("{}")
    result = runner.invoke(app, ["runs", "compare", str(run), str(run)])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert "model_config.meta_tasks: not a known key" in last and "train it again" in last
