"""`recsys tune`: Optuna's TPE over a model's training settings, each trial a normal run folder,
hopeless trials pruned (median of the trials before at the same epoch), the study kept in its
folder (SQLite) so a killed tune resumes, trials run in parallel processes.

    OUT/study.db          the Optuna study (resumed by the same command)
    OUT/trial-<n>/        each trial's run folder (recsys train's)
    OUT/best.yaml         the best trial's config: `recsys train --config OUT/best.yaml`
    OUT/tune.json         every trial: number, state, parameters, validation AUC, epochs
    OUT/trials.png        validation AUC by trial and the best so far

Trials are chosen on validation AUC alone; the best trial's test AUC is reported beside it,
never used."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from recsys.config import FILE_KEYS, TrainConfig, resolve
from recsys.errors import OutputExistsError, UsageError
from recsys.files import write_json, write_text

STUDY = "study.db"
# the space every model shares: rates, batch, width, regularization (TrainConfig / ModelConfig)
SPACE = {"dense_lr": ("log", 1e-4, 1e-2), "embedding_lr": ("log", 0.005, 0.3),
         "batch_size": ("choice", (256, 512, 1024, 2048)),
         "embedding_dim": ("choice", (8, 16, 32)), "dropout": ("float", 0.0, 0.5),
         "weight_decay": ("log", 1e-7, 1e-3)}
MODEL_KEYS = ("embedding_lr", "embedding_dim", "dropout")  # the rest are the run's
# a trial is pruned only after this many trials finished and from this epoch on (earlier, the
# validation AUC of a slow starter says little)
PRUNE_AFTER_TRIALS, PRUNE_AFTER_EPOCHS = 10, 3


@dataclass(frozen=True)
class Tune:
    dataset: Path
    out: Path
    base: dict  # the config file's keys and the flags (model included)
    trials: int = 20
    timeout: float | None = None  # seconds for the whole tune
    jobs: int = 1  # trials at once, each in its own process
    seed: int = 0

    def check(self) -> None:
        if self.trials < 1:
            raise UsageError(f"trials {self.trials}: must be at least 1", fields="trials")
        if self.jobs < 1:
            raise UsageError(f"jobs {self.jobs}: must be at least 1", fields="jobs")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"timeout {self.timeout}: must be positive", fields="timeout")
        resolve(self.base, {}, where="the config")  # a bad base config fails before any trial


def trial_config(base: dict, params: dict) -> TrainConfig:
    """The base config with a trial's parameters in their places."""
    run = {k: v for k, v in params.items() if k not in MODEL_KEYS}
    model = {k: v for k, v in params.items() if k in MODEL_KEYS}
    return resolve(base, run, model, "the trial")


def default_params(base: dict) -> dict:
    """The base config's values of the searched keys (the defaults where it says nothing),
    each held to the space: a value below a range's low end takes the low end (weight_decay
    0 is 1e-7), a choice the space lacks is left to the sampler."""
    cfg = resolve(base, {}, where="the config")
    out = {}
    for k, (kind, *args) in SPACE.items():
        value = getattr(cfg.model_config if k in MODEL_KEYS else cfg, k)
        if kind == "choice":
            if value in args[0]:
                out[k] = value
        else:
            out[k] = min(max(value, args[0]), args[1])
    return out


def _suggest(trial) -> dict:
    params = {}
    for name, (kind, *args) in SPACE.items():
        if kind == "log":
            params[name] = trial.suggest_float(name, *args, log=True)
        elif kind == "float":
            params[name] = trial.suggest_float(name, *args)
        else:
            params[name] = trial.suggest_categorical(name, list(args[0]))
    return params


