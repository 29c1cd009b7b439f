"""`recsys experiment multi-modal`: each model with and without text vectors (and, if asked,
with text and image vectors), over K seeds, per scenario and on zero-shot users and items. The
gain of a modality is the paired difference of the same model and seed with and without it.
Finished runs are reused, so a killed experiment continues."""

from __future__ import annotations

from pathlib import Path

from recsys.eval.report import plot_multi_modal, write_multi_modal_report
from recsys.storage import write_json
from recsys.train.experiment import cell, mean_std, scenario_columns, summarize, train_runs

SUBSETS = ("zero_shot_user", "zero_shot_item")


def columns_of(runs: dict[str, list[dict]]) -> tuple[str, ...]:
    """Each scenario, overall, and the zero-shot subsets."""
    return (*scenario_columns(next(iter(runs.values()))[0]), *SUBSETS)


def arms(models: tuple[str, ...], image: bool) -> tuple[str, ...]:
    """Run names: each model alone, with text, and (with `image`) with text and image."""
    variants = ("", "+text", "+text+image") if image else ("", "+text")
    return tuple(f"{m}{v}" for m in models for v in variants)


def multi_modal(dataset: Path, out: Path, seeds: int = 1, epochs: int = 3,
                batch_size: int = 2048, models: tuple[str, ...] = ("dnn_mixed", "mmoe"),
                image: bool = False, force: bool = False, progress: bool = True,
                log=print) -> dict:
    runs = train_runs(dataset, out, arms(models, image), seeds, epochs, batch_size, force,
                      progress, log)
    results = summarize(runs, dataset, seeds, columns_of(runs), "multi-modal")
    results["gains"] = gains(runs, models)
    write_json(results, out / "results.json")
    plot_multi_modal(results, out / "multi_modal.png")
    write_multi_modal_report(results, out / "report.md")
    return results


def gains(runs: dict[str, list[dict]], models: tuple[str, ...]) -> dict:
    """Per model and added modality: AUC(model + modality) - AUC(model), seed by seed, as
    mean ± std over seeds per column (a results block `auc_table` can print)."""
    table = {}
    for model in models:
        for arm in runs:
            if arm == model or not arm.startswith(model + "+"):
                continue
            diffs = {}
            for col in columns_of(runs):
                pairs = [(cell(w, col)["auc"], cell(b, col)["auc"])
                         for w, b in zip(runs[arm], runs[model])]
                diffs[col] = mean_std([a - b for a, b in pairs
                                       if a is not None and b is not None])
            table[f"{arm} − {model}"] = {"auc": diffs}
    return table

