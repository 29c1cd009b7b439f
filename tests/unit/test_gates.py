"""Quality gates on a multi-scenario-shaped result: a cell passes within its tolerance either
way, fails beyond it (risen or fallen), a gated model the results lack fails, and a cell may
carry its own tolerance. (The CLI on a real experiment: test_cold_start.)"""

from __future__ import annotations

import pytest

from recsys.errors import DataError, UsageError
from recsys.eval.gates import check, record


def _results(aucs: dict[str, dict[str, float]], seeds: int = 2) -> dict:
    columns = ["0", "1", "overall"]
    return {"experiment": "multi-scenario", "seeds": seeds, "columns": columns, "names": {},
            "models": {m: {"auc": {c: {"mean": v.get(c)} for c in columns}}
                       for m, v in aucs.items()}}


def test_recorded_gates_pass_and_name_what_moved():
    base = _results({"dnn": {"0": 0.70, "1": 0.60, "overall": 0.65},
                     "mmoe": {"0": 0.71, "1": None, "overall": 0.66}})
    gates = record([base], 0.002, {})
    assert gates["experiments"]["multi-scenario"]["per_scenario"]["mmoe"] == {"0": 0.71,
                                                                              "overall": 0.66}
    assert all(c.passed for c in check([base], gates))

    moved = _results({"dnn": {"0": 0.7019, "1": 0.6021, "overall": 0.65},
                      "mmoe": {"0": 0.7078, "1": None, "overall": 0.66}})
    by_cell = {(c.model, c.column): c for c in check([moved], gates)}
    assert [k for k, c in by_cell.items() if not c.passed] == [("dnn", "1"), ("mmoe", "0")]
    assert by_cell["dnn", "1"].line().endswith("(+0.0021) ROSE")
    assert by_cell["mmoe", "0"].line().endswith("(-0.0022) FELL")
    assert by_cell["dnn", "0"].line().endswith("(+0.0019) ok")


def test_a_gated_model_missing_fails_and_a_cell_may_carry_its_tolerance():
    gates = {"seeds": 2, "tolerance": 0.002, "experiments": {"multi-scenario": {"per_scenario": {
        "dnn": {"0": {"auc": 0.70, "tolerance": 0.01}}, "ple": {"overall": 0.66}}}}}
    cells = check([_results({"dnn": {"0": 0.695}})], gates)
    assert [(c.model, c.passed) for c in cells] == [("dnn", True), ("ple", False)]
    assert cells[1].line() == ("multi-scenario / per_scenario / ple / overall: not in the "
                               "results (expected AUC 0.6600)")


def test_gates_refuse_what_they_cannot_compare():
    gates = record([_results({"dnn": {"0": 0.7}})], 0.002, {})
    with pytest.raises(UsageError, match="mean over 3 seed"):
        check([_results({"dnn": {"0": 0.7}}, seeds=3)], gates)
    with pytest.raises(UsageError, match='no "cold-start" experiment'):
        check([{"experiment": "cold-start", "seeds": 2}], gates)
    gates["experiments"]["multi-scenario"]["per_scenario"]["dnn"]["0"] = "high"
    with pytest.raises(DataError, match="a cell is a number"):
        check([_results({"dnn": {"0": 0.7}})], gates)
