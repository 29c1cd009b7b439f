"""`recsys experiment history`: what the user's history is worth. Each model alone, with its
history pooled by target attention (`+history`) and by its mean (`+history-mean`), and the
models that read a history by nature (din), over K seeds, per scenario, overall and on few-shot
and zero-shot users. A gain is paired: the same seed with the history minus the model without
it (din against the first model). Finished runs are reused, so a killed experiment continues."""

from __future__ import annotations

from pathlib import Path

from recsys.eval.report import plot_paired, write_history_report
from recsys.files import write_json
from recsys.schema import HISTORY_POOLINGS
from recsys.models.registry import model_names
from recsys.config import history_token
from recsys.train.experiment import paired_gains, scenario_columns, summarize, train_runs

SUBSETS = ("few_shot_user", "zero_shot_user")
MODELS = ("mmoe",)  # the models read with and without a history by default


def columns_of(runs: dict[str, list[dict]]) -> tuple[str, ...]:
    """Each scenario, overall, and the few-shot and zero-shot users."""
    return (*scenario_columns(next(iter(runs.values()))[0]), *SUBSETS)


def arms(models: tuple[str, ...]) -> dict[str, str]:
    """Each arm -> the arm it is paired with: every model with each history pooling against
    itself, the history models (din) against the first model."""
    pairs = {f"{m}+{history_token(p)}": m for m in models for p in HISTORY_POOLINGS}
    return {**{m: "" for m in models}, **pairs,
            **{m: models[0] for m in model_names(family="history")}}


def history(dataset: Path, out: Path, seeds: int = 1, models: tuple[str, ...] = MODELS,
            file: dict | None = None, flags: dict | None = None, force: bool = False,
            progress: bool = True, log=print) -> dict:
    paired = arms(models)
    runs = train_runs(dataset, out, tuple(paired), seeds, force, progress, log, file, flags)
    results = summarize(runs, dataset, seeds, columns_of(runs), "history")
    results["gains"] = paired_gains(runs, [(a, b) for a, b in paired.items() if b],
                                    columns_of(runs))
    write_json(results, out / "results.json")
    plot_paired(results, out / "history.png", "the history")
    write_history_report(results, out / "report.md")
    return results
