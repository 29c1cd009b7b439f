"""`recsys experiment cold-start`: the cold-start models beside dnn_mixed and the best
multi-scenario model, over K seeds, on every cold-start subset of the test split (zero-shot /
few-shot x user / item, overall and per scenario), plus the warm-up curve of new items.
Finished runs and warm-up curves are reused, so a killed experiment continues."""

from __future__ import annotations

from pathlib import Path

from recsys.dataset.layout import Layout
from recsys.dataset.loader import load_split, SplitData
from recsys.dataset.meta import read_dataset_meta
from recsys.eval.report import plot_cold_start, write_cold_start_report
from recsys.eval.warmup import STAGES, warmup_curve
from recsys.models.registry import model_names
from recsys.schema import COLD_START_FLAGS
from recsys.files import read_json, write_json
from recsys.train.experiment import mean_std, run_dir, train_runs
from recsys.run import Run

WARMUP = "warmup.json"


def cold_start(dataset: Path, out: Path, seeds: int = 1,
               baselines: tuple[str, ...] = ("dnn_mixed", "mmoe"), file: dict | None = None,
               flags: dict | None = None, force: bool = False, progress: bool = True,
               log=print) -> dict:
    # the baselines, then every cold-start model, in order, no repeats
    models = tuple(dict.fromkeys((*baselines, *model_names(family="cold-start"))))
    runs = train_runs(dataset, out, models, seeds, force, progress, log, file, flags)
    curves = warmup_curves(dataset, out, models, seeds, force, log)
    results = summarize(runs, curves, dataset, seeds)
    write_json(results, out / "results.json")
    plot_cold_start(results, out / "cold_start.png")
    write_cold_start_report(results, out / "report.md")
    return results


def warmup_curves(dataset: Path, out: Path, models: tuple[str, ...], seeds: int, force: bool,
                  log) -> dict[str, list[dict]]:
    layout = Layout.from_meta(read_dataset_meta(dataset))
    train: SplitData | None = None
    curves: dict[str, list[dict]] = {m: [] for m in models}
    for seed in range(seeds):
        for model in models:
            path = run_dir(out, model, seed) / WARMUP
            if path.exists() and not force:
                curves[model].append(read_json(path, "pass force=True to run it again"))
                continue
            if train is None:  # read once, only when some curve is missing
                train = load_split(dataset, "train", layout)
                later = SplitData.concat([load_split(dataset, s, layout)
                                          for s in ("val", "test")])
            curve = warmup_curve(Run(path.parent).load_model(layout), layout, train, later)
            log(f"warm-up {model} seed {seed}: " + ", ".join(
                f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in curve["auc"].items()))
            write_json(curve, path)
            curves[model].append(curve)
    return curves


def _table(columns, names, models, oracle, rows, rows_label="test rows") -> dict:
    """A results block in the shape report.auc_table reads."""
    return {"columns": list(columns), "names": names, "models": models, "oracle_auc": oracle,
            "test_rows": rows, "rows_label": rows_label}


def summarize(runs: dict[str, list[dict]], curves: dict[str, list[dict]], dataset: Path,
              seeds: int) -> dict:
    first = next(iter(runs.values()))[0]
    subsets = _table(
        COLD_START_FLAGS, {},
        {m: {key: {f: mean_std([r["subsets"][f][key] for r in rs]) for f in COLD_START_FLAGS}
             for key in ("auc", "logloss")} for m, rs in runs.items()},
        dict(first["oracle"]["subsets"]), {f: first["subsets"][f]["n"] for f in COLD_START_FLAGS})
    per_scenario = {}
    for flag in COLD_START_FLAGS:
        cols = list(first["subsets"][flag]["scenarios"])
        per_scenario[flag] = _table(
            cols, {c: first["scenarios"][c]["name"] for c in cols},
            {m: {"auc": {c: mean_std([r["subsets"][flag]["scenarios"][c]["auc"] for r in rs])
                         for c in cols}} for m, rs in runs.items()},
            {c: first["oracle"]["subset_scenarios"][flag].get(c) for c in cols},
            {c: first["subsets"][flag]["scenarios"][c]["n"] for c in cols})
    one = next(iter(curves.values()))[0]
    warmup = _table(
        STAGES, {}, {m: {"auc": {s: mean_std([c["auc"].get(s) for c in cs]) for s in STAGES}}
                     for m, cs in curves.items()},
        {s: one.get("bayes_auc") for s in STAGES}, {s: one["eval_rows"] for s in STAGES},
        rows_label="evaluation rows")
    warmup.update(items=one["items"], k=one["k"])
    return {"experiment": "cold-start", "dataset": str(dataset), "seeds": seeds,
            "subsets": subsets, "per_scenario": per_scenario, "warmup": warmup,
            "examples_per_s": {m: mean_std([r["train"]["examples_per_s"] for r in rs])["mean"]
                               for m, rs in runs.items()}}


def best_multi_scenario(results: Path) -> str | None:
    """The model with the best overall AUC in a multi-scenario experiment's results (None
    where there are none)."""
    if not results.is_file():
        return None
    models = read_json(results, "run the multi-scenario experiment again, or pass other "
                       "multi_scenario_results")["models"]
    return max(models, key=lambda m: models[m]["auc"]["overall"]["mean"] or 0.0)
