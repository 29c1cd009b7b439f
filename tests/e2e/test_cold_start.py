"""Cold start on the tiny preset: each method improves on its own objective, MAML's inner step
moves only the adapted copies, unseen IDs take the cold path and are scored, the warm-up
protocol moves only new items' rows, and the experiment writes its report through the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import error_lines, run
from recsys.dataset.counts import training_counts
from recsys.dataset.episodes import EpisodeSampler, Histories, Tasks
from recsys.dataset.stream import SplitFiles
from recsys.dataset.layout import Layout
from recsys.dataset.loader import BatchLoader, load_split, rows_batch, SplitData
from recsys.dataset.meta import DatasetMeta
from recsys.errors import DataError
from recsys.eval.evaluate import MIN_ROWS, compute_metrics, predict
from recsys.eval.warmup import STAGES, warmup_curve, warmup_sets
from recsys.models.registry import MODELS, build_model, model_names
from recsys.models.cold import COLD_ENTITIES
from recsys.models.base import dense_parameters
from recsys.schema import FEW_SHOT_MAX


@pytest.fixture(scope="module")
def splits(tiny):
    layout = Layout.from_meta(DatasetMeta.read(tiny["dataset"]))
    return layout, *(load_split(tiny["dataset"], s, layout) for s in ("train", "val", "test"))


@pytest.fixture(scope="module")
def counts(tiny, splits):
    """Training interactions per user / item row, streamed as `recsys train` counts them."""
    return training_counts(SplitFiles(tiny["dataset"], "train", splits[0]), splits[0],
                           COLD_ENTITIES)


def test_streamed_counts_equal_the_split_in_memory(splits, counts):
    layout, train, _, _ = splits
    for name in COLD_ENTITIES:
        assert np.array_equal(counts[name], np.bincount(train.ids[:, layout.slot(name)],
                                                        minlength=len(counts[name])))


def _model(name, layout, train, seed=0, counts=None):
    """The model as `recsys train` prepares it, and its episode sampler (None without)."""
    torch.manual_seed(seed)
    model = build_model(name, layout)
    can = model.capabilities
    if can.cold_path:
        model.set_counts(counts or {n: np.bincount(train.ids[:, layout.slot(n)],
                                                   minlength=layout.num_embeddings[
                                                       layout.slot(n)])
                                    for n in COLD_ENTITIES})
    sampler = EpisodeSampler(train, layout, can.episodes, model.cfg.meta_tasks, seed) \
        if can.episodes else None
    return model, sampler


@pytest.mark.parametrize("name", model_names(family="cold-start"))
def test_each_method_improves_on_its_own_loss(splits, name):
    layout, train, _, _ = splits
    model, sampler = _model(name, layout, train)
    opt = torch.optim.Adam(dense_parameters(model), lr=3e-3)
    batches = iter(BatchLoader(train, layout, 512, shuffle=True))
    fixed, fixed_episode = next(batches), sampler.next() if sampler else None

    def own_loss():  # the same batch and the same meta-learning tasks every time
        return model.loss(fixed, fixed_episode).item()  # no backward: nothing moves

    before = own_loss()
    for _, batch in zip(range(20), batches):
        loss = model.loss(batch, sampler.next() if sampler else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert own_loss() < before - 0.03


@pytest.mark.parametrize("name", ["maml", "melu"])
def test_inner_step_changes_adapted_parameters_not_meta_parameters(splits, name):
    layout, train, _, _ = splits
    model, _ = _model(name, layout, train)
    meta_before = {k: v.clone() for k, v in model.state_dict().items()}
    episode = EpisodeSampler(train, layout, ("user_id",), 8, 0).next()["user_id"]
    emb, dense, labels, raw = model.task_rows(episode.support, episode.tasks, episode.k)
    own, user = model.adapt(emb, dense, labels, raw, torch.ones_like(labels), create_graph=False)
    assert own, "no parameter is adapted"
    for i, (weight, bias) in own.items():
        assert weight.shape[0] == 8  # one copy per task
        assert not torch.allclose(weight, model.layers[i].weight.expand_as(weight))
        assert not torch.allclose(bias, model.layers[i].bias.expand_as(bias))
        assert not torch.allclose(weight[0], weight[1])  # each task its own step
    moved = not torch.allclose(user, model.cold_embedding(raw[:, 0], "user_id"))
    assert moved == (name == "maml")  # maml adapts the user's embedding, melu does not
    for key, value in model.state_dict().items():
        assert torch.equal(value, meta_before[key]), f"meta parameter {key} changed"


def _with_user_ids(data: SplitData, layout: Layout, user_row: int) -> SplitData:
    ids = data.ids.copy()
    ids[:, layout.slot("user_id")] = user_row
    return replace(data, ids=ids)


def test_ids_outside_the_table_map_to_the_unknown_row(tiny, splits, tmp_path):
    layout = splits[0]
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "meta.json").write_text((tiny["dataset"] / "meta.json").read_text())
    (dataset / "test").mkdir()
    table = pq.read_table(next((tiny["dataset"] / "test").glob("*.parquet")))
    n = table.num_rows
    raw = np.where(np.arange(n) % 3 == 0, 10 ** 12, np.where(np.arange(n) % 3 == 1, -5, 3))
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id",
                             [raw.astype(np.int64)])
    pq.write_table(table, dataset / "test" / "part-000.parquet")
    ids = load_split(dataset, "test", layout).ids[:, layout.slot("user_id")]
    unknown = layout.unknown_row("user_id")
    assert (ids[raw != 3] == unknown).all() and (ids[raw == 3] == 3).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_unseen_ids_are_scored(splits, name):
    layout, train, _, test = splits
    model, _ = _model(name, layout, train)
    unknown = _with_user_ids(test, layout, layout.unknown_row("user_id"))
    probs = predict(model, unknown, layout, train)
    assert probs.shape == (len(test),) and np.isfinite(probs).all()


@pytest.mark.parametrize("name", model_names(family="cold-start"))
def test_zero_shot_users_take_the_cold_path(splits, name):
    """A user never seen in training scores exactly as the unknown row: one defined path."""
    layout, train, _, test = splits
    model, _ = _model(name, layout, train)
    zero = test.take(np.flatnonzero(test.flags["zero_shot_user"]))
    assert len(zero)
    as_unknown = _with_user_ids(zero, layout, layout.unknown_row("user_id"))
    np.testing.assert_allclose(predict(model, zero, layout, train),
                               predict(model, as_unknown, layout, train), rtol=1e-5)


def test_few_shot_users_are_adapted_at_test_time(splits):
    layout, train, _, test = splits
    model, _ = _model("maml", layout, train)
    plain = predict(model, test, layout)
    adapted = predict(model, test, layout, history=train)
    counts = model.user_id_counts[torch.from_numpy(test.ids[:, layout.slot("user_id")])]
    few = ((counts >= 1) & (counts <= FEW_SHOT_MAX)).numpy()
    assert few.any()
    assert np.array_equal(plain[~few], adapted[~few])
    assert not np.allclose(plain[few], adapted[few])


def test_subsets_with_too_few_rows_get_no_auc(splits):
    layout, _, _, test = splits
    metrics = compute_metrics(test, np.full(len(test), 0.5, dtype=np.float32),
                              layout.scenarios)
    cells = [(f, c, cell) for f, sub in metrics["subsets"].items()
             for c, cell in sub["scenarios"].items()]
    small = [x for x in cells if x[2]["n"] < MIN_ROWS]
    assert small, "the tiny preset should have some small per-scenario subsets"
    for _, _, cell in small:
        assert cell["auc"] is None and cell["note"] == "too few rows"
    for flag, sub in metrics["subsets"].items():
        assert sum(c["n"] for c in sub["scenarios"].values()) == sub["n"]


def test_histories_are_in_time_order(splits):
    layout, train, _, _ = splits
    h = Histories(train, layout.slot("user_id"))
    rows, mask = h.of(h.entity[:50], 6)
    times = np.where(mask, train.time[rows], np.iinfo(np.int64).max)
    assert (np.diff(times, axis=1) >= 0).all()
    assert (train.ids[rows[:, 0], layout.slot("user_id")] == h.entity[:50]).all()


def test_no_new_item_gives_an_empty_warmup(splits):
    """Data whose later rows bring no new item (every item trained on) has no warm-up set."""
    layout, train, _, _ = splits
    items, batches, evaluation = warmup_sets(train, train, layout)
    assert len(items) == 0 and len(evaluation) == 0 and all(len(b) == 0 for b in batches)
    assert len(Histories(train.take(np.arange(0)), layout.slot("item_id")).entity) == 0


def test_no_tasks_is_a_clear_error(splits):
    layout, train, _, _ = splits
    with pytest.raises(DataError, match="meta-learning has no tasks"):
        Tasks(train.take(np.arange(5)), layout.slot("user_id"), FEW_SHOT_MAX, "user")


def test_warmup_protocol(splits):
    layout, train, val, test = splits
    later = SplitData.concat([val, test])
    items, batches, evaluation = warmup_sets(train, later, layout, k=1)
    slot = layout.slot("item_id")
    assert len(items) and not np.isin(items, train.ids[:, slot]).any()
    for a, b in zip(batches, batches[1:] + [evaluation]):  # each stage precedes the next
        for item in items[:20]:
            assert a.time[a.ids[:, slot] == item].max() <= b.time[b.ids[:, slot] == item].min()
    model, _ = _model("metaemb", layout, train)
    tables = {n: model.sparse.table(n).clone() for n in layout.sparse}
    dense = {k: v.clone() for k, v in model.net.state_dict().items()}
    curve = warmup_curve(model, layout, train, later, k=1)
    assert list(curve["auc"]) == list(STAGES)
    changed = (model.sparse.table("item_id") != tables["item_id"]).any(1).numpy()
    assert set(np.flatnonzero(changed)) <= set(items.tolist()) and changed.any()
    for name in layout.sparse:
        if name != "item_id":
            assert torch.equal(model.sparse.table(name), tables[name])
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, dense[key])


def test_experiment_cold_start_cli(tiny, tmp_path):
    out = tmp_path / "exp"
    proc = run("recsys", "experiment", "cold-start", "--dataset", str(tiny["dataset"]),
               "--epochs", "1", "--out", str(out), "--multi-scenario-results",
               str(tmp_path / "none.json"))
    assert "comparing with mmoe" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    models = results["subsets"]["models"]
    assert list(models) == ["dnn_mixed", "mmoe", *model_names(family="cold-start")]
    for m in models.values():
        assert set(m["auc"]) == {"zero_shot_user", "few_shot_user", "zero_shot_item",
                                 "few_shot_item"}
    assert set(results["warmup"]["columns"]) == set(STAGES)
    assert (out / "cold_start.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "Warm-up of new items" in report and "Bayes" in report
    again = run("recsys", "experiment", "cold-start", "--dataset", str(tiny["dataset"]),
                "--epochs", "1", "--out", str(out), "--multi-scenario-results",
                str(tmp_path / "none.json"))
    assert again.stdout.count("reusing finished run") == len(models)
    _gate_the_experiment(out, tmp_path / "gates.json")


def _gate_the_experiment(out, gates):
    """`recsys experiment gate`: recorded gates pass; one cell moved beyond its tolerance fails
    the run, naming that cell and no other; nothing recorded is overwritten without --force."""
    recorded = run("recsys", "experiment", "gate", str(out), "--gates", str(gates), "--record")
    table = json.loads(gates.read_text())
    n = sum(len(c) for e in table["experiments"].values() for m in e.values() for c in m.values())
    assert f"recorded {n} gated cells over 1 seed(s)" in recorded.stdout and n > 40
    assert set(table["experiments"]["cold-start"]) >= {"subsets", "warmup"}
    [dataset] = table["measured_at"]["datasets"]["cold-start"]
    assert dataset["preset"] == "tiny" and len(dataset["fingerprint"]) == 16
    passed = run("recsys", "experiment", "gate", str(out), "--gates", str(gates))
    assert f"{n} of {n} gated cells within tolerance" in passed.stdout

    cell = table["experiments"]["cold-start"]["subsets"]["dropoutnet"]
    cell["zero_shot_user"] = round(cell["zero_shot_user"] + 0.0025, 4)  # tolerance 0.002
    gates.write_text(json.dumps(table))
    moved = run("recsys", "experiment", "gate", str(out / "results.json"), "--gates", str(gates),
                check=False)
    assert moved.returncode == 1
    assert f"{n - 1} of {n} gated cells within tolerance" in moved.stdout
    [line] = error_lines(moved.stderr)
    assert line.startswith("error: gate failed: cold-start / subsets / dropoutnet / "
                           "zero_shot_user: AUC ") and line.endswith(" FELL"), line

    again = run("recsys", "experiment", "gate", str(out), "--gates", str(gates), "--record",
                check=False)
    assert again.returncode == 2 and "pass --force" in again.stderr
    assert json.loads(gates.read_text()) == table
    table["seeds"] = 3
    gates.write_text(json.dumps(table))
    seeds = run("recsys", "experiment", "gate", str(out), "--gates", str(gates), check=False)
    assert seeds.returncode == 2 and error_lines(seeds.stderr) == [
        "error: the cold-start results are a mean over 1 seed(s), the gates over 3: run the "
        "experiment over 3 seeds"]


@pytest.mark.parametrize("name", model_names(family="cold-start"))
def test_a_new_item_starts_warm_up_from_its_cold_score(splits, name):
    """start_from_cold makes new items seen (their own rows now serve them) without changing
    a single score: warm-up starts from exactly what the model served cold."""
    layout, train, val, _ = splits
    model, _ = _model(name, layout, train)
    slot = layout.slot("item_id")
    new = val.take(np.flatnonzero(model.item_id_counts[torch.from_numpy(val.ids[:, slot])] == 0))
    assert len(new)
    cold = predict(model, new, layout)
    items, first = np.unique(new.ids[:, slot], return_index=True)
    model.start_from_cold("item_id", torch.from_numpy(items), rows_batch(new, layout, first))
    assert (model.item_id_counts[torch.from_numpy(items)] == 1).all()
    np.testing.assert_allclose(predict(model, new, layout), cold, rtol=1e-4, atol=1e-6)
