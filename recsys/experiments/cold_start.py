"""`recsys experiment cold-start`: the cold-start models beside dnn_mixed and the best
multi-scenario model, over K seeds, on every cold-start subset of the test split (zero-shot /
few-shot x user / item, overall and per scenario), plus the warm-up curve of new items.
Finished runs and warm-up curves are reused."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from recsys.config import Arm
from recsys.errors import UsageError
from recsys.eval.report import auc_table, over_seeds
from recsys.experiments.context import Context
from recsys.experiments.spec import Experiment, Option
from recsys.files import read_json, write_json, write_text
from recsys.schema import COLD_START_FLAGS

WARMUP = "warmup.json"
BASELINE = Arm("dnn_mixed")
FALLBACK = Arm("mmoe")  # compared with where no multi-scenario experiment has run


class ColdStart(Experiment):
    name = "cold-start"
    about = ("Compare dropoutnet, metaemb, maml and melu with dnn_mixed and the best "
             "multi-scenario model on zero-shot / few-shot users and items, plus the warm-up "
             "curve of new items.")
    plot_file = "cold_start.png"
    options = (Option("multi_scenario_results", Optional[Path], None, "Its best model joins the "
                      "comparison (default runs/multi-scenario-<preset>/results.json; mmoe "
                      "when there is none)."),)

    def arms(self, ctx: Context) -> dict[Arm, Arm | None]:
        """The baselines, then every cold-start model, in order, no repeats."""
        from recsys.models.registry import model_names

        found = ctx.options.get("multi_scenario_results") or \
            Path("runs") / f"multi-scenario-{ctx.preset}" / "results.json"
        best = best_multi_scenario(found)
        if best is None:
            best = FALLBACK
            ctx.log(f"no multi-scenario results at {found}: comparing with {best.name} (pass "
                    f"--multi-scenario-results to pick the best model of an experiment)")
        return dict.fromkeys((BASELINE, best, *map(Arm, model_names(family="cold-start"))))

    def collect(self, ctx: Context) -> dict:
        from recsys.experiments.training import train_arms

        arms = tuple(self.arms(ctx))
        runs = train_arms(ctx, arms)
        return summarize(runs, warmup_curves(ctx, [a.name for a in arms]), ctx)

    def tables(self, results: dict) -> list[str]:
        return [auc_table(results["subsets"]), auc_table(results["warmup"])]

    def report(self, results: dict, path: Path) -> None:
        subsets, warmup = results["subsets"], results["warmup"]
        per_scenario = "\n\n".join(f"### {flag}\n\n{auc_table(table)}"
                                   for flag, table in results["per_scenario"].items())
        speed = "\n".join(f"| {name} | {v:,.0f} |"
                          for name, v in results["examples_per_s"].items())
        write_text(f"""# Cold-start experiment

Dataset `{results['dataset']}`, {results['seeds']} seed(s); test split; {over_seeds(results)}.
Zero-shot: the user / item has no training interaction; few-shot: 1 to 4 of them. Bold: best
model per column. The Bayes row (generated data only) is the AUC of the generator's true
click probability on the same rows. A cell with fewer than 100 rows (or one class) has no AUC ("-").

## AUC per cold-start subset

{auc_table(subsets, 'auc')}

## Logloss per cold-start subset

{auc_table(subsets, 'logloss')}

## AUC per subset and scenario

{per_scenario}

## Warm-up of new items

