"""The `recsys` command line. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Callable, Optional

import inspect
import typer
from rich.console import Console

from recsys.errors import RecsysError, UsageError, causes, os_error_message, \
    out_of_memory_message
from recsys.memory import DEFAULT_MEMORY_GB
from recsys.schema import ITEM_ID, USER_ID
from recsys.models.config import ModelConfig
from recsys.serve.settings import Settings
from recsys.storage import read_json
from recsys.train.config import MAX_SEED, PlanRequest, TrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Feature-store-centric multi-scenario, multi-modal CTR platform.")
console = Console()


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:
        raise typer.BadParameter("Input should be greater than 0")
    return value


# A flag's range is declared with the flag (min=, _positive): click refuses a value outside it
# before a command imports torch and TorchRec (seconds); the library still checks the resolved
# values, which a --config file may also set.
REPO = typer.Option(Path("feature_repo"), "--repo", help="Feast feature repo folder.")
FORCE = typer.Option(False, "--force", help="Replace existing output.")
# None: not given, so a --config file's value (or the default) holds
EPOCHS = typer.Option(None, "--epochs", min=1, help=f"Default {TrainConfig.epochs}.")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1,
                          help=f"Default {TrainConfig.batch_size}.")
CONFIG = typer.Option(None, "--config", help="YAML file of the run's hyper-parameters "
                      "(shaped like a run's config.json; flags win).")
# experiments
PRESET = typer.Option("small", "--preset", help="Uses datasets/<preset>.")
DATASET = typer.Option(None, "--dataset", help="Overrides --preset.")
SEEDS = typer.Option(1, "--seeds", min=1, help="Seeds 0..K-1.")
TEXT = typer.Option(False, "--text", help="Add the text vectors (`recsys encode-text`).")
IMAGE = typer.Option(False, "--image", help="Add the item image vectors.")


def _friendly(fn: Callable) -> Callable:
    """Print a RecsysError, an OS error the user can act on (full disk, read-only folder,
    a file in a folder's place) or running out of memory as one line and exit 2, without a
    traceback."""

    flags = _flags_of(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecsysError as e:
            message = _as_flags(str(e), e.fields, flags)
        except OSError as e:
            message = os_error_message(e)
            if message is None:
                raise
        except Exception as e:
            if not _out_of_memory(e):
                raise
            message = out_of_memory_message(e)
        _print_error(message)
        raise typer.Exit(2) from None

    return wrapper


def _flags_of(fn: Callable) -> dict[str, str]:
    """A command's parameters by their Python names -> their flags (batch_size -> --batch-size)."""
    return {name: max(p.default.param_decls, key=len)
            for name, p in inspect.signature(fn).parameters.items()
            if isinstance(p.default, typer.models.OptionInfo) and p.default.param_decls}


def _as_flags(message: str, fields: tuple[str, ...], flags: dict[str, str]) -> str:
    """The library names parameters by their Python names (`batch_size`, a switch as
    `force=True`); a person at the command line reads them as this command's flags."""
    for name, flag in flags.items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=True\b", flag, message)
        if name in fields:
            message = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w./-])", flag, message)
    return message


class _LineAwareStderr:
    """sys.stderr that knows whether its last write left a line open (a progress bar redraws
    its line without ending it), so that an error still starts a line of its own."""

    def __init__(self, stream):
        self._stream, self.line_open = stream, False

    def write(self, text: str) -> int:
        if text:
            self.line_open = not text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _out_of_memory(e: Exception) -> bool:
    """A MemoryError, or DuckDB out of memory under its limit (duckdb only where loaded)."""
    duckdb = sys.modules.get("duckdb")
    return isinstance(e, MemoryError) or (duckdb is not None and
                                          isinstance(e, duckdb.OutOfMemoryException))


