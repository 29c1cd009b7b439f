"""`recsys experiment multi-scenario`: the multi-scenario models (the paper's and the newer
ones, or those `--models` names), optionally each also on the DCN backbone, over K seeds; then
a table like the paper's (mean ± std per scenario and overall, best per column marked, Bayes AUC
row where the data has one), the paired gain of each over `dnn` per scenario, and a plot.
Finished runs are reused and interrupted ones resume, so a killed experiment continues."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np

from recsys.dataset.meta import read_dataset_meta
from recsys.errors import UsageError
from recsys.eval.report import plot_per_scenario, write_report
from recsys.models.registry import model_class, model_names
from recsys.schema import HISTORY_POOLINGS
from recsys.models.config import BACKBONES, ModelConfig
from recsys.schema import MODALITIES
from recsys.files import write_json
from recsys.config import TrainConfig, history_token
from recsys.run import Run
from recsys.train.loop import train

BASELINE = "dnn"  # the multi-scenario experiment's gains are paired with it, seed by seed


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / f"{arm}-seed{seed}"


HISTORIES = {history_token(p): p for p in HISTORY_POOLINGS}  # "history" -> "attention"


def parse_arm(arm: str) -> tuple[str, tuple[str, ...], str, str]:
    """An experiment arm "model[+modality...][+history][+backbone]" -> (model, modalities,
    history pooling, backbone): "mmoe+text+history+dcn" (TrainConfig.name's form)."""
    model, *extras = arm.split("+")
    modalities = tuple(e for e in extras if e in MODALITIES)
    backbones = [e for e in extras if e in BACKBONES]
    histories = [HISTORIES[e] for e in extras if e in HISTORIES]
    unknown = [e for e in extras if e not in modalities and e not in backbones
               and e not in HISTORIES]
    if unknown or len(backbones) > 1 or len(histories) > 1:
        raise UsageError(f"arm {arm!r}: after the model come modalities "
                         f"({', '.join(MODALITIES)}), at most one history "
                         f"({', '.join(HISTORIES)}) and at most one backbone "
                         f"({', '.join(BACKBONES)})")
    model_class(model)
    return model, modalities, histories[0] if histories else "", \
        backbones[0] if backbones else "mlp"


def arm_config(arm: str, seed: int, file: dict, flags: dict, where: str) -> TrainConfig:
    """The run config of an arm and seed: the defaults, then the experiment's config file (its
    run keys, and of its model_config the keys every model has), then the flags given."""
    model, modalities, history, backbone = parse_arm(arm)
    common = {f.name for f in fields(ModelConfig)}
    shared = file.get("model_config") or {}
    if not isinstance(shared, dict):
        raise UsageError(f"{where}: model_config is {shared!r}; it takes `key: value` lines")
    if unknown := [k for k in shared if k not in common]:
        raise UsageError(f"{where}: model_config.{unknown[0]}: an experiment's config takes "
                         f"the keys every model has ({', '.join(sorted(common))}); a model's "
                         f"own keys go to `recsys train --config`")
    data = {**{k: v for k, v in file.items() if k != "model"},
            **{k: v for k, v in flags.items() if v is not None},
            "model": model, "seed": seed, "modalities": list(modalities), "history": history,
            "model_config": {**shared, "backbone": backbone} if backbone != "mlp"
            else {**shared}}
    cfg = TrainConfig.from_json(data, where)
    cfg.check()
    return cfg


def train_runs(dataset: Path, out: Path, arms: tuple[str, ...], seeds: int, force: bool,
               progress: bool, log, file: dict | None = None,
               flags: dict | None = None) -> dict[str, list[dict]]:
    """metrics.json of every (arm, seed) run under out/runs/, training what is missing. An arm
    is a model name with modalities and a backbone (`parse_arm`); `file` is the experiment's
    config file, `flags` its epochs / batch size given on the command line."""
    if seeds < 1:
        raise UsageError(f"seeds {seeds}: need at least one seed", fields="seeds")
    read_dataset_meta(dataset)  # fail early, with the dataset's own message
    file, flags = file or {}, flags or {}
    configs = {(arm, seed): arm_config(arm, seed, file, flags, "the config file")
               for seed in range(seeds) for arm in arms}  # every arm checked before any run
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    for seed in range(seeds):
        for arm in arms:
            folder = run_dir(out, arm, seed)
            if Run(folder).finished and not force:
                log(f"reusing finished run {folder}")
                metrics = Run(folder).metrics()
            else:
                metrics = train(dataset, folder, configs[arm, seed], force=force,
                                progress=progress, log=log)
            runs[arm].append(metrics)
    return runs


def multi_scenario_arms(models: tuple[str, ...] | None = None,
                        backbones: tuple[str, ...] = ("mlp",)) -> tuple[str, ...]:
    """Each model on each backbone: "mmoe", "mmoe+dcn"; every multi-scenario model by
    default."""
    models = models or model_names(family="multi-scenario")
    for b in backbones:
        if b not in BACKBONES:
            raise UsageError(f"backbones {b}: choose from {', '.join(BACKBONES)}",
                             fields="backbones")
    return tuple(m if b == "mlp" else f"{m}+{b}" for b in backbones for m in models)


def multi_scenario(dataset: Path, out: Path, seeds: int = 1,
                   models: tuple[str, ...] | None = None, backbones: tuple[str, ...] = ("mlp",),
                   file: dict | None = None, flags: dict | None = None, force: bool = False,
                   progress: bool = True, log=print) -> dict:
    arms = multi_scenario_arms(models, backbones)
    runs = train_runs(dataset, out, arms, seeds, force, progress, log, file, flags)
    results = summarize(runs, dataset, seeds)
    if BASELINE in runs:
        results["gains"] = paired_gains(runs, [(a, BASELINE) for a in arms if a != BASELINE],
                                        results["columns"])
    write_json(results, out / "results.json")
    plot_per_scenario(results, out / "per_scenario_auc.png")
    write_report(results, out / "report.md")
    return results


def paired_gains(runs: dict[str, list[dict]], pairs: list[tuple[str, str]],
                 columns: list[str] | tuple[str, ...]) -> dict:
    """For each (arm, baseline): AUC(arm) - AUC(baseline), seed by seed, as mean ± std over
    seeds per column (a results block `report.gain_table` prints), named "arm − baseline" and
    naming both, so a reader need not parse the name."""
    table = {}
    for arm, base in pairs:
        diffs = {}
        for col in columns:
            pairs_ = [(cell(a, col)["auc"], cell(b, col)["auc"])
                      for a, b in zip(runs[arm], runs[base])]
            diffs[col] = mean_std([a - b for a, b in pairs_ if a is not None and b is not None])
        table[f"{arm} − {base}"] = {"arm": arm, "baseline": base, "auc": diffs}
    return table


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
