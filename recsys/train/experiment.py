"""`recsys experiment multi-scenario`: every multi-scenario model over K seeds, then a table like
the paper's (mean ± std per scenario and overall, best per column marked, Bayes AUC row) and a
plot. Finished runs are reused and interrupted ones resume, so a killed experiment continues."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.dataset.loader import read_meta
from recsys.errors import UsageError
from recsys.eval.report import plot_per_scenario, write_report
from recsys.models import MULTI_SCENARIO_MODELS
from recsys.storage import read_json, write_json
from recsys.train.loop import METRICS, TrainConfig, train


def run_dir(out: Path, model: str, seed: int) -> Path:
    return out / "runs" / f"{model}-seed{seed}"


def parse_arm(arm: str) -> tuple[str, tuple[str, ...]]:
    """An experiment arm "model[+modality...]" -> (model, modalities): "mmoe+text"."""
    model, *modalities = arm.split("+")
    return model, tuple(modalities)


def train_runs(dataset: Path, out: Path, models: tuple[str, ...], seeds: int, epochs: int,
               batch_size: int, force: bool, progress: bool, log) -> dict[str, list[dict]]:
    """metrics.json of every (arm, seed) run under out/runs/, training what is missing. An arm
    is a model name, optionally with modalities (`parse_arm`)."""
    if seeds < 1:
        raise UsageError(f"--seeds {seeds}: need at least one seed")
    read_meta(dataset)  # fail early, with the dataset's own message
    runs: dict[str, list[dict]] = {m: [] for m in models}
    for seed in range(seeds):
        for model in models:
            folder = run_dir(out, model, seed)
            if (folder / METRICS).exists() and not force:
                log(f"reusing finished run {folder}")
                metrics = read_json(folder / METRICS, "pass --force to run it again")
            else:
                name, modalities = parse_arm(model)
                cfg = TrainConfig(model=name, epochs=epochs, batch_size=batch_size, seed=seed,
                                  modalities=modalities)
                metrics = train(dataset, folder, cfg, force=force, progress=progress, log=log)
            runs[model].append(metrics)
    return runs


def multi_scenario(dataset: Path, out: Path, seeds: int = 1, epochs: int = 3,
                   batch_size: int = 2048, models: tuple[str, ...] = MULTI_SCENARIO_MODELS,
                   force: bool = False, progress: bool = True, log=print) -> dict:
    runs = train_runs(dataset, out, models, seeds, epochs, batch_size, force, progress, log)
    results = summarize(runs, dataset, seeds)
    write_json(results, out / "results.json")
    plot_per_scenario(results, out / "per_scenario_auc.png")
    write_report(results, out / "report.md")
    return results


def mean_std(values: list) -> dict:
    """Mean and standard deviation over seeds of the values that exist (None: too few rows)."""
    vals = [v for v in values if v is not None]
    return {"mean": float(np.mean(vals)) if vals else None,
            "std": float(np.std(vals)) if vals else None, "values": vals}


def scenario_columns(metrics: dict) -> tuple[str, ...]:
    """A run's scenario codes (as its metrics.json names them: the dataset's scenarios), then
    "overall"."""
    return (*metrics["scenarios"], "overall")


def cell(metrics: dict, col: str) -> dict:
    """A column's block of a run's metrics: a scenario code, "overall" or a cold-start subset."""
    if col == "overall":
        return metrics["overall"]
    return metrics["subsets"][col] if col in metrics["subsets"] else metrics["scenarios"][col]


def oracle_auc(metrics: dict, col: str) -> float | None:
    oracle = metrics["oracle"]
    if col == "overall":
        return oracle["overall_auc"]
    return oracle["subsets"][col] if col in oracle["subsets"] else oracle["scenarios"][col]


def summarize(runs: dict[str, list[dict]], dataset: Path, seeds: int,
              columns: tuple[str, ...] | None = None,
              experiment: str = "multi-scenario") -> dict:
    """Mean and standard deviation over seeds of AUC and logloss per column (default: each
    scenario and overall)."""
    first = next(iter(runs.values()))[0]
    columns = columns or scenario_columns(first)
    models = {}
    for model, ms in runs.items():
        stats = {}
        for key in ("auc", "logloss"):
            stats[key] = {col: mean_std([cell(m, col)[key] for m in ms]) for col in columns}
        stats["examples_per_s"] = float(np.mean([m["train"]["examples_per_s"] for m in ms]))
        models[model] = stats
    return {"experiment": experiment, "dataset": str(dataset), "seeds": seeds,
            "columns": list(columns),
            "names": {code: s["name"] for code, s in first["scenarios"].items()},
            "models": models, "oracle_auc": {c: oracle_auc(first, c) for c in columns},
            "test_rows": {c: cell(first, c)["n"] for c in columns}}
