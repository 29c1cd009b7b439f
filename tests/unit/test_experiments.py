"""Experiments as specs: an arm's name is the run's (TrainConfig.name), each experiment pairs
the arms it says, the config of an arm takes the keys every model has, every spec is a command
(refusing a missing option in one line), and the criteria of the feed gates judge the best arm."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from recsys.cli import app
from recsys.config import Arm
from recsys.errors import UsageError
from recsys.eval import gates
from recsys.experiments.catalog import EXPERIMENTS
from recsys.experiments.training import arm_config
from recsys.experiments.context import Context

FEED = json.loads((ROOT / "benchmarks" / "feed_gates.json").read_text())


def _ctx(**options) -> Context:
    return Context(None, ROOT, 1, options, {}, {}, False, False, lambda s: None, "small")


@pytest.mark.parametrize("arm", [Arm("mmoe"), Arm("pepnet", backbone="dcn"), Arm("din"),
                                 Arm("mmoe", ("text", "image"), "attention", "dcn"),
                                 Arm("two_tower", ("text",), "mean")])
def test_an_arm_names_its_run_as_the_run_names_itself(arm):
    cfg = arm_config(arm, 0, {}, {}, "exp.yaml")
    assert cfg.name == arm.name and cfg.arm == arm
    assert Arm.from_json(json.loads(json.dumps(cfg.arm.__dict__))) == arm


def test_an_experiment_config_takes_the_keys_every_model_has():
    cfg = arm_config(Arm("pepnet", backbone="dcn"), 2,
                     {"epochs": 4, "model_config": {"embedding_dim": 8}}, {"batch_size": 512},
                     "exp.yaml")
    assert (cfg.model, cfg.seed, cfg.epochs, cfg.batch_size) == ("pepnet", 2, 4, 512)
    assert (cfg.model_config.embedding_dim, cfg.model_config.backbone) == (8, "dcn")
    with pytest.raises(UsageError, match="model_config.n_experts: an experiment's config"):
        arm_config(Arm("mmoe"), 0, {"model_config": {"n_experts": 8}}, {}, "exp.yaml")
    with pytest.raises(UsageError, match="unknown modality .video."):
        arm_config(Arm("mmoe", ("video",)), 0, {}, {}, "exp.yaml")


def _pairs(name: str, **options) -> dict[str, str | None]:
    return {a.name: b and b.name for a, b in EXPERIMENTS[name].arms(_ctx(**options)).items()}


def test_each_experiment_pairs_its_arms():
    assert _pairs("history", models="mmoe,dnn") == {
        "mmoe": None, "dnn": None, "mmoe+history": "mmoe", "mmoe+history-mean": "mmoe",
        "dnn+history": "dnn", "dnn+history-mean": "dnn", "din": "mmoe"}
    assert _pairs("multi-modal", image=True) == {
        "dnn_mixed": None, "dnn_mixed+text": "dnn_mixed", "dnn_mixed+text+image": "dnn_mixed",
        "mmoe": None, "mmoe+text": "mmoe", "mmoe+text+image": "mmoe"}
    assert _pairs("multi-scenario", models="dnn,mmoe", backbones="mlp,dcn") == {
        "dnn": None, "mmoe": "dnn", "dnn+dcn": "dnn", "mmoe+dcn": "dnn"}
    assert _pairs("multi-scenario", models="mmoe,star", backbones="mlp") == {
        "mmoe": None, "star": None}  # no dnn: nothing to pair with
    assert list(_pairs("retrieval", text=True)) == [
        "two_tower", "two_tower+history-mean", "two_tower+text", "two_tower+text+history-mean"]
    with pytest.raises(UsageError, match="backbones cnn"):
        _pairs("multi-scenario", backbones="cnn")


def test_every_experiment_is_a_command_and_refuses_a_missing_option():
    runner = CliRunner()
    for name, experiment in EXPERIMENTS.items():
        shown = runner.invoke(app, ["experiment", name, "--help"])
        assert shown.exit_code == 0 and "--force" in shown.output
        assert all(f"--{o.name.replace('_', '-')}" in shown.output or o.flags[0] in shown.output
                   for o in experiment.options)
    missing = runner.invoke(app, ["experiment", "rolling", "--model", "mmoe"])
    assert missing.exit_code == 2 and "--start" in missing.output


def _gain(arm: str, base: str, overall: float, few: float) -> dict:
    """A paired gains entry, as the runner writes it."""
    return {f"{arm} − {base}": {"arm": arm, "baseline": base,
                                "auc": {"overall": {"mean": overall},
                                        "few_shot_user": {"mean": few}}}}


def test_the_best_history_model_must_gain_more_on_few_shot_users():
    results = {"gains": {**_gain("din", "mmoe", 0.010, 0.004),
                         **_gain("mmoe+history", "mmoe", 0.004, 0.020),
                         **_gain("dnn+history", "dnn", 0.050, 0.100)}}  # another baseline
    overall, few = gates.history_criteria(results, FEED["history"])
    assert "best din - mmoe overall +0.0100" in overall.line() and overall.passed
    assert "on few_shot_user +0.0040" in few.line() and not few.passed
    assert few.line().endswith("FAILED") and gates.verdict([overall, few]) == "1 of 2 criteria hold"
    results["gains"].update(_gain("din", "mmoe", 0.002, 0.004))  # now mmoe+history is best
    overall, few = gates.history_criteria(results, FEED["history"])
    assert "best mmoe+history" in overall.line() and overall.passed and few.passed


def test_retrieval_needs_twice_popularity_where_the_clicks_are():
    def block(by_col: dict) -> dict:
        return {"recall@100": {c: {"mean": v} for c, v in by_col.items()}}

    results = {"columns": ["0", "1", "overall"], "names": {"0": "big", "1": "rare"},
               "test_rows": {"0": 5_000, "1": 999, "overall": 5_999},
               "models": {"two_tower": block({"0": 0.30, "1": 0.01, "overall": 0.26}),
                          "two_tower+history-mean": block({"0": 0.21, "1": 0.5, "overall": 0.3}),
                          "popularity": block({"0": 0.10, "1": 0.10, "overall": 0.10})}}
    checks = gates.retrieval_criteria(results, FEED["retrieval"])
    assert [c.passed for c in checks] == [True, True]  # scenario 1: too few clicks to judge
    assert "two_tower+history-mean recall@100 scenario 0 (big) 0.2100 = 2.10x" in checks[0].text
    results["models"]["two_tower+history-mean"]["recall@100"]["0"]["mean"] = 0.19
    assert [c.passed for c in gates.retrieval_criteria(results, FEED["retrieval"])] == \
        [False, True]