def _print_error(message: str) -> None:
    """The one error line: after the bars a failure left open, on a line of its own, last."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    start = "\n" if getattr(sys.stderr, "line_open", False) else ""
    sys.stderr.write(f"{start}error: {message}\n")
    sys.stderr.flush()


def _workers_default() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _print_feast_reset(meta: dict) -> None:
    if meta.get("feast_reset"):
        console.print(f"replaced old data; removed Feast state {', '.join(meta['feast_reset'])}: "
                      f"run `feast apply` and `feast materialize-incremental` again")


@app.command()
@_friendly
def generate(
    preset: str = typer.Option("small", "--preset",
                               help="tiny | small | medium | large | full"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED,
                             help="Random seed: same seed, same data."),
    repo: Path = REPO,
    workers: int = typer.Option(_workers_default(), "--workers", help="Worker processes."),
    rows: Optional[int] = typer.Option(None, "--rows", help="Override the preset's rows."),
    chunks: Optional[str] = typer.Option(
        None, "--chunks", help="FIRST:END: write only these impression chunks, into the "
                               "repo's staging folder (fan a large preset out; a plain "
                               "generate then assembles)."),
    force: bool = FORCE,
) -> None:
    """Generate synthetic AntM2C data into the repo's offline store (data/offline/)."""
    from recsys.data.generate import generate as run
    from recsys.data.generate import generate_chunks, parse_chunks
    from recsys.data.presets import get_preset
    from recsys.data.summary import print_summary

    the_preset = get_preset(preset, rows)
    if chunks is not None:
        done = generate_chunks(repo, the_preset, parse_chunks(chunks, the_preset), seed=seed,
                               workers=workers)
        console.print(f"chunks {chunks}: wrote {done['written']} of {done['chunks']} "
                      f"({done['rows']:,} rows; the others were there) to {done['staging']}; "
                      f"when every chunk is written, `recsys generate` with the same --preset, "
                      f"--rows and --seed assembles the store", soft_wrap=True)
        return
    meta = run(repo, the_preset, seed=seed, workers=workers, force=force)
    print_summary(meta, console)
    console.print(f"offline store: {repo / 'data' / 'offline'}")
    _print_feast_reset(meta)


