"""`recsys experiment multi-modal`: each model with and without text vectors (and, if asked,
with text and image vectors), over K seeds, per scenario and on zero-shot users and items. The
gain of a modality is the paired difference of the same model and seed with and without it.
Finished runs are reused, so a killed experiment continues."""

from __future__ import annotations

from pathlib import Path

from recsys.eval.report import plot_paired, write_multi_modal_report
from recsys.files import write_json
from recsys.train.experiment import paired_gains, scenario_columns, summarize, train_runs

SUBSETS = ("zero_shot_user", "zero_shot_item")


def columns_of(runs: dict[str, list[dict]]) -> tuple[str, ...]:
    """Each scenario, overall, and the zero-shot subsets."""
    return (*scenario_columns(next(iter(runs.values()))[0]), *SUBSETS)


def arms(models: tuple[str, ...], image: bool) -> tuple[str, ...]:
    """Run names: each model alone, with text, and (with `image`) with text and image."""
    variants = ("", "+text", "+text+image") if image else ("", "+text")
    return tuple(f"{m}{v}" for m in models for v in variants)


def multi_modal(dataset: Path, out: Path, seeds: int = 1,
                models: tuple[str, ...] = ("dnn_mixed", "mmoe"), image: bool = False,
                file: dict | None = None, flags: dict | None = None, force: bool = False,
                progress: bool = True, log=print) -> dict:
    runs = train_runs(dataset, out, arms(models, image), seeds, force, progress, log, file,
                      flags)
    results = summarize(runs, dataset, seeds, columns_of(runs), "multi-modal")
    # each model with a modality against the same model and seed without it
    results["gains"] = paired_gains(runs, [(a, a.split("+")[0]) for a in runs if "+" in a],
                                    columns_of(runs))
    write_json(results, out / "results.json")
    plot_paired(results, out / "multi_modal.png")
    write_multi_modal_report(results, out / "report.md")
    return results