{warmup['items']:,} new items (no training interaction) with more than {3 * warmup['k']} rows
on the validation and test days. Per item, its first {warmup['k']} rows are warm-up batch a,
the next {warmup['k']} batch b, the next {warmup['k']} batch c; its later rows are the
evaluation set. AUC cold, then after each batch (only the new items' ID embeddings move).

{auc_table(warmup, 'auc')}

## Training speed (examples/s)

| model | examples/s |
| --- | ---: |
{speed}

![cold-start AUC and warm-up](cold_start.png)
""", path)

    def plot(self, results: dict, path: Path) -> None:
        import numpy as np

        from recsys.eval.plots import bars, plt, save

        fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5),
                                          gridspec_kw={"width_ratios": [3, 2]})
        bars(left, results["subsets"])
        left.set_title(f"Cold-start subsets, {over_seeds(results)} ({results['seeds']} seed(s))")
        warmup = results["warmup"]
        stages = warmup["columns"]
        for name, m in warmup["models"].items():
            means = [m["auc"][s]["mean"] or np.nan for s in stages]
            stds = [m["auc"][s]["std"] or 0.0 for s in stages]
            right.errorbar(stages, means, yerr=stds, marker="o", capsize=3, label=name)
        right.set_ylabel("AUC on the new items' later rows")
        right.set_title(f"Warm-up of {warmup['items']:,} new items")
        right.legend(fontsize=8)
        save(fig, path)


def warmup_curves(ctx: Context, arms: list[str]) -> dict[str, list[dict]]:
    """Each arm's warm-up curve per seed, measured where its warmup.json is missing."""
    from recsys.dataset.loader import SplitData, load_split
    from recsys.eval.warmup import warmup_curve
    from recsys.experiments.training import run_dir
    from recsys.run import Run

    read: list[tuple] = []  # (layout, train, later): the splits as each layout reads them
    curves: dict[str, list[dict]] = {a: [] for a in arms}
    for seed in range(ctx.seeds):
        for arm in arms:
            path = run_dir(ctx.out, arm, seed) / WARMUP
            if path.exists() and not ctx.force:
                curves[arm].append(read_json(path, "pass force=True to run it again"))
                continue
            run = Run(path.parent)
            layout = run.layout()  # the run's own inputs (a cold-start model's history)
            found = next((r for r in read if r[0] == layout), None)
            if found is None:  # read once per layout, only when some curve is missing
                found = (layout, load_split(ctx.dataset, "train", layout),
                         SplitData.concat([load_split(ctx.dataset, s, layout)
                                           for s in ("val", "test")]))
                read.append(found)
            _, train, later = found
            curve = warmup_curve(run.load_model(layout), layout, train, later)
            ctx.log(f"warm-up {arm} seed {seed}: " + ", ".join(
                f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in curve["auc"].items()))
            write_json(curve, path)
            curves[arm].append(curve)
    return curves


def _table(columns, names, models, oracle, rows, rows_label="test rows") -> dict:
    """A results block in the shape report.auc_table reads."""
    return {"columns": list(columns), "names": names, "models": models, "oracle_auc": oracle,
            "test_rows": rows, "rows_label": rows_label}


def summarize(runs: dict[str, list[dict]], curves: dict[str, list[dict]], ctx: Context) -> dict:
    from recsys.eval.warmup import STAGES
    from recsys.experiments.training import mean_std

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
    return {"experiment": "cold-start", "dataset": str(ctx.dataset), "seeds": ctx.seeds,
            "subsets": subsets, "per_scenario": per_scenario, "warmup": warmup,
            "examples_per_s": {m: mean_std([r["train"]["examples_per_s"] for r in rs])["mean"]
                               for m, rs in runs.items()}}


def best_multi_scenario(results: Path) -> Arm | None:
    """The arm with the best overall AUC in a multi-scenario experiment's results (None where
    there are none)."""
    if not results.is_file():
        return None
    found = read_json(results, "run the multi-scenario experiment again, or pass other "
                      "multi_scenario_results")
    if "arms" not in found:
        raise UsageError(f"{results}: written by an older recsys (no \"arms\"): run the "
                         f"multi-scenario experiment again (its finished runs are reused)",
                         fields="multi_scenario_results")
    models = found["models"]
    best = max(models, key=lambda m: models[m]["auc"]["overall"]["mean"] or 0.0)
    return Arm.from_json(found["arms"][best])
