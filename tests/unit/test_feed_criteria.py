"""benchmarks/quality.py --feed: the history criterion takes the best history model by its
overall gain and wants more on few-shot users than overall; the retrieval criterion takes the
best two_tower arm and wants its Recall@100 at least 2x popularity's overall and in every
scenario with enough test clicks."""

from __future__ import annotations

import importlib.util
import json

from conftest import ROOT

spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)
CRITERIA = json.loads(quality.FEED_GATES.read_text())


def _gain(arm: str, base: str, overall: float, few: float) -> dict:
    """A paired_gains entry, as train.experiment writes it."""
    return {f"{arm} − {base}": {"arm": arm, "baseline": base,
                                "auc": {"overall": {"mean": overall},
                                        "few_shot_user": {"mean": few}}}}


def test_the_best_history_model_must_gain_more_on_few_shot_users():
    results = {"gains": {**_gain("din", "mmoe", 0.010, 0.004),
                         **_gain("mmoe+history", "mmoe", 0.004, 0.020),
                         **_gain("dnn+history", "dnn", 0.050, 0.100)}}  # another baseline
    (overall, ok_overall), (few, ok_few) = quality.check_history(results, CRITERIA["history"])
    assert "best din - mmoe overall +0.0100" in overall and ok_overall
    assert "on few_shot_user +0.0040" in few and not ok_few
    results["gains"].update(_gain("din", "mmoe", 0.002, 0.004))  # now mmoe+history is best
    (overall, ok_overall), (few, ok_few) = quality.check_history(results, CRITERIA["history"])
    assert "best mmoe+history" in overall and ok_overall and ok_few


def test_retrieval_needs_twice_popularity_where_the_clicks_are():
    def block(by_col: dict) -> dict:
        return {"recall@100": {c: {"mean": v} for c, v in by_col.items()}}

    results = {"columns": ["0", "1", "overall"], "names": {"0": "big", "1": "rare"},
               "test_rows": {"0": 5_000, "1": 999, "overall": 5_999},
               "models": {"two_tower": block({"0": 0.30, "1": 0.01, "overall": 0.26}),
                          "two_tower+history-mean": block({"0": 0.21, "1": 0.5, "overall": 0.3}),
                          "popularity": block({"0": 0.10, "1": 0.10, "overall": 0.10})}}
    lines = quality.check_retrieval(results, CRITERIA["retrieval"])
    assert [ok for _, ok in lines] == [True, True]  # scenario 1 has too few clicks to judge
    assert "two_tower+history-mean recall@100 scenario 0 (big) 0.2100 = 2.10x" in lines[0][0]
    results["models"]["two_tower+history-mean"]["recall@100"]["0"]["mean"] = 0.19
    assert [ok for _, ok in quality.check_retrieval(results, CRITERIA["retrieval"])] == \
        [False, True]
