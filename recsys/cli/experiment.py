"""`recsys experiment ...`: models compared over seeds, and the quality gates."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from recsys.cli.common import BATCH_SIZE, CONFIG, DATASET, EPOCHS, FORCE, PRESET, SEEDS, \
    console, friendly, positive, print_error, workspace_preset
from recsys.experiments.catalog import EXPERIMENTS
from recsys.experiments.spec import Experiment, Option

experiment_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Experiments over models and seeds.")


def _option(o: Option) -> inspect.Parameter:
    flags = o.flags or (f"--{o.name.replace('_', '-')}",)
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=o.type,
                             default=typer.Option(o.default, *flags, help=o.help, min=o.min))


def _common(experiment: Experiment) -> list[inspect.Parameter]:
    """The options every experiment takes: on one dataset over seeds, its config, epochs and
    batch size, where to write and --force."""
    common = {"preset": (Optional[str], PRESET), "dataset": (Optional[Path], DATASET),
              "seeds": (int, SEEDS)} if experiment.on_dataset else {}
    common.update(config=(Optional[Path], CONFIG), epochs=(Optional[int], EPOCHS),
                  batch_size=(Optional[int], BATCH_SIZE),
                  out=(Optional[Path], typer.Option(None, "--out", help=f"Default "
                       f"{experiment.default_out('<preset>', {'model': '<model>'})}.")),
                  force=(bool, FORCE))
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                              default=default) for name, (kind, default) in common.items()]


def make_command(experiment: Experiment) -> None:
    """`recsys experiment NAME` from the experiment's spec: its options beside the common
    ones (an option of its own wins over a common one of the same name)."""
    own = [_option(o) for o in experiment.options]
    common = [p for p in _common(experiment) if p.name not in {o.name for o in own}]
    first = [p for p in common if p.name in ("preset", "dataset", "seeds")]
    params = first + own + [p for p in common if p not in first]

    def command(**given) -> None:
        from recsys.config import read_config
        from recsys.experiments.runner import run

        preset = dataset = None  # rolling builds its own datasets from --repo
        if experiment.on_dataset:
            preset = workspace_preset(given.pop("preset"))
            dataset = given.pop("dataset") or Path("datasets") / preset
        config, force, seeds = given.pop("config"), given.pop("force"), given.pop("seeds", 1)
        flags = {k: given.pop(k) for k in ("epochs", "batch_size")}
        out = given.pop("out") or experiment.default_out(preset, given)
        results = run(experiment, dataset, out, seeds, given,
                      read_config(config) if config is not None else {}, flags, force=force,
                      log=console.print, preset=preset)
        for table in experiment.tables(results):
            console.print(table, soft_wrap=True)
        console.print(f"report: {out / 'report.md'}, plot: {out / experiment.plot_file}")

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = experiment.about
    command.__name__ = f"experiment_{experiment.name.replace('-', '_')}"
    experiment_app.command(experiment.name)(friendly(command))


for _experiment in EXPERIMENTS.values():
    make_command(_experiment)


@experiment_app.command("gate")
@friendly
def experiment_gate(
    results: list[Path] = typer.Argument(
        ..., help="Experiment results: results.json files or the experiments' --out folders."),
    gates: Path = typer.Option(Path("benchmarks") / "quality_gates.json", "--gates",
                               help="Expected AUC per model and column, with a tolerance."),
    record: bool = typer.Option(False, "--record", help="Write the gates from these results "
                                "instead of checking them (a deliberate new baseline)."),
    tolerance: float = typer.Option(None, "--tolerance", callback=positive,
                                    help="With --record: the gates' tolerance (default 0.002)."),
    force: bool = FORCE,
) -> None:
    """Check experiment results against the quality gates; exits 1 naming every cell that
    moved beyond its tolerance."""
    from recsys.eval import gates as quality

    loaded = quality.load_results(results)
    if record:
        n, seeds = quality.record_file(loaded, gates, tolerance, force=force)
        console.print(f"recorded {n} gated cells over {seeds} seed(s) in {gates}")
        return
    cells = quality.check(loaded, quality.read_gates(gates))
    failed = [c for c in cells if not c.passed]
    for c in cells:
        console.print(c.line(), soft_wrap=True, highlight=False)
    console.print(f"{quality.verdict(cells)} ({gates})")
    for c in failed:
        print_error(f"gate failed: {c.line()}")
    if failed:
        raise typer.Exit(1)
