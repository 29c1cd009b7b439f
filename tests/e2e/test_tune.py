"""recsys tune on tiny: trials are run folders, the study resumes after a kill -9 without
redoing a finished trial, best.yaml trains with `recsys train --config`."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

from conftest import BIN, run


def _finished(db) -> int:
    if not db.is_file():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'")\
                .fetchone()[0]
        except sqlite3.OperationalError:  # the study is being created
            return 0


def test_a_killed_tune_resumes_and_its_best_config_trains(tiny, tmp_path):
    (tmp_path / "base.yaml").write_text("model: dnn_mixed\nepochs: 2\n")
    out = tmp_path / "tune"
    args = [str(BIN / "recsys"), "tune", "--config", str(tmp_path / "base.yaml"), "--dataset",
            str(tiny["dataset"]), "--trials", "3", "--jobs", "1", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _finished(out / "study.db") < 1 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _finished(out / "study.db") >= 1 and not (out / "tune.json").exists()
    first = json.loads((out / "trial-0" / "metrics.json").read_text())
    done = run("recsys", *args[1:])
    assert "best: trial" in done.stdout
    result = json.loads((out / "tune.json").read_text())
    finished = [t for t in result["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 3
    # the trial finished before the kill was kept, not trained again
    assert json.loads((out / "trial-0" / "metrics.json").read_text()) == first
    assert (out / "trials.png").stat().st_size > 0
    best = result["best"]
    assert best["val_auc"] == max(t["val_auc"] for t in result["trials"]
                                  if t["state"] == "COMPLETE")
    trained = run("recsys", "train", "--config", str(out / "best.yaml"), "--dataset",
                  str(tiny["dataset"]), "--out", str(tmp_path / "best"))
    assert trained.returncode == 0
    again = run("recsys", *args[1:], check=False)  # a finished tune is not run over
    assert again.returncode == 2 and "--force" in again.stderr