@app.command("encode-text")
@_friendly
def encode_text(
    repo: Path = REPO,
    model: Optional[Path] = typer.Option(
        None, "--model", help="Local sentence-transformers folder (default: the bundled "
                              "all-MiniLM-L6-v2)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Texts per encoder batch."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    dim: int = typer.Option(32, "--dim", help="PCA size of the stored vectors (0: the "
                                              "model's own size)."),
    force: bool = FORCE,
) -> None:
    """Encode user and item text into vector feature views (each distinct text once, cached)."""
    from recsys.text.encode import encode_text as run

    stats = run(repo, model, batch_size=batch_size, device=device, dim=dim, force=force,
                log=console.print)
    speed = f", {stats['texts_per_s']:,.0f} texts/s" if stats["texts_per_s"] else ""
    console.print(f"encoded {stats['encoded']:,} new texts in {stats['seconds']:.1f} s{speed}; "
                  f"{stats['cached']:,} from the cache; de-duplication saved "
                  f"{stats['saved_by_dedup']:.1%} of {stats['text_values']:,} text values")
    console.print(f"vectors: {stats['dim']} values each (PCA keeps "
                  f"{stats['explained_variance']:.1%} of the variance) in "
                  f"{repo / 'data' / 'offline'}/{{user,item}}_text_vec; cache {stats['cache']}")
    console.print(f"serve them online: `cd {repo} && feast apply && feast materialize "
                  f"--disable-event-timestamp -v user_text_vec -v item_text_vec` (an incremental "
                  f"run would skip them: their timestamps are the snapshots'); train on them "
                  f"after `recsys build-dataset --force`")


@app.command("build-dataset")
@_friendly
def build_dataset(
    repo: Path = REPO,
    out: Optional[Path] = typer.Option(None, "--out", help="Output (default datasets/<preset>)."),
    feature_service: Optional[str] = typer.Option(
        None, "--feature-service", help="Feast feature service to join (default: the repo "
                                        "schema's default_service)."),
    memory_gb: float = typer.Option(DEFAULT_MEMORY_GB, "--memory-gb",
                                    help="Memory budget of the join (GB); DuckDB spills "
                                    "beyond it."),
    partition_rows: Optional[int] = typer.Option(
        None, "--partition-rows", help="Most rows one point-in-time join takes (default: what "
        "--memory-gb allows)."),
    engine: str = typer.Option("duckdb", "--engine",
                               help="duckdb (one machine) | spark (Feast's Spark offline "
                               "store, master and settings from the repo's config)."),
    split: str = typer.Option("auto", "--split", help="How validation and test are cut off: "
                              "auto | days | dates | quantiles (auto picks days or quantiles "
                              "for the span of the data and prints what it chose)."),
    val_days: Optional[int] = typer.Option(None, "--val-days",
                                           help="--split days: validation days (default 1)."),
    test_days: Optional[int] = typer.Option(None, "--test-days",
                                            help="--split days: test days (default 1)."),
    val_from: Optional[str] = typer.Option(None, "--val-from",
                                           help="--split dates: validation from (ISO date)."),
    test_from: Optional[str] = typer.Option(None, "--test-from",
                                            help="--split dates: test from (ISO date)."),
    shares: Optional[str] = typer.Option(None, "--shares", help="--split quantiles: percent "
                                         "of the rows in train/val/test (default 80/10/10)."),
    force: bool = FORCE,
) -> None:
    """Build train / val / test sets with Feast's point-in-time join, partition by partition
    (a killed build resumes where it stopped)."""
    from recsys.dataset.build import build_dataset as run
    from recsys.dataset.build import default_out
    from recsys.dataset.split import split_spec

    spec = split_spec(split, val_days=val_days, test_days=test_days, val_from=val_from,
                      test_from=test_from, shares=shares)
    out = out or default_out(repo)
    info = run(repo, out, force=force, service_name=feature_service, memory_gb=memory_gb,
               engine=engine, partition_rows=partition_rows, split_spec=spec)
    sizes = ", ".join(f"{s} {v['rows']:,}" for s, v in info["splits"].items())
    console.print(f"split: {info['split']['how']}; validation from "
                  f"{info['split']['val_from']}, test from {info['split']['test_from']}")
    console.print(f"dataset {out}: {sizes} rows, {len(info['columns'])} columns, "
                  f"{info['build']['partitions']} partition(s) on {engine}")


@app.command()
@_friendly
def summary(
    repo: Path = REPO,
    dataset: Optional[Path] = typer.Option(None, "--dataset",
                                           help="Built dataset (default datasets/<preset>)."),
) -> None:
    """Print what was generated and what was built."""
    from recsys.data.store import offline_dir, read_repo_meta
    from recsys.data.summary import print_import, print_summary
    from recsys.dataset.build import default_out
    from recsys.dataset.meta import DATASET_META

    meta = read_repo_meta(repo)
    if "import" in meta:  # what was read, what each column became, the maps
        print_import(meta, offline_dir(repo), console)
    else:
        print_summary(meta, console)
    dataset = dataset or default_out(repo, meta)
    if (dataset / DATASET_META).is_file():
        info = read_json(dataset / DATASET_META,
                         "build the dataset again with `recsys build-dataset --force`")
        for split, v in info["splits"].items():
            console.print(f"{dataset}/{split}: {v['rows']:,} rows in {v['parts']} part(s)")
    else:
        console.print(f"no dataset at {dataset}: run `recsys build-dataset`")


@app.command()
@_friendly
def train(
    model: Optional[str] = typer.Option(None, "--model", help="dnn | dnn_mixed | shared_bottom "
                                        "| mmoe | ple | star | pepnet | m2m | dropoutnet | "
                                        "metaemb | maml | melu (or `model:` in --config)"),
    dataset: Optional[Path] = typer.Option(None, "--dataset",
                                           help="Dataset folder (default datasets/small)."),
    config: Optional[Path] = CONFIG,
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=MAX_SEED,
                                       help=f"Default {TrainConfig.seed}."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<model>)."),
    text: bool = TEXT,
    image: bool = IMAGE,
    fusion: Optional[str] = typer.Option(None, "--fusion",
                                         help="How vectors join the IDs: concat | gated "
                                              f"(default {ModelConfig.fusion})."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="The bottom of the model: "
                                           "mlp (none) | dcn (DCN-v2 cross layers); default "
                                           f"{ModelConfig.backbone}."),
    user_rows: Optional[int] = typer.Option(
        None, "--user-rows", min=1, help="Hash raw user IDs into this many rows (IDs of any size; "
                                  "collisions measured in metrics.json)."),
    item_rows: Optional[int] = typer.Option(None, "--item-rows", min=1,
                                             help="The same for items."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes (torchrun); >1 shards the "
                              "embedding tables with TorchRec DistributedModelParallel."),
    device: str = typer.Option("cpu", "--device", help="cpu (gloo) | cuda (NCCL, one GPU "
                               "per process)."),
    checkpoint_every: Optional[int] = typer.Option(
        None, "--checkpoint-every", min=0, help="Also checkpoint every N steps inside an epoch "
        "(0, the default: at epoch ends only); a resumed run replays the epoch's batches from "
        "there."),
    force: bool = FORCE,
) -> None:
    """Train one model; resumes an interrupted run in the same --out."""
    from recsys.dataset.meta import read_dataset_meta

    dataset = dataset or Path("datasets/small")
    read_dataset_meta(dataset)  # a missing dataset is refused before torch is imported

    from recsys.eval.report import metrics_table
    from recsys.train import distributed
    from recsys.train.config import read_config, resolve
    from recsys.train.loop import train as run

    file = read_config(config, model) if config is not None else {}
    if model is None and "model" not in file:
        raise UsageError("missing --model: pass it, or `model:` in a --config file")
    modalities = [m for m, on in (("text", text), ("image", image)) if on]
    hashed_rows = {n: r for n, r in ((USER_ID, user_rows), (ITEM_ID, item_rows))
                   if r is not None}
    cfg = resolve(file, {"model": model, "epochs": epochs, "batch_size": batch_size,
                         "seed": seed, "checkpoint_every": checkpoint_every,
                         "modalities": modalities or None, "hashed_rows": hashed_rows or None},
                  {"fusion": fusion, "backbone": backbone},
                  f"--config {config}" if config else "the flags")
    out = out or Path("runs") / cfg.name
    distributed.check_device(device)
    if nproc < 1:
        raise UsageError(f"--nproc {nproc}: need at least one process")
    if (nproc > 1 or device == "cuda") and not distributed.under_torchrun():
        # check here what would fail in every process, then start them
        distributed.check_shardable(cfg.model, nproc, cfg.batch_size)
        args = sys.argv[sys.argv.index("train") + 1:]
        keep = [a for i, a in enumerate(args) if not a.startswith("--nproc")
                and not (i and args[i - 1] == "--nproc")]
        raise typer.Exit(distributed.launch(nproc, keep))
    ranks = distributed.Ranks.start(device) if distributed.under_torchrun() else \
        distributed.Ranks()
    try:
        metrics = run(dataset, out, cfg, force=force, log=console.print, ranks=ranks)
    finally:
        ranks.stop()
    if ranks.main:
        console.print(metrics_table(metrics), soft_wrap=True)
        for name, h in metrics["hashing"].items():
            console.print(f"{name}: {h['distinct_ids']:,} distinct IDs hashed into "
                          f"{h['rows']:,} rows; {h['colliding_share']:.2%} share a row "
                          f"(uniform hashing: {h['expected_share']:.2%})", soft_wrap=True)
        console.print(f"metrics: {out / 'metrics.json'}")


