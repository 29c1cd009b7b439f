"""What the experiments' specs train and summarize with: an arm's run config, its runs over the
seeds (finished runs reused, interrupted ones resumed, so a killed experiment continues), mean ±
std per column over seeds and the paired gains."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np

from recsys.config import Arm, TrainConfig
from recsys.errors import UsageError
from recsys.experiments.context import Context
from recsys.models.config import ModelConfig
from recsys.run import Run


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / f"{arm}-seed{seed}"


def arm_config(arm: Arm, seed: int, file: dict, flags: dict, where: str) -> TrainConfig:
    """The run config of an arm and seed: the defaults, then the experiment's config file (its
    run keys, and of its model_config the keys every model has), then the flags given."""
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
            "model": arm.model, "seed": seed, "modalities": list(arm.modalities),
            "history": arm.history,
            "model_config": {**shared, **({"backbone": arm.backbone}
                                          if arm.backbone != "mlp" else {})}}
    cfg = TrainConfig.from_json(data, where)
    cfg.check()
    return cfg


def train_arms(ctx: Context, arms: tuple[Arm, ...]) -> dict[str, list[dict]]:
    """metrics.json of every (arm, seed) run under out/runs/, by arm name, training what is
    missing; every arm's config is checked before any run."""
    configs = {(arm, seed): arm_config(arm, seed, ctx.file, ctx.flags, "the config file")
               for seed in range(ctx.seeds) for arm in arms}
    runs: dict[str, list[dict]] = {a.name: [] for a in arms}
    for seed in range(ctx.seeds):
        for arm in arms:
            runs[arm.name].append(trained(run_dir(ctx.out, arm.name, seed), ctx.dataset,
                                          configs[arm, seed], ctx))
    return runs


def trained(folder: Path, dataset: Path, config: TrainConfig, ctx: Context,
            init_from: Path | None = None) -> dict:
    """The metrics of the run in `folder`: reused when it finished with this config, trained
    (or resumed) otherwise."""
    from recsys.dataset.layout import has_history
    from recsys.dataset.meta import DatasetMeta
    from recsys.train.loop import train

    config.resolve_for_data(has_history(DatasetMeta.read(dataset)))  # as the training will
    if Run(folder).finished and not ctx.force:
        if Run(folder).config() != config:
            raise UsageError(f"{folder}: a finished run of another config; pass force=True to "
                             f"train it again, or another out folder")
        ctx.log(f"reusing finished run {folder}")
        return Run(folder).metrics()
    return train(dataset, folder, config, force=ctx.force, progress=ctx.progress, log=ctx.log,
                 init_from=init_from)


def mean_std(values: list) -> dict:
    """Mean and standard deviation over seeds of the values that exist (None: too few rows)."""
    vals = [v for v in values if v is not None]
    return {"mean": float(np.mean(vals)) if vals else None,
            "std": float(np.std(vals)) if vals else None, "values": vals}


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


def summarize(runs: dict[str, list[dict]], ctx: Context, columns: tuple[str, ...],
              experiment: str) -> dict:
    """Mean and standard deviation over seeds of AUC and logloss per column."""
    one = next(iter(runs.values()))  # an arm's runs, one per seed (a day, for rolling)
    first = one[0]
    models = {}
    for arm, ms in runs.items():
        stats = {key: {col: mean_std([cell(m, col)[key] for m in ms]) for col in columns}
                 for key in ("auc", "logloss")}
        stats["examples_per_s"] = float(np.mean([m["train"]["examples_per_s"] for m in ms]))
        models[arm] = stats
    return {"experiment": experiment, "dataset": str(ctx.dataset),
            "seeds": len(one), "columns": list(columns),
            "names": {code: s["name"] for code, s in first["scenarios"].items()},
            "models": models, "oracle_auc": {c: oracle_auc(first, c) for c in columns},
            "test_rows": {c: cell(first, c)["n"] for c in columns}}


def paired_gains(runs: dict[str, list[dict]], pairs: list[tuple[str, str]],
                 columns: list[str] | tuple[str, ...]) -> dict:
    """For each (arm, baseline): AUC(arm) - AUC(baseline), seed by seed, as mean ± std over
    seeds per column (a results block `report.gain_table` prints), named "arm − baseline" and
    naming both, so a reader need not parse the name."""
    table = {}
    for arm, base in pairs:
        diffs = {}
        for col in columns:
            both = [(cell(a, col)["auc"], cell(b, col)["auc"])
                    for a, b in zip(runs[arm], runs[base])]
            diffs[col] = mean_std([a - b for a, b in both if a is not None and b is not None])
        table[f"{arm} − {base}"] = {"arm": arm, "baseline": base, "auc": diffs}
    return table
