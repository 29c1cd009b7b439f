"""`recsys experiment rolling`: does updating yesterday's model on today's data keep up with
retraining on everything? For each day d from `start`:

- update: the model of day d-1, warm-started (`--init-from`) and trained on day d alone;
- retrain: a fresh model trained on every day up to d (every `retrain_every` days; between
  refits the last refit is evaluated as it is);

both evaluated on day d+1: overall, per scenario, and on the users and items new that day
(never in the log before it). Each day's datasets are windows of the repo's log
(`build-dataset --from --to`): day d+1 is their validation split, which a run of one epoch
(the default) does not select on, and day d+2 their test split, which the experiment does not
read. The chain starts on day `start` from the retrain run of that day, so the means compare
the two arms over the days after it.

Results: results.json (the multi-scenario experiment's table shape over days rather than
seeds, gateable with `recsys experiment gate`; a per-day list; examples and seconds trained per
arm), report.md and rolling_auc.png under the experiment's folder; finished datasets and runs
are reused."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from recsys.data.offline import connect, offline_dir, read_repo_meta
from recsys.data.split import SplitSpec, Window
from recsys.dataset.build import build_dataset
from recsys.dataset.meta import DATASET_META, read_dataset_meta
from recsys.errors import UsageError
from recsys.eval.evaluate import run_metrics
from recsys.eval.report import plot_rolling, write_rolling_report
from recsys.files import write_json
from recsys.models.registry import model_class
from recsys.run import Run
from recsys.schema import EVENT_TIMESTAMP, INTERACTIONS
from recsys.config import TrainConfig
from recsys.train.experiment import summarize
from recsys.train.loop import train

ARMS = ("update", "retrain")
# The update arm's dense rate, as a share of a fresh run's. Yesterday's dense layers already fit
# every day before; one day at a fresh run's rate pulls them toward that day, which costs
# next-day AUC, most on new users (`--update-dense-lr` at the full rate shows it), while the
# new day's ID rows learn at their own row-wise rate.
UPDATE_DENSE_LR_SHARE = 0.1
NEW = ("zero_shot_user", "zero_shot_item")  # the day's new users and items
EVALUATED = "val"  # the split of day d+1 in day d's datasets


def log_days(repo: Path) -> list[date]:
    """The days of the repo's log that have rows, in order."""
    con = connect(offline_dir(repo), read_repo_meta(repo)["start_epoch"])
    try:
        return [d for (d,) in con.execute(f"SELECT DISTINCT {EVENT_TIMESTAMP}::DATE AS d "
                                          f"FROM {INTERACTIONS} ORDER BY d").fetchall()]
    finally:
        con.close()