@app.command()
@_friendly
def plan(
    preset: str = typer.Option(PlanRequest.preset, "--preset",
                               help="ID scale: tiny | small | medium | full"),
    world_size: int = typer.Option(PlanRequest.world_size, "--world-size", min=1,
                                   help="Ranks (GPUs or processes)."),
    device: str = typer.Option(PlanRequest.device, "--device", help="cuda | cpu"),
    memory_gb: float = typer.Option(PlanRequest.memory_gb, "--memory-gb", callback=_positive,
                                    help="Memory per rank (GPU memory on cuda, host memory on "
                                    "cpu)."),
    dim: int = typer.Option(PlanRequest.dim, "--dim", min=1, help="Embedding dimension."),
    dtype: str = typer.Option(PlanRequest.dtype, "--dtype", help="Table storage: fp32 | fp16"),
    uvm: bool = typer.Option(PlanRequest.uvm, "--uvm", help="cuda: allow tables in host memory "
                             "behind a GPU cache."),
    host_memory_gb: float = typer.Option(PlanRequest.host_memory_gb, "--host-memory-gb",
                                         callback=_positive,
                                         help="Host memory per rank for --uvm."),
    batch_size: int = typer.Option(PlanRequest.batch_size, "--batch-size", min=1,
                                   help="Batch per rank."),
    model: str = typer.Option(PlanRequest.model, "--model"),
) -> None:
    """Plan the sharding of a preset's tables with TorchRec's planner (meta device, no memory
    used): the plan, bytes per rank and whether it fits. Exits 1 when it does not."""
    from recsys.eval.report import plan_table
    from recsys.train.plan import summary

    req = PlanRequest(preset=preset, world_size=world_size, device=device, memory_gb=memory_gb,
                      dim=dim, dtype=dtype, uvm=uvm, host_memory_gb=host_memory_gb,
                      batch_size=batch_size, model=model)
    req.check()
    report = summary(req)
    if "remedies" in report:  # they name the request's fields
        flags = _flags_of(plan.__wrapped__)
        report["remedies"] = [_as_flags(r, tuple(flags), flags) for r in report["remedies"]]
    console.print(plan_table(report), soft_wrap=True)
    if not report["fits"]:
        raise typer.Exit(1)


