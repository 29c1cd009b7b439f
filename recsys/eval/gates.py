"""Quality gates, the one gate system of `recsys experiment gate` and every `make bench-*`:
cells and criteria.

Cells: the test AUC an experiment is expected to reach, per model and column, with a
tolerance and the number of seeds it is a mean over, kept in one JSON file. `check` compares
experiment results with it and names every cell that moved; `record` writes it from results
(a deliberate new baseline).

A gates file:
    {"seeds": 3, "tolerance": 0.002, "measured_at": {...},
     "experiments": {"multi-scenario": {"per_scenario": {"mmoe": {"0": 0.7301, "overall": 0.744}}},
                     "cold-start": {"subsets": {...}, "warmup": {...}, ...}}}
A cell is a number (the mean AUC over `seeds` seeds, within `tolerance`; the measure a table
gates, see auc_blocks) or {"auc": number, "tolerance": number} for a cell with its own
tolerance.

Criteria (`Criterion`): relations between results that a cell cannot say, such as a paired
gain over a baseline or a ratio to popularity, each a function of an experiment's results and
its criteria file (benchmarks/rolling_gates.json, feed_gates.json, real_gates.json)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsys.errors import DataError, OutputExistsError, UsageError
from recsys.files import read_json, write_json

DEFAULT_TOLERANCE = 0.002  # well under the smallest effect the paper reports (+0.0005..0.0057)


def auc_blocks(results: dict) -> dict[str, dict]:
    """An experiment's gated tables by name, each a block with columns / names / models (the
    shape report.auc_table prints) and the measure it gates (`metric`: AUC unless it says
    otherwise; the retrieval experiment's is Recall@100)."""
    if results.get("experiment") == "cold-start":
        return {"subsets": results["subsets"], "warmup": results["warmup"],
                **{f"per_scenario {flag}": block
                   for flag, block in results["per_scenario"].items()}}
    return {"per_scenario": results}


@dataclass(frozen=True)
class Cell:
    experiment: str
    table: str
    model: str
    column: str
    expected: float
    tolerance: float
    got: float | None  # None: the results have no such model or column
    metric: str = "auc"

    @property
    def passed(self) -> bool:
        return self.got is not None and abs(self.got - self.expected) <= self.tolerance

    def where(self) -> str:
        return f"{self.experiment} / {self.table} / {self.model} / {self.column}"

    def line(self) -> str:
        what = "AUC" if self.metric == "auc" else self.metric.replace("recall", "Recall")
        if self.got is None:
            return f"{self.where()}: not in the results (expected {what} {self.expected:.4f})"
        verdict = "ok" if self.passed else ("ROSE" if self.got > self.expected else "FELL")
        return (f"{self.where()}: {what} {self.got:.4f}, expected {self.expected:.4f} ± "
                f"{self.tolerance:.4f} ({self.got - self.expected:+.4f}) {verdict}")


def load_results(paths: list[Path]) -> list[dict]:
    """Experiment results from results.json files or the experiments' --out folders."""
    files = [p / "results.json" if p.is_dir() else p for p in paths]
    for f in files:
        if not f.is_file():
            raise UsageError(f"{f}: no experiment results there; run `recsys experiment ...` "
                             f"first or pass its results.json")
    return [read_json(f, "run the experiment again") for f in files]


def measured_at(results: list[dict]) -> dict:
    """Where recorded gates come from: the code's commit and each experiment's datasets (their
    preset, data seed and fingerprint, as the experiment recorded them)."""
    from recsys.provenance import code_version

    datasets = {}
    for res in results:
        if "datasets" not in res:
            raise UsageError(f"the {res.get('experiment')} results record no dataset "
                             f"fingerprints (written by an older recsys): run the experiment "
                             f"again (its finished runs are reused)")
        datasets[res["experiment"]] = res["datasets"]
    return {**code_version(), "datasets": datasets}


def read_gates(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"gates {path}: no such file; record one with `recsys experiment "
                         f"gate RESULTS --gates {path} --record`", fields="gates")
    gates = read_json(path, "restore it from git or record it again with record=True")
    if not isinstance(gates, dict) or not isinstance(gates.get("experiments"), dict) \
            or not isinstance(gates.get("seeds"), int):
        raise DataError(f"{path}: a gates file needs \"seeds\" (an integer) and "
                        f"\"experiments\" (an object); record it again with record=True",
                        fields="record")
    return gates


def _expected(value, default_tolerance: float, where: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), default_tolerance
    if isinstance(value, dict) and isinstance(value.get("auc"), (int, float)):
        return float(value["auc"]), float(value.get("tolerance", default_tolerance))
    raise DataError(f"gates {where}: a cell is a number or {{\"auc\": n, \"tolerance\": t}}, "
                    f"not {value!r}")


def check(results: list[dict], gates: dict) -> list[Cell]:
    """Every gated cell of the experiments in `results`, with the value each one got. An
    experiment without gates, or results over another number of seeds, is a UsageError."""
    cells = []
    tolerance = float(gates.get("tolerance", DEFAULT_TOLERANCE))
    for res in results:
        name = res["experiment"]
        if name not in gates["experiments"]:
            raise UsageError(f"the gates have no \"{name}\" experiment (they gate "
                             f"{', '.join(gates['experiments']) or 'nothing'}); record it "
                             f"with record=True", fields="record")
        if res["seeds"] != gates["seeds"]:
            raise UsageError(f"the {name} results are a mean over {res['seeds']} seed(s), the "
                             f"gates over {gates['seeds']}: run the experiment over "
                             f"{gates['seeds']} seeds")
        blocks = auc_blocks(res)
        for table, models in gates["experiments"][name].items():
            block = blocks.get(table, {"models": {}})
            metric = block.get("metric", "auc")
            for model, columns in models.items():
                got_model = block["models"].get(model)
                for column, value in columns.items():
                    expected, tol = _expected(value, tolerance, f"{name} / {table} / {model} / "
                                                                f"{column}")
                    got = None
                    if got_model is not None and column in got_model[metric]:
                        got = got_model[metric][column]["mean"]
                    cells.append(Cell(name, table, model, column, expected, tol, got, metric))
    return cells


def verdict(checks: list[Cell] | list[Criterion]) -> str:
    passed = sum(c.passed for c in checks)
    what = "gated cells within tolerance" if all(isinstance(c, Cell) for c in checks) \
        else "criteria hold"
    return f"{passed} of {len(checks)} {what}"


@dataclass(frozen=True)
class Criterion:
    """A gate on a relation between results (a gain over a baseline, a ratio, a share) rather
    than on one cell's value: what it compares and whether it holds."""

    text: str
    passed: bool

    def line(self) -> str:
        return f"{self.text}: {'ok' if self.passed else 'FAILED'}"


def rolling_criteria(results: dict, criteria: dict) -> list[Criterion]:
    """The rolling evaluation's: update minus retrain per column at least its margin; the
    update arm trained at most a share of retrain's examples."""
    auc = {arm: results["models"][arm]["auc"] for arm in ("update", "retrain")}
    checks = []
    for column, margin in criteria["update_minus_retrain"].items():
        up, re_ = auc["update"][column]["mean"], auc["retrain"][column]["mean"]
        checks.append(Criterion(f"{column}: update {up:.4f} - retrain {re_:.4f} = "
                                f"{up - re_:+.4f}, needs >= {margin:+.4f}", up - re_ >= margin))
    share, most = results["examples_share"], criteria["max_examples_share"]
    return [*checks, Criterion(f"examples: update trained {share:.1%} of retrain's, needs <= "
                               f"{most:.0%}", share <= most)]


def online_criteria(results: dict, criteria: dict) -> list[Criterion]:
    """The online experiment's: each pair's arm's online CTR (mean over the days) at least, or
    above, the other's."""
    def ctr(arm: str) -> float:
        return sum(d["arms"][arm]["ctr"] for d in results["per_day"]) / len(results["per_day"])

    return [Criterion(f"online CTR: {a} {ctr(a):.4f} vs {b} {ctr(b):.4f}, needs {a} "
                      f"{'>=' if strict == 'at_least' else '>'} {b}",
                      ctr(a) >= ctr(b) if strict == "at_least" else ctr(a) > ctr(b))
            for strict in ("at_least", "above") for a, b in criteria[strict]]


def history_criteria(results: dict, criteria: dict) -> list[Criterion]:
    """The best history arm's paired gain over the baseline: at least the margin overall, and
    more on few-shot users than overall."""
    base, few = criteria["baseline"], criteria["few_shot_column"]
    gains = {g["arm"]: g["auc"] for g in results["gains"].values() if g["baseline"] == base}
    best = max(gains, key=lambda arm: gains[arm]["overall"]["mean"])
    overall, on_few = gains[best]["overall"]["mean"], gains[best][few]["mean"]
    margin = criteria["min_overall_gain"]
    return [Criterion(f"history: best {best} - {base} overall {overall:+.4f}, needs >= "
                      f"{margin:+.4f}", overall >= margin),
            Criterion(f"history: {best} - {base} on {few} {on_few:+.4f}, needs > overall "
                      f"{overall:+.4f}", on_few > overall)]


def retrieval_criteria(results: dict, criteria: dict) -> list[Criterion]:
    """The best two_tower arm's Recall@K over popularity's, overall and in each scenario with
    enough test clicks."""
    metric, ratio = criteria["metric"], criteria["min_ratio"]
    models = results["models"]
    best = max((a for a in models if a != "popularity"),
               key=lambda a: models[a][metric]["overall"]["mean"])
    columns = [c for c in results["columns"]
               if c == "overall" or results["test_rows"][c] >= criteria["min_test_clicks"]]
    checks = []
    for col in columns:
        model, pop = models[best][metric][col]["mean"], models["popularity"][metric][col]["mean"]
        name = col if col == "overall" else f"scenario {col} ({results['names'][col]})"
        checks.append(Criterion(f"retrieval: {best} {metric} {name} {model:.4f} = "
                                f"{model / pop:.2f}x popularity's {pop:.4f}, needs >= "
                                f"{ratio:.1f}x", model >= ratio * pop))
    return checks


def real_criteria(overall: dict[str, float], history_arms: tuple[str, ...],
                  refs: dict[str, float], peers: dict[str, float],
                  gates: dict) -> list[Criterion]:
    """Real data's (make bench-real): the best model against the best independent reference
    and against each real peer; the history's gain over the best model without it; every model
    against logistic MF. `overall`: each recsys arm's overall AUC; `refs`, `peers`: each
    reference's and each peer's."""
    best_ref = max((v, n) for n, v in refs.items())
    best = max((v, n) for n, v in overall.items())
    history = max((overall[n], n) for n in history_arms if n in overall)
    plain = max((v, n) for n, v in overall.items() if n not in history_arms)
    mf, worst = refs["logistic_mf"], min((v, n) for n, v in overall.items())
    return [Criterion(f"best recsys model {best[1]} {best[0]:.4f} vs best reference "
                      f"{best_ref[1]} {best_ref[0]:.4f}: needs >= reference - "
                      f"{gates['best_vs_reference']}",
                      best[0] >= best_ref[0] - gates["best_vs_reference"]),
            *(Criterion(f"best recsys model {best[1]} {best[0]:.4f} vs peer {name} "
                        f"{auc:.4f}: needs >=", best[0] >= auc) for name, auc in peers.items()),
            Criterion(f"best history model {history[1]} {history[0]:.4f} vs best without "
                      f"history {plain[1]} {plain[0]:.4f}: needs >= +{gates['history_gain']} "
                      f"({history[0] - plain[0]:+.4f})",
                      history[0] >= plain[0] + gates["history_gain"]),
            Criterion(f"every recsys model >= reference logistic MF {mf:.4f} - "
                      f"{gates['every_vs_mf']}: lowest {worst[1]} {worst[0]:.4f}",
                      worst[0] >= mf - gates["every_vs_mf"])]


def record(results: list[dict], tolerance: float, provenance: dict) -> dict:
    """Gates that the given results pass: every model and column they have, to 4 decimals
    (columns too small to have an AUC are left out)."""
    seeds = {r["seeds"] for r in results}
    if len(seeds) != 1:
        raise UsageError(f"the results are over different numbers of seeds ({sorted(seeds)}); "
                         f"gate experiments run with the same seeds", fields="seeds")
    experiments = {}
    for res in results:
        experiments[res["experiment"]] = {
            table: {model: {col: round(stats[metric][col]["mean"], 4)
                            for col in block["columns"]
                            if stats[metric][col]["mean"] is not None}
                    for model, stats in block["models"].items()}
            for table, block in auc_blocks(res).items()
            for metric in (block.get("metric", "auc"),)}
    return {"seeds": seeds.pop(), "tolerance": tolerance, "measured_at": provenance,
            "experiments": experiments}


def record_file(results: list[dict], gates: Path, tolerance: float | None = None,
                force: bool = False) -> tuple[int, int]:
    """Write the gates these results pass to `gates` (a deliberate new baseline); the number
    of gated cells and of seeds."""
    if gates.exists() and not force:
        raise OutputExistsError(f"{gates} already exists; pass force=True to replace it")
    table = record(results, tolerance or DEFAULT_TOLERANCE, measured_at(results))
    write_json(table, gates)
    return sum(len(cols) for exp in table["experiments"].values() for models in exp.values()
               for cols in models.values()), table["seeds"]
