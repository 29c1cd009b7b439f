"""`recsys experiment ...`: models compared over seeds, and the quality gates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recsys.cli.common import BATCH_SIZE, CONFIG, DATASET, EPOCHS, FORCE, PRESET, SEEDS, \
    console, friendly, positive, print_error, workspace_preset

experiment_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Experiments over models and seeds.")


def _experiment_config(config: Optional[Path]) -> dict:
    from recsys.config import read_config

    return read_config(config) if config is not None else {}


def _names(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@experiment_app.command("rolling")
@friendly
def experiment_rolling(
    dataset_repo: Path = typer.Option(Path("feature_repo"), "--dataset-repo", "--repo",
                                      help="The feature repo whose log to roll over."),
    model: str = typer.Option(..., "--model", help="The model both arms train."),
    start: str = typer.Option(..., "--start", help="The first day (ISO date) to train on; "
                              "its next day is the first evaluated."),
    end: Optional[str] = typer.Option(None, "--end", help="The last day to train on "
                                      "(default: the last with two days after it)."),
    retrain_every: int = typer.Option(1, "--retrain-every", min=1,
                                      help="Refit the retrain arm every K days."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Epochs per run (one: no selection "
                               "on the evaluated day)."),
    batch_size: Optional[int] = BATCH_SIZE,
    update_dense_lr: Optional[float] = typer.Option(
        None, "--update-dense-lr", min=0.0, help="Adam's rate on the dense layers in the update "
        "arm (default: a tenth of a fresh run's, see recsys.train.rolling)."),
    seed: int = typer.Option(0, "--seed", min=0),
    memory_gb: Optional[float] = typer.Option(None, "--memory-gb",
                                              help="The dataset builds' memory budget (GB)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Default runs/rolling-<model>."),
    force: bool = FORCE,
) -> None:
    """Update yesterday's model on today's data, or retrain on every day: next-day AUC per day,
    overall, per scenario and on the day's new users and items; table, report and plot."""
    from recsys.eval.report import auc_table
    from recsys.train.rolling import rolling

    out = out or Path("runs") / f"rolling-{model}"
    results = rolling(dataset_repo, out, model, start, end, retrain_every, epochs, batch_size,
                      seed, memory_gb, force=force, log=console.print,
                      update_dense_lr=update_dense_lr)
    console.print(auc_table(results), soft_wrap=True)
    console.print(f"update trained {results['examples_share']:.1%} of retrain's examples")
    console.print(f"report: {out / 'report.md'}, plot: {out / 'rolling_auc.png'}")


@experiment_app.command("multi-scenario")
@friendly
def experiment_multi_scenario(
    preset: Optional[str] = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    models: Optional[str] = typer.Option(
        None, "--models", help="Models to compare, a,b,c (default: every multi-scenario "
        "model: dnn, dnn_mixed, shared_bottom, mmoe, ple, star, pepnet, m2m)."),
    backbones: str = typer.Option("mlp", "--backbones", help="Run each model on these "
                                  "bottoms: mlp | dcn | mlp,dcn."),
    config: Optional[Path] = CONFIG,
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Default runs/multi-scenario-<preset>."),
    force: bool = FORCE,
) -> None:
    """Train the multi-scenario models over K seeds; write the report, the paired gains over
    dnn and the plot."""
    from recsys.eval.report import auc_table, gain_table
    from recsys.train.experiment import multi_scenario

    preset = workspace_preset(preset)
    out = out or Path("runs") / f"multi-scenario-{preset}"
    results = multi_scenario(dataset or Path("datasets") / preset, out, seeds=seeds,
                             models=_names(models), backbones=_names(backbones) or ("mlp",),
                             file=_experiment_config(config),
                             flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                             log=console.print)
    console.print(auc_table(results), soft_wrap=True)
    if results.get("gains"):
        console.print(gain_table(results), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'per_scenario_auc.png'}")