@app.command()
@_friendly
def serve(
    run: Path = typer.Option(..., "--run", help="A finished run folder (runs/<name>)."),
    repo: Path = REPO,
    host: str = typer.Option(Settings.host, "--host", help="Address to bind (0.0.0.0: every "
                             "interface)."),
    port: int = typer.Option(Settings.port, "--port", min=1, max=65535),
    workers: int = typer.Option(Settings.workers, "--workers", min=1,
                                help="Server processes, each with the model and its caches."),
    refresh_seconds: float = typer.Option(
        Settings.refresh_seconds, "--refresh-seconds", min=0, help="How often the item cache "
        "checks for a new materialization of the online store (0: never)."),
) -> None:
    """Serve a trained run: POST /score, GET /health, /metadata, /metrics."""
    from recsys.run import Run

    settings = Settings(str(run), str(repo), refresh_seconds, host, port, workers)
    settings.check()
    Run(run).check_trained()  # before the server's imports: a wrong --run answers at once
    from recsys.data.store import check_repo
    from recsys.serve.server import serve as run_server

    check_repo(repo)
    run_server(settings, started=console.print)


experiment_app = typer.Typer(no_args_is_help=True, help="Experiments over models and seeds.")
app.add_typer(experiment_app, name="experiment")


def _experiment_config(config: Optional[Path]) -> dict:
    from recsys.train.config import read_config

    return read_config(config) if config is not None else {}


