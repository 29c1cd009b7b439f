"""An experiment as a spec: the arms it trains (typed `Arm`s), what each arm is paired with,
the columns of its tables, its own options and its report. `runner.run` does the rest alike
for every experiment: trains (reusing finished runs), summarizes, pairs, records the datasets'
fingerprints and writes results.json, report.md and the plot; `recsys experiment NAME` is made
from the spec by one factory (cli/experiment.py).

The module is light to import (the CLI builds its commands from the specs without torch):
what an experiment needs to run is imported where it runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recsys.config import Arm
from recsys.experiments.context import Context


@dataclass(frozen=True)
class Option:
    """An option of one experiment beyond the common ones (dataset, seeds, config, epochs, batch
    size, out, force): its Python name, its type, default and help; `flags` when the command
    line spells it otherwise than --name-with-dashes; `min` for numbers."""

    name: str
    type: Any
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    min: float | None = None


class Experiment:
    """The base of every experiment; a subclass declares what differs."""

    name: str = ""  # the command and the results' "experiment"
    about: str = ""  # the command's help
    plot_file: str = ""  # the plot's name in the experiment's folder
    options: tuple[Option, ...] = ()
    on_dataset: bool = True  # reads one dataset (--preset / --dataset) over --seeds seeds

    def arms(self, ctx: Context) -> dict[Arm, Arm | None]:
        """Each arm -> the arm its paired gain is over (None: none)."""
        raise NotImplementedError

    def columns(self, first: dict) -> tuple[str, ...]:
        """The tables' columns from one run's metrics: each scenario and overall."""
        return (*first["scenarios"], "overall")

    def collect(self, ctx: Context) -> dict:
        """The experiment's results (results.json without the datasets): by default its arms
        trained over the seeds, summarized per column, with the paired gains."""
        from recsys.experiments import training

        paired = self.arms(ctx)
        runs = training.train_arms(ctx, tuple(paired))
        results = training.summarize(runs, ctx, self.columns(next(iter(runs.values()))[0]),
                                   self.name)
        results["arms"] = {a.name: asdict(a) for a in paired}  # typed, for a later reader
        pairs = [(a.name, b.name) for a, b in paired.items() if b is not None]
        if pairs:
            results["gains"] = training.paired_gains(runs, pairs, results["columns"])
        return results

    def datasets(self, ctx: Context, results: dict) -> list[Path]:
        """The datasets the results come from, whose fingerprints they record."""
        return [ctx.dataset]

    def default_out(self, preset: str, options: dict) -> Path:
        return Path("runs") / f"{self.name}-{preset}"

    def report(self, results: dict, path: Path) -> None:
        raise NotImplementedError

    def plot(self, results: dict, path: Path) -> None:
        raise NotImplementedError

    def tables(self, results: dict) -> list[str]:
        """What the command prints: its tables, then any line a reader needs."""
        from recsys.eval.report import auc_table, gain_table

        return [auc_table(results), *([gain_table(results)] if results.get("gains") else [])]


def listed(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """A comma list of the command line ("a,b") or a tuple of the library, as a tuple."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value or ())