def _study(tune: Tune, worker: int = 0):
    """The study in its folder; each process's sampler its own seed (one seed would have the
    processes propose the same trials)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name="tune", storage=f"sqlite:///{tune.out / STUDY}", direction="maximize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=tune.seed + worker),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS,
                                           n_warmup_steps=PRUNE_AFTER_EPOCHS))


def _objective(tune: Tune):
    import optuna

    from recsys.train.loop import train

    def objective(trial) -> float:
        cfg = trial_config(tune.base, _suggest(trial))
        out = tune.out / f"trial-{trial.number}"

        def report(epoch: int, val_auc: float) -> None:
            trial.report(val_auc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        metrics = train(tune.dataset, out, cfg, force=True, progress=False,
                        log=lambda *a, **k: None, on_epoch=report)
        trial.set_user_attr("run", str(out))
        trial.set_user_attr("test_auc", metrics["overall"]["auc"])
        trial.set_user_attr("epochs", metrics["train"]["epochs"])
        return max(h["val_auc"] for h in metrics["train"]["history"])

    return objective


def _worker(tune: Tune, deadline: float | None, worker: int = 0) -> None:
    """One process's share of the trials: until the study holds `trials` finished ones (or
    the deadline); torch on one thread, the cores go to the processes."""
    import optuna
    import torch

    torch.set_num_threads(1)
    study = _study(tune, worker)
    objective = _objective(tune)
    while True:
        done = [t for t in study.get_trials(deepcopy=False)
                if t.state in (optuna.trial.TrialState.COMPLETE,
                               optuna.trial.TrialState.PRUNED)]
        if len(done) >= tune.trials or (deadline and time.time() > deadline):
            return
        study.optimize(objective, n_trials=1, catch=())


def tune(t: Tune, force: bool = False, log=print) -> dict:
    """Run (or resume) the study to `trials` finished trials; write best.yaml, tune.json and
    the plot; the summary."""
    import optuna

    t.check()
    if (t.out / "tune.json").is_file() and not force:
        raise OutputExistsError(f"{t.out} holds a finished tune; pass force=True to run it "
                                f"again or choose another out", fields=("force", "out"))
    if force and t.out.exists():
        import shutil

        shutil.rmtree(t.out)
    t.out.mkdir(parents=True, exist_ok=True)
    study = _study(t)
    for stale in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):  # killed
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # its run is started anew
    deadline = time.time() + t.timeout if t.timeout else None
    started = time.time()
    if not any(tr.state.is_finished() and tr.state != optuna.trial.TrialState.FAIL
               for tr in study.get_trials(deepcopy=False)):
        # the defaults first, here, before the processes: two processes on SQLite would both
        # take an enqueued trial
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            study.enqueue_trial(default_params(t.base))
        study.optimize(_objective(t), n_trials=1, catch=())
    if t.jobs == 1:
        _worker(t, deadline)
    else:  # each process its own torch: trials side by side on the cores
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(t, deadline, w)) for w in range(t.jobs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise UsageError(f"a trial process of {t.out} failed (exit codes "
                             f"{[p.exitcode for p in procs]}); run the same command to resume")
    return summarize(t, _study(t), time.time() - started, log)


def summarize(t: Tune, study, seconds: float, log=print) -> dict:
    import optuna

    trials = [{"number": tr.number, "state": tr.state.name, "params": tr.params,
               "val_auc": tr.value if tr.state == optuna.trial.TrialState.COMPLETE else
               max(tr.intermediate_values.values(), default=None),
               "epochs": tr.user_attrs.get("epochs", len(tr.intermediate_values)),
               "test_auc": tr.user_attrs.get("test_auc"), "run": tr.user_attrs.get("run")}
              for tr in study.get_trials(deepcopy=False)]
    complete = [tr for tr in trials if tr["state"] == "COMPLETE"]
    if not complete:
        raise UsageError(f"{t.out}: no trial finished; give more --trials or --timeout")
    best = max(complete, key=lambda tr: tr["val_auc"])
    cfg = trial_config(t.base, best["params"])
    keep = {k: v for k, v in cfg.to_json().items() if k in FILE_KEYS}
    write_text(yaml.safe_dump(keep, sort_keys=False), t.out / "best.yaml")
    result = {"dataset": str(t.dataset), "base": t.base, "trials": trials, "best": best,
              "seconds": seconds, "space": {k: list(v) for k, v in SPACE.items()}}
    write_json(result, t.out / "tune.json")
    _plot(trials, t.out / "trials.png")
    return result


def _plot(trials: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for state, color in (("COMPLETE", "tab:blue"), ("PRUNED", "tab:gray")):
        xs = [tr["number"] for tr in trials if tr["state"] == state and tr["val_auc"]]
        ys = [tr["val_auc"] for tr in trials if tr["state"] == state and tr["val_auc"]]
        ax.scatter(xs, ys, color=color, label=state.lower(), s=18)
    best, line = float("-inf"), []
    for tr in sorted(trials, key=lambda tr: tr["number"]):
        if tr["state"] == "COMPLETE":
            best = max(best, tr["val_auc"])
        line.append((tr["number"], best if best > float("-inf") else None))
    ax.step([x for x, y in line if y], [y for x, y in line if y], where="post",
            color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation AUC")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