def _names(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@experiment_app.command("multi-scenario")
@_friendly
def experiment_multi_scenario(
    preset: str = PRESET,
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


def _best_multi_scenario(results: Path, log) -> str:
    """The model with the best overall AUC in a multi-scenario experiment's results."""
    if not results.is_file():
        log(f"no multi-scenario results at {results}: comparing with mmoe "
            f"(pass --multi-scenario-results to pick the best model of an experiment)")
        return "mmoe"
    models = read_json(results, "run the multi-scenario experiment again, or pass another "
                       "--multi-scenario-results")["models"]
    return max(models, key=lambda m: models[m]["auc"]["overall"]["mean"] or 0.0)


@experiment_app.command("cold-start")
@_friendly
def experiment_cold_start(
    preset: str = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
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
    from recsys.train.cold_start import cold_start

    out = out or Path("runs") / f"cold-start-{preset}"
    best = _best_multi_scenario(
        multi_scenario_results or Path("runs") / f"multi-scenario-{preset}" / "results.json",
        console.print)
    results = cold_start(dataset or Path("datasets") / preset, out, seeds=seeds,
                         baselines=("dnn_mixed", best), file=_experiment_config(config),
                         flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                         log=console.print)
    console.print(auc_table(results["subsets"]), soft_wrap=True)
    console.print(auc_table(results["warmup"]), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'cold_start.png'}")


@experiment_app.command("multi-modal")
@_friendly
def experiment_multi_modal(
    preset: str = PRESET,
    dataset: Optional[Path] = DATASET,
    seeds: int = SEEDS,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
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

    out = out or Path("runs") / f"multi-modal-{preset}"
    results = multi_modal(dataset or Path("datasets") / preset, out, seeds=seeds, image=image,
                          file=_experiment_config(config),
                          flags={"epochs": epochs, "batch_size": batch_size}, force=force,
                          log=console.print)
    console.print(auc_table(results), soft_wrap=True)
    console.print(gain_table(results), soft_wrap=True)
    console.print(f"report: {out / 'report.md'}, plot: {out / 'multi_modal.png'}")


@experiment_app.command("gate")
@_friendly
def experiment_gate(
    results: list[Path] = typer.Argument(
        ..., help="Experiment results: results.json files or the experiments' --out folders."),
    gates: Path = typer.Option(Path("benchmarks") / "quality_gates.json", "--gates",
                               help="Expected AUC per model and column, with a tolerance."),
    record: bool = typer.Option(False, "--record", help="Write the gates from these results "
                                "instead of checking them (a deliberate new baseline)."),
    tolerance: float = typer.Option(None, "--tolerance", callback=_positive,
                                    help="With --record: the gates' tolerance (default 0.002)."),
    force: bool = FORCE,
) -> None:
    """Check experiment results against the quality gates; exits 1 naming every cell that
    moved beyond its tolerance."""
    from recsys.errors import OutputExistsError
    from recsys.eval import gates as quality
    from recsys.storage import write_json

    loaded = quality.load_results(results)
    if record:
        if gates.exists() and not force:
            raise OutputExistsError(f"{gates} already exists; pass --force to replace it")
        table = quality.record(loaded, tolerance or quality.DEFAULT_TOLERANCE,
                               quality.measured_at(loaded))
        write_json(table, gates)
        n = sum(len(cols) for exp in table["experiments"].values() for models in exp.values()
                for cols in models.values())
        console.print(f"recorded {n} gated cells over {table['seeds']} seed(s) in {gates}")
        return
    cells = quality.check(loaded, quality.read_gates(gates))
    failed = [c for c in cells if not c.passed]
    for c in cells:
        console.print(c.line(), soft_wrap=True, highlight=False)
    console.print(f"{quality.verdict(cells)} ({gates})")
    for c in failed:
        _print_error(f"gate failed: {c.line()}")
    if failed:
        raise typer.Exit(1)


import_app = typer.Typer(no_args_is_help=True, help="Bring real data into the offline store.")
app.add_typer(import_app, name="import")


def _print_import(meta: dict, repo: Path) -> None:
    from recsys.data.summary import print_import

    print_import(meta, repo / "data" / "offline", console)
    _print_feast_reset(meta)


@import_app.command("antm2c")
@_friendly
def import_antm2c(
    files: list[Path] = typer.Argument(..., help="AntM2C CSV part files (antm2c_10m_part*)."),
    repo: Path = REPO,
    force: bool = FORCE,
) -> None:
    """Import the public AntM2C release (CSV, header + 37 columns) into the offline store."""
    from recsys.data.importers import import_antm2c as run

    _print_import(run(files, repo, force=force), repo)


@import_app.command("interactions")
@_friendly
def import_interactions(
    interactions: Optional[Path] = typer.Option(None, "--interactions",
                                                help="Interaction log, CSV or Parquet."),
    users: Optional[Path] = typer.Option(None, "--users", help="Users table: its columns "
                                         "become user features."),
    items: Optional[Path] = typer.Option(None, "--items", help="Items table: its columns "
                                         "become item features."),
    user_col: Optional[str] = typer.Option(None, "--user-col"),
    item_col: Optional[str] = typer.Option(None, "--item-col"),
    time_col: Optional[str] = typer.Option(None, "--time-col",
                                           help="Epoch s / ms / µs / ns (told apart by "
                                           "size) or ISO date-times."),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    label_threshold: Optional[float] = typer.Option(
        None, "--label-threshold", help="Label = 1 where the label column is >= X."),
    scenario_col: Optional[str] = typer.Option(
        None, "--scenario-col", help="Each distinct value (any type, at most 64) is a "
        "scenario; default: one scenario."),
    categorical_cols: Optional[str] = typer.Option(
        None, "--categorical-cols", help="Columns (of any table) that are categorical, a,b."),
    numeric_cols: Optional[str] = typer.Option(None, "--numeric-cols",
                                               help="Columns that are numeric."),
    text_cols: Optional[str] = typer.Option(None, "--text-cols",
                                            help="Columns of --users / --items that are text."),
    ignore_cols: Optional[str] = typer.Option(None, "--ignore-cols",
                                              help="Columns to leave out."),
    mapping: Optional[Path] = typer.Option(None, "--mapping",
                                           help="YAML file with the same keys and `columns:` "
                                                "(flags win)."),
    repo: Path = REPO,
    force: bool = FORCE,
) -> None:
    """Import any interaction log (CSV or Parquet) through a column mapping; every other
    column of the log and of the users / items tables becomes a feature (its kind declared
    or inferred)."""
    from recsys.data.importers import Mapping, declared_from_flags
    from recsys.data.importers import import_interactions as run
    from recsys.errors import UsageError

    flags = {"interactions": interactions, "users": users, "items": items,
             "user_col": user_col, "item_col": item_col, "time_col": time_col,
             "label_col": label_col, "label_threshold": label_threshold,
             "scenario_col": scenario_col}
    declared = declared_from_flags(categorical_cols=categorical_cols, numeric_cols=numeric_cols,
                                   text_cols=text_cols, ignore_cols=ignore_cols)
    if mapping is not None:
        m = Mapping.from_yaml(mapping, declared, **flags)
    else:
        missing = [f"--{k.replace('_', '-')}" for k in
                   ("interactions", "user_col", "item_col", "time_col", "label_col")
                   if flags[k] is None]
        if missing:
            raise UsageError(f"missing {', '.join(missing)}: pass them, or a --mapping file")
        m = Mapping(**{k: v for k, v in flags.items() if v is not None}, columns=declared)
    _print_import(run(m, repo, force=force), repo)


def main() -> None:
    """The `recsys` console script. Click's own usage errors (an unknown flag, a value of the
    wrong type) are one line too, like every other refusal."""
    sys.stderr = _LineAwareStderr(sys.stderr)
    try:
        code = app(standalone_mode=False)
    except Exception as e:
        if any(isinstance(c, KeyboardInterrupt) for c in causes(e)):
            # DuckDB, say, reports Ctrl-C as "Query interrupted", raised from the interrupt
            code = 130
        elif not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        else:
            message, ctx = e.format_message(), getattr(e, "ctx", None)
            if message:  # none after the help printed for a bare `recsys`
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                _print_error(f"{message}{hint}")
            sys.exit(2)
    if code == 130:  # Ctrl-C, turned into this exit code by typer
        _print_error("interrupted; outputs are written whole or not at all: rerun to resume "
                     "or start again")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