def rolling(repo: Path, out: Path, model: str, start: str, end: str | None = None,
            retrain_every: int = 1, epochs: int = 1, batch_size: int | None = None,
            seed: int = 0, memory_gb: float | None = None, force: bool = False,
            progress: bool = True, log=print, update_dense_lr: float | None = None) -> dict:
    if model_class(model).capabilities.adapts:
        raise UsageError(f"model {model}: adapts to each user at test time, which the rolling "
                         f"evaluation does not replay; choose another model", fields="model")
    if retrain_every < 1:
        raise UsageError(f"retrain_every {retrain_every}: must be at least 1",
                         fields="retrain_every")
    Window.of(start, end)  # checks both dates
    first, last = date.fromisoformat(start), date.fromisoformat(end) if end else None
    days = log_days(repo)
    # day d needs d+1 (evaluated) and d+2 (its datasets' test split)
    chosen = [d for d in days[:-2] if d >= first and (last is None or d <= last)]
    if len(chosen) < 2:
        raise UsageError(f"--start {start}{f' --end {end}' if end else ''}: {len(chosen)} "
                         f"day(s) to roll over; the log has days {days[0]} to {days[-1]}, and "
                         f"each rolled day needs the two after it: pick an earlier start",
                         fields=("start", "end"))
    cfg = TrainConfig(model=model, epochs=epochs, seed=seed,
                      **({"batch_size": batch_size} if batch_size else {}))
    cfg.check()
    update_cfg = replace(cfg, dense_lr=cfg.dense_lr * UPDATE_DENSE_LR_SHARE
                         if update_dense_lr is None else update_dense_lr)
    builds = {"memory_gb": memory_gb} if memory_gb else {}

    def dataset(name: str, first_day: date, day: date) -> Path:
        """The window first_day..day+2, day+1 its validation split, day+2 its test split."""
        path = out / "datasets" / name
        if not (path / DATASET_META).is_file() or force:
            log(f"building {path} ({first_day} to {day + timedelta(days=2)})")
            build_dataset(repo, path, force=force, progress=progress,  # resumes a killed one
                          split_spec=SplitSpec("dates", val_from=str(day + timedelta(days=1)),
                                               test_from=str(day + timedelta(days=2))),
                          window=Window.of(str(first_day), str(day + timedelta(days=2))),
                          **builds)
        return path

    def trained(name: str, data: Path, parent: Path | None) -> tuple[Path, dict]:
        """A run (reused when finished with the same config) and its training figures."""
        path, config = out / "runs" / name, update_cfg if parent else cfg
        done = Run(path).finished
        if not done or force or Run(path).config() != config:
            train(data, path, config, force=force or done, progress=progress, log=log,
                  init_from=parent)
        metrics = Run(path).metrics()
        rows = read_dataset_meta(data)["splits"]["train"]["rows"]
        return path, {"examples": rows * metrics["train"]["epochs"],
                      "seconds": metrics["train"]["seconds"]}

    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    per_day, refit, update = [], None, None
    for i, day in enumerate(chosen):
        evaluated = dataset(f"day-{day}", day, day)  # day d alone: the update's
        spent = {}
        if i % retrain_every == 0:
            refit, spent["retrain"] = trained(f"retrain-{day}", dataset(f"upto-{day}", days[0],
                                                                        day), None)
        else:
            spent["retrain"] = {"examples": 0, "seconds": 0.0}
        if i == 0:  # the chain's start: the retrain run of the first day
            update, spent["update"] = refit, spent["retrain"]
        else:
            update, spent["update"] = trained(f"update-{day}", evaluated, update)
        for arm, path in (("update", update), ("retrain", refit)):
            metrics = run_metrics(Run(path), evaluated, EVALUATED,
                                  out / "scores" / f"{arm}-{day}.parquet")
            if i > 0:
                runs[arm].append({**metrics, "train": {
                    "examples_per_s": spent[arm]["examples"] / max(spent[arm]["seconds"],
                                                                   1e-9)}})
            per_day.append({"day": str(day), "evaluated_on": str(day + timedelta(days=1)),
                            "arm": arm, "run": str(path), "overall": metrics["overall"],
                            **{flag: metrics["subsets"][flag] for flag in NEW},
                            "scenarios": metrics["scenarios"], **spent[arm]})
            log(f"{day} {arm}: next-day AUC {_auc(metrics['overall'])}, new users "
                f"{_auc(metrics['subsets']['zero_shot_user'])}, {spent[arm]['examples']:,} "
                f"examples trained")
    results = summarize(runs, out / "datasets", len(chosen) - 1,
                        columns=(*next(iter(runs["update"]))["scenarios"], "overall", *NEW),
                        experiment="rolling")
    totals = {arm: {key: sum(d[key] for d in per_day if d["arm"] == arm and d["day"] !=
                             str(chosen[0])) for key in ("examples", "seconds")} for arm in ARMS}
    results.update(model=model, repo=str(repo), start=str(chosen[0]), days=per_day,
                   retrain_every=retrain_every, epochs=epochs, totals=totals,
                   dense_lr={"update": update_cfg.dense_lr, "retrain": cfg.dense_lr},
                   examples_share=totals["update"]["examples"] /
                   max(totals["retrain"]["examples"], 1))
    write_json(results, out / "results.json")
    plot_rolling(results, out / "rolling_auc.png")
    write_rolling_report(results, out / "report.md")
    return results


def _auc(cell: dict) -> str:
    return "n/a" if cell["auc"] is None else f"{cell['auc']:.4f}"
