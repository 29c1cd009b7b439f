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
seeds, gateable with `recsys experiment gate`; a per-day list with the datasets each day read;
examples and seconds trained per arm), report.md and rolling_auc.png under the experiment's
folder; finished datasets and runs are reused."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Optional

from recsys.config import UPDATE_DENSE_LR_SHARE, Arm
from recsys.errors import UsageError
from recsys.eval.report import auc_table
from recsys.experiments.context import Context
from recsys.experiments.spec import Experiment, Option
from recsys.files import write_text

ARMS = ("update", "retrain")
EPOCHS = 1  # per run: one, so no run selects an epoch on the day it is evaluated on
NEW = ("zero_shot_user", "zero_shot_item")  # the day's new users and items
EVALUATED = "val"  # the split of day d+1 in day d's datasets


class Rolling(Experiment):
    name = "rolling"
    about = ("Update yesterday's model on today's data, or retrain on every day: next-day AUC "
             "per day, overall, per scenario and on the day's new users and items; table, "
             "report and plot.")
    plot_file = "rolling_auc.png"
    on_dataset = False
    options = (
        Option("repo", Path, Path("feature_repo"), "The feature repo whose log to roll over.",
               flags=("--dataset-repo", "--repo")),
        Option("model", str, ..., "The model both arms train."),
        Option("start", str, ..., "The first day (ISO date) to train on; its next day is the "
               "first evaluated."),
        Option("end", Optional[str], None, "The last day to train on (default: the last with "
               "two days after it)."),
        Option("retrain_every", int, 1, "Refit the retrain arm every K days.", min=1),
        Option("epochs", Optional[int], None, f"Epochs per run (default {EPOCHS}: no "
               f"selection on the evaluated day).", min=1),
        Option("update_dense_lr", Optional[float], None, "Adam's rate on the dense layers in "
               "the update arm (default: a tenth of a fresh run's).", min=0.0),
        Option("seed", int, 0, "The runs' seed.", min=0),
        Option("memory_gb", Optional[float], None, "The dataset builds' memory budget (GB)."))

    def default_out(self, preset: str, options: dict) -> Path:
        return Path("runs") / f"rolling-{options['model']}"

    def collect(self, ctx: Context) -> dict:
        o = ctx.options
        chosen, days = rolled_days(o["repo"], o["model"], o["start"], o["end"],
                                   o["retrain_every"])
        cfg = self.config(ctx)
        update_cfg = replace(cfg, dense_lr=cfg.dense_lr * UPDATE_DENSE_LR_SHARE
                             if o["update_dense_lr"] is None else o["update_dense_lr"])
        runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
        per_day, refit, update = [], None, None
        for i, day in enumerate(chosen):
            evaluated = self.dataset(ctx, f"day-{day}", day, day)  # day d alone: the update's
            spent, read = {}, {"update": [evaluated], "retrain": []}
            if i % o["retrain_every"] == 0:
                upto = self.dataset(ctx, f"upto-{day}", days[0], day)
                refit, spent["retrain"] = self.trained(ctx, f"retrain-{day}", upto, cfg, None)
                read["retrain"] = [upto]
            else:
                spent["retrain"] = {"examples": 0, "seconds": 0.0}
            if i == 0:  # the chain's start: the retrain run of the first day
                update, spent["update"] = refit, spent["retrain"]
            else:
                update, spent["update"] = self.trained(ctx, f"update-{day}", evaluated,
                                                       update_cfg, update)
            for arm, path in (("update", update), ("retrain", refit)):
                entry = self.evaluate(ctx, arm, day, path, evaluated, spent[arm], read[arm])
                metrics = entry.pop("metrics")
                per_day.append(entry)
                if i > 0:  # the chain's start is the same run for both arms: not compared
                    runs[arm].append(metrics)
        return self.summary(ctx, runs, per_day, chosen, cfg, update_cfg)

    def config(self, ctx: Context):
        from recsys.experiments.training import arm_config

        return arm_config(Arm(ctx.options["model"]), ctx.options["seed"],
                          {"epochs": EPOCHS, **ctx.file}, ctx.flags, "the config file")

    def dataset(self, ctx: Context, name: str, first_day: date, day: date) -> Path:
        """The window first_day..day+2, day+1 its validation split, day+2 its test split."""
        from recsys.data.split import SplitSpec, Window
        from recsys.dataset.build import build_dataset
        from recsys.dataset.meta import DATASET_META

        path = ctx.out / "datasets" / name
        if not (path / DATASET_META).is_file() or ctx.force:
            ctx.log(f"building {path} ({first_day} to {day + timedelta(days=2)})")
            memory = ctx.options["memory_gb"]
            build_dataset(ctx.options["repo"], path, force=ctx.force,  # resumes a killed one
                          progress=ctx.progress,
                          split_spec=SplitSpec("dates", val_from=str(day + timedelta(days=1)),
                                               test_from=str(day + timedelta(days=2))),
                          window=Window.of(str(first_day), str(day + timedelta(days=2))),
                          **({"memory_gb": memory} if memory else {}))
        return path

    def trained(self, ctx: Context, name: str, data: Path, config,
                parent: Path | None) -> tuple[Path, dict]:
        """A run (reused when finished with the same config) and its training figures."""
        from recsys.dataset.meta import DatasetMeta
        from recsys.experiments.training import trained

        path = ctx.out / "runs" / name
        metrics = trained(path, data, config, ctx, init_from=parent)
        rows = DatasetMeta.read(data).rows("train")
        return path, {"examples": rows * metrics["train"]["epochs"],
                      "seconds": metrics["train"]["seconds"]}

    def evaluate(self, ctx: Context, arm: str, day: date, run: Path, evaluated: Path,
                 spent: dict, read: list[Path]) -> dict:
        """One arm's next-day metrics on a day, as the per-day list keeps them (with the run's
        metrics under "metrics" for the summary)."""
        from recsys.eval.evaluate import run_metrics
        from recsys.run import Run

        metrics = run_metrics(Run(run), evaluated, EVALUATED,
                              ctx.out / "scores" / f"{arm}-{day}.parquet")
        ctx.log(f"{day} {arm}: next-day AUC {_auc(metrics['overall'], 'n/a')}, new users "
                f"{_auc(metrics['subsets']['zero_shot_user'], 'n/a')}, {spent['examples']:,} "
                f"examples trained")
        return {"day": str(day), "evaluated_on": str(day + timedelta(days=1)), "arm": arm,
                "run": str(run), "datasets": [str(p) for p in read],
                "overall": metrics["overall"], **{flag: metrics["subsets"][flag] for flag in NEW},
                "scenarios": metrics["scenarios"], **spent,
                "metrics": {**metrics, "train": {"examples_per_s": spent["examples"] /
                                                 max(spent["seconds"], 1e-9)}}}

    def summary(self, ctx: Context, runs: dict, per_day: list[dict], chosen: list[date], cfg,
                update_cfg) -> dict:
        from recsys.experiments.training import summarize

        results = summarize(runs, ctx, (*runs["update"][0]["scenarios"], "overall", *NEW),
                            self.name)
        totals = {arm: {key: sum(d[key] for d in per_day if d["arm"] == arm and d["day"] !=
                                 str(chosen[0])) for key in ("examples", "seconds")}
                  for arm in ARMS}
        results.update(dataset=str(ctx.out / "datasets"), model=ctx.options["model"],
                       repo=str(ctx.options["repo"]), start=str(chosen[0]), days=per_day,
                       retrain_every=ctx.options["retrain_every"], epochs=cfg.epochs,
                       totals=totals,
                       dense_lr={"update": update_cfg.dense_lr, "retrain": cfg.dense_lr},
                       examples_share=totals["update"]["examples"] /
                       max(totals["retrain"]["examples"], 1))
        return results

    def datasets(self, ctx: Context, results: dict) -> list[Path]:
        return [Path(p) for p in dict.fromkeys(p for d in results["days"]
                                               for p in d["datasets"])]

    def tables(self, results: dict) -> list[str]:
        return [auc_table(results),
                f"update trained {results['examples_share']:.1%} of retrain's examples"]

    def report(self, results: dict, path: Path) -> None:
        """The mean over days per column, then each day's next-day AUC."""
        rows = "\n".join(
            f"| {d['day']} | {d['evaluated_on']} | {d['arm']} | {_auc(d['overall'])} | "
            f"{_auc(d['zero_shot_user'])} | {_auc(d['zero_shot_item'])} | "
            f"{d['examples']:,} | {d['seconds']:.1f} |" for d in results["days"])
        totals = "\n".join(f"| {arm} | {t['examples']:,} | {t['seconds']:.1f} |"
                           for arm, t in results["totals"].items())
        write_text(f"""# Rolling evaluation

Model `{results['model']}` on `{results['repo']}`, from {results['start']}.
Each day d, *update* trains the model of day d-1 on day d alone and *retrain* a fresh model on
every day up to d (refit every {results['retrain_every']} day(s)), {results['epochs']} epoch(s)
each; both are evaluated on day d+1 (the "test rows" below are that day's). The chain starts
from the retrain run of the first day, so the means are over the days after it:
{results['seeds']}. zero_shot_user / zero_shot_item: the users and items of day d+1 never in
the log before it.

## Next-day AUC, mean ± std over days

{auc_table(results, 'auc')}

## Trained (the days after the start)

| arm | examples | seconds |
| --- | ---: | ---: |
{totals}

update trained {results['examples_share']:.1%} of retrain's examples.

## Each day

| day | evaluated on | arm | AUC | new users | new items | examples | seconds |
| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |
{rows}

![next-day AUC](rolling_auc.png)
""", path)

    def plot(self, results: dict, path: Path) -> None:
        """Next-day AUC over the days, per arm: overall (solid) and the day's new users
        (dashed)."""
        from recsys.eval.plots import plt, save

        fig, ax = plt.subplots(figsize=(9, 4.5))
        for i, arm in enumerate(results["totals"]):
            days = [d for d in results["days"] if d["arm"] == arm]
            x = [d["evaluated_on"] for d in days]
            for key, style in (("overall", "-"), ("zero_shot_user", "--")):
                y = [float("nan") if d[key]["auc"] is None else d[key]["auc"] for d in days]
                ax.plot(x, y, style, marker="o", color=f"C{i}", label=f"{arm} ({key})")
        ax.set_xlabel("evaluated on (the day after training)")
        ax.set_ylabel("AUC")
        ax.set_title(f"Rolling evaluation of {results['model']}: next-day AUC")
        ax.tick_params(axis="x", rotation=20)
        ax.legend(fontsize=8, frameon=False)
        save(fig, path)


def log_days(repo: Path) -> list[date]:
    """The days of the repo's log that have rows, in order."""
    from recsys.data.offline import connect, offline_dir, read_repo_meta
    from recsys.schema import EVENT_TIMESTAMP, INTERACTIONS

    con = connect(offline_dir(repo), read_repo_meta(repo).start_epoch)
    try:
        return [d for (d,) in con.execute(f"SELECT DISTINCT {EVENT_TIMESTAMP}::DATE AS d "
                                          f"FROM {INTERACTIONS} ORDER BY d").fetchall()]
    finally:
        con.close()


def rolled_days(repo: Path, model: str, start: str, end: str | None,
                retrain_every: int) -> tuple[list[date], list[date]]:
    """The days to roll over (each with the two after it in the log) and the log's days; a
    UsageError for a model or window the evaluation cannot replay."""
    from recsys.data.split import Window
    from recsys.models.registry import model_class

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
    return chosen, days


def _auc(cell: dict, missing: str = "-") -> str:
    return missing if cell["auc"] is None else f"{cell['auc']:.4f}"
