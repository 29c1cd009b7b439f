"""`recsys experiment multi-scenario`: the multi-scenario models (the paper's and the newer
ones, or those `--models` names), optionally each also on the DCN backbone, over K seeds; a
table like the paper's (mean ± std per scenario and overall, best per column marked, Bayes AUC
row where the data has one), the paired gain of each over `dnn` per scenario, and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from recsys.config import Arm
from recsys.errors import UsageError
from recsys.eval.report import auc_table, gain_table, over_seeds, speed_rows
from recsys.experiments.context import Context
from recsys.experiments.spec import Experiment, Option, listed
from recsys.files import write_text
from recsys.models.config import BACKBONES

BASELINE = Arm("dnn")  # the gains are paired with it, seed by seed


class MultiScenario(Experiment):
    name = "multi-scenario"
    about = ("Train the multi-scenario models over K seeds; write the report, the paired "
             "gains over dnn and the plot.")
    plot_file = "per_scenario_auc.png"
    options = (
        Option("models", Optional[str], None, "Models to compare, a,b,c (default: every "
               "multi-scenario model: dnn, dnn_mixed, shared_bottom, mmoe, ple, star, pepnet, "
               "m2m)."),
        Option("backbones", str, "mlp", "Run each model on these bottoms: mlp | dcn | "
               "mlp,dcn."))

    def arms(self, ctx: Context) -> dict[Arm, Arm | None]:
        from recsys.models.registry import model_names

        models = listed(ctx.options.get("models")) or model_names(family="multi-scenario")
        backbones = listed(ctx.options.get("backbones")) or ("mlp",)
        for b in backbones:
            if b not in BACKBONES:
                raise UsageError(f"backbones {b}: choose from {', '.join(BACKBONES)}",
                                 fields="backbones")
        arms = [Arm(m, backbone=b) for b in backbones for m in models]
        return {a: BASELINE if BASELINE in arms and a != BASELINE else None for a in arms}

    def report(self, results: dict, path: Path) -> None:
        gains = f"""## AUC gain over dnn (same seed, the model minus dnn)

{gain_table(results)}

""" if results.get("gains") else ""
        write_text(f"""# Multi-scenario experiment

Dataset `{results['dataset']}`, {results['seeds']} seed(s); test split; {over_seeds(results)}.
Bold: best model per column (above chance); ≈: within the spread over seeds of the best (a
difference within noise). The Bayes row (generated data only) is the AUC of the
generator's true click probability, the ceiling no model can pass.

## AUC

{auc_table(results, 'auc')}

{gains}## Logloss

{auc_table(results, 'logloss')}

## Training speed (examples/s)

| model | examples/s |
| --- | ---: |
{speed_rows(results['models'])}

![per-scenario AUC](per_scenario_auc.png)
""", path)

    def plot(self, results: dict, path: Path) -> None:
        from recsys.eval.plots import plot_per_scenario

        plot_per_scenario(results, path)
