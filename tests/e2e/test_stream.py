"""The streaming loader: every row once per epoch across 1 and 2 ranks, a seeded shuffle that
changes per epoch, a replay from a checkpointed position, errors of its thread raised in the
consumer, and a run killed mid-epoch that resumes to the uninterrupted run's loss history."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import BIN, run
from recsys.dataset import stream
from recsys.dataset.layout import Layout
from recsys.dataset.loader import needed_columns
from recsys.dataset.meta import DatasetMeta
from recsys.dataset.stream import SplitFiles, StreamLoader
from recsys.errors import DataError


@pytest.fixture(scope="module")
def small_groups(tiny, tmp_path_factory):
    """The tiny training split rewritten in row groups of 1,000 rows (16 of them), so ranks
    and the shuffle have row groups to share out; p_true holds each row's number, so rows
    can be told apart."""
    out = tmp_path_factory.mktemp("groups") / "ds"
    (out / "train").mkdir(parents=True)
    (out / "meta.json").write_text((tiny["dataset"] / "meta.json").read_text())
    at = 0
    for f in sorted((tiny["dataset"] / "train").glob("*.parquet")):
        t = pq.read_table(f)
        number = pa.array(np.arange(at, at + t.num_rows, dtype=np.float32))
        t = t.set_column(t.schema.get_field_index("p_true"), "p_true", number)
        pq.write_table(t, out / "train" / f.name, row_group_size=1000)
        at += t.num_rows
    layout = Layout.from_meta(DatasetMeta.read(out))
    files = SplitFiles(out, "train", layout)
    files.columns = needed_columns(layout)  # with p_true
    return out, layout, files


def _keys(batches) -> list[int]:
    """The row number of every row."""
    return [int(k) for b in batches for k in b.p_true]


def test_every_row_once_per_epoch_on_one_and_two_ranks(small_groups):
    _, layout, files = small_groups
    assert len(files.groups) == 16
    every = _keys(StreamLoader(files, layout, 512).row_sets())
    assert len(every) == len(set(every)) == files.rows == 16_000
    for epoch in range(2):
        ranks = []
        for rank in range(2):
            loader = StreamLoader(files, layout, 256, shuffle=True, seed=3, rank=rank,
                                  world=2, buffer_rows=3000)
            loader.epoch = epoch
            sets = list(loader.row_sets())
            assert len(sets) == len(loader) and all(len(s) == 256 for s in sets[:-1])
            ranks.append(_keys(sets))
        assert len(ranks[0]) == len(ranks[1]) == 8_000  # equal batches on both ranks
        assert not set(ranks[0]) & set(ranks[1])
        assert Counter(ranks[0] + ranks[1]) == Counter(every)


def test_shuffle_is_seeded_and_changes_per_epoch(small_groups):
    _, layout, files = small_groups

    def order(seed, epoch):
        loader = StreamLoader(files, layout, 256, shuffle=True, seed=seed, buffer_rows=3000)
        loader.epoch = epoch
        return _keys(loader.row_sets())

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    # a batch mixes rows of several row groups (group g holds rows 1000 g .. 1000 g + 999)
    position = {k: i for i, k in enumerate(_keys(StreamLoader(files, layout, 4096).row_sets()))}
    assert len({position[k] // 1000 for k in order(0, 0)[:256]}) >= 3


def test_a_replay_from_a_position_sees_the_same_batches(small_groups):
    _, layout, files = small_groups
    loader = StreamLoader(files, layout, 256, shuffle=True, seed=5, buffer_rows=3000)
    whole = [b.labels.clone() for b in loader]
    loader.epoch, loader.start_batch = 0, 40
    tail = [b.labels.clone() for b in loader]
    assert len(tail) == len(whole) - 40
    assert all(torch.equal(a, b) for a, b in zip(whole[40:], tail))


def test_an_error_in_the_loader_thread_reaches_the_consumer(small_groups, monkeypatch):
    _, layout, files = small_groups

    def broken(*args, **kwargs):
        raise DataError("a broken row group")

    monkeypatch.setattr(stream, "to_split_data", broken)
    started = time.time()
    with pytest.raises(DataError, match="a broken row group"):
        for _ in StreamLoader(files, layout, 256, shuffle=True):
            pass
    assert time.time() - started < 10


def test_killed_mid_epoch_resumes_with_the_same_loss_history(tiny, tmp_path):
    args = ["train", "--model", "dnn_mixed", "--dataset", str(tiny["dataset"]), "--epochs", "2",
            "--batch-size", "128", "--checkpoint-every", "10"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "recsys"), *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, step = time.time() + 120, 0
    while time.time() < deadline and not step:
        try:
            state = torch.load(killed / "checkpoint.pt", weights_only=False)["state"]
            step = state["epoch"] == 0 and state["step"]
        except (FileNotFoundError, EOFError, RuntimeError):
            time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step and not (killed / "metrics.json").exists()
    resumed = run("recsys", *args, "--out", str(killed))
    assert "resuming" in resumed.stdout and "step" in resumed.stdout
    run("recsys", *args, "--out", str(tmp_path / "straight"))
    a = json.loads((killed / "metrics.json").read_text())["train"]["history"]
    b = json.loads((tmp_path / "straight" / "metrics.json").read_text())["train"]["history"]
    assert [h["train_loss"] for h in a] == pytest.approx([h["train_loss"] for h in b], abs=1e-6)
    assert [h["val_auc"] for h in a] == pytest.approx([h["val_auc"] for h in b], abs=1e-6)