@experiment_app.command("cold-start")
@friendly
def experiment_cold_start(
    preset: Optional[str] = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    multi_scenario_results: Optional[Path] = typer.Option(
        None, "--multi-scenario-results",
        help="Its best model joins the comparison (default "
             "runs/multi-scenario-<preset>/results.json; mmoe when there is none)."),
    config: Optional[Path] = CONFIG,
    out: Optional[Path] = typer.Option(None, "--out", help="Default runs/cold-start-<preset>."),
    force: bool = FORCE,
) -> None:
    """Compare dropoutnet, metaemb, maml and melu with dnn_mixed and the best multi-scenario
    model on zero-shot / few-shot users and items, plus the warm-up curve of new items."""
    from recsys.eval.report import auc_table
    from recsys.train.cold_start import best_multi_scenario, cold_start

    preset = workspace_preset(preset)
    out = out or Path("runs") / f"cold-start-{preset}"
    found = multi_scenario_results or Path("runs") / f"multi-scenario-{preset}" / "results.json"
    best = best_multi_scenario(found)
    if best is None:
        best = "mmoe"
        console.print(f"no multi-scenario results at {found}: comparing with {best} (pass "
                      f"--multi-scenario-results to pick the best model of an experiment)")
    results = cold_start(dataset or Path("datasets") / preset, out, seeds=seeds,
                         baselines=("dnn_mixed", best), file=_experiment_config(config),
                         flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                         log=console.print)
    console.print(auc_table(results["subsets"]), soft_wrap=True)
    console.print(auc_table(results["warmup"]), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'cold_start.png'}")


@experiment_app.command("multi-modal")
@friendly
def experiment_multi_modal(
    preset: Optional[str] = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    image: bool = typer.Option(False, "--image",
                               help="Also train each model with text and image vectors."),
    config: Optional[Path] = CONFIG,
    out: Optional[Path] = typer.Option(None, "--out", help="Default runs/multi-modal-<preset>."),
    force: bool = FORCE,
) -> None:
    """dnn_mixed and mmoe with and without text vectors: per scenario and on zero-shot users
    and items, with the paired gain."""
    from recsys.eval.report import auc_table, gain_table
    from recsys.train.multi_modal import multi_modal

    preset = workspace_preset(preset)
    out = out or Path("runs") / f"multi-modal-{preset}"
    results = multi_modal(dataset or Path("datasets") / preset, out, seeds=seeds, image=image,
                          file=_experiment_config(config),
                          flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                          log=console.print)
    console.print(auc_table(results), soft_wrap=True)
    console.print(gain_table(results), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'multi_modal.png'}")


@experiment_app.command("history")
@friendly
def experiment_history(
    preset: Optional[str] = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    models: Optional[str] = typer.Option(
        None, "--models", help="Models read with and without the history, a,b (default "
        "mmoe); din joins them."),
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    config: Optional[Path] = CONFIG,
    out: Optional[Path] = typer.Option(None, "--out", help="Default runs/history-<preset>."),
    force: bool = FORCE,
) -> None:
    """Each model without the user's history, with it (target attention, mean) and din: per
    scenario and on few-shot / zero-shot users, with the paired gains."""
    from recsys.eval.report import auc_table, gain_table
    from recsys.train.history import MODELS, history

    preset = workspace_preset(preset)
    out = out or Path("runs") / f"history-{preset}"
    results = history(dataset or Path("datasets") / preset, out, seeds=seeds,
                      models=_names(models) or MODELS, file=_experiment_config(config),
                      flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                      log=console.print)
    console.print(auc_table(results), soft_wrap=True)
    console.print(gain_table(results), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'history.png'}")


@experiment_app.command("retrieval")
@friendly
def experiment_retrieval(
    preset: Optional[str] = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    text: bool = typer.Option(False, "--text", help="Also train each arm with text vectors."),
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    config: Optional[Path] = CONFIG,
    out: Optional[Path] = typer.Option(None, "--out", help="Default runs/retrieval-<preset>."),
    force: bool = FORCE,
) -> None:
    """two_tower with and without the user's history, each run indexed: Recall@K and NDCG@K
    of the test clicks beside popularity (and the generator's ceiling on generated data)."""
    from recsys.eval.report import auc_table
    from recsys.train.retrieval import retrieval

    preset = workspace_preset(preset)
    out = out or Path("runs") / f"retrieval-{preset}"
    results = retrieval(dataset or Path("datasets") / preset, out, seeds=seeds, text=text,
                        file=_experiment_config(config),
                        flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                        log=console.print)
    console.print(auc_table(results), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'retrieval.png'}")


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
