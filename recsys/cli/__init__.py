"""The `recsys` command line: each command parses its flags, calls the library and prints.
Bad input ends with one line on stderr and exit code 2 (cli/common.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from recsys.cli.common import BATCH_SIZE, CONFIG, EPOCHS, FORCE, IMAGE, REPO, TEXT, as_flags, \
    console, flags_of, friendly, positive, print_feast_reset, run, workspace_preset
from recsys.cli.experiment import experiment_app
from recsys.cli.imports import import_app
from recsys.cli.models import list_models
from recsys.cli.runs import runs_app
from recsys.errors import UsageError
from recsys.memory import DEFAULT_MEMORY_GB
from recsys.models.config import ModelConfig
from recsys.schema import ITEM_ID, USER_ID
from recsys.serve.settings import Settings
from recsys.config import MAX_SEED, TrainConfig
from recsys.train.config import PlanRequest

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Feature-store-centric multi-scenario, multi-modal CTR platform.")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"recsys {version('recsys')}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version,
                                          is_eager=True, help="Print the version and exit.")):
    """Feature-store-centric multi-scenario, multi-modal CTR platform."""


def _workers_default() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@app.command()
@friendly
def generate(
    preset: str = typer.Option("small", "--preset",
                               help="tiny | small | medium | large | full"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED,
                             help="Random seed: same seed, same data."),
    repo: Path = REPO,
    workers: int = typer.Option(_workers_default(), "--workers", help="Worker processes."),
    rows: Optional[int] = typer.Option(None, "--rows", help="Override the preset's rows."),
    days: Optional[int] = typer.Option(None, "--days", help="Override the preset's days: a "
                                       "longer log of the same users and items, at the "
                                       "preset's rows per day (unless --rows)."),
    chunks: Optional[str] = typer.Option(
        None, "--chunks", help="FIRST:END: write only these impression chunks, into the "
                               "repo's staging folder (fan a large preset out; a plain "
                               "generate then assembles)."),
    until: Optional[int] = typer.Option(None, "--until", help="Write only the world's days "
                                        "before day N (0-based): a log that grows, with "
                                        "--append."),
    append: bool = typer.Option(False, "--append", help="Add the same world's days after "
                                "those the repo holds, up to --until."),
    feed: bool = typer.Option(False, "--feed", help="The log of a personalized feed: users' "
                              "interests drift and most impressions follow them (the history "
                              "and retrieval have more to find)."),
    force: bool = FORCE,
) -> None:
    """Generate synthetic AntM2C data into the repo's offline store (data/offline/)."""
    from recsys.data.generate import generate as run
    from recsys.data.generate import generate_chunks, parse_chunks
    from recsys.data.presets import get_preset
    from recsys.data.summary import print_summary

    the_preset = get_preset(preset, rows, days, feed)
    if chunks is not None:
        done = generate_chunks(repo, the_preset, parse_chunks(chunks, the_preset), seed=seed,
                               workers=workers)
        console.print(f"chunks {chunks}: wrote {done['written']} of {done['chunks']} "
                      f"({done['rows']:,} rows; the others were there) to {done['staging']}; "
                      f"when every chunk is written, `recsys generate` with the same --preset, "
                      f"--rows and --seed assembles the store", soft_wrap=True)
        return
    meta = run(repo, the_preset, seed=seed, workers=workers, force=force, until=until,
               append=append)
    print_summary(meta, console)
    console.print(f"offline store: {repo / 'data' / 'offline'}")
    print_feast_reset(meta)
    if "appended_days" in meta:
        first, last = meta["appended_days"]
        console.print(f"appended days {first} .. {last}. Next: `recsys materialize --repo "
                      f"{repo}`, then `recsys build-dataset --from "
                      f"{first} --to {last} --out datasets/<name>` and `recsys train "
                      f"--init-from RUN`", soft_wrap=True)


@app.command("materialize")
@friendly
def materialize(repo: Path = REPO) -> None:
    """Bring the online store up to the offline log: every day new or changed since the last
    run, up to now (the first run: the whole log), through Feast's materialize."""
    from recsys.data.online import materialize as run

    done = run(repo)
    if "from" not in done:
        console.print(f"{repo}: the online store holds every day of the log already")
        return
    what = f"{done['days']} day(s) of the log" if done["days"] else \
        "the rows stamped since the last run"
    console.print(f"materialized {what}: {done['from']} .. {done['to']}")


@app.command("follow")
@friendly
def follow(
    watch: Path = typer.Option(..., "--watch", help="The folder of runs `recsys serve --watch` "
                               "serves from: its run is warm-started, the new one moved in."),
    repo: Path = REPO,
    every: float = typer.Option(300.0, "--every", min=1, help="Seconds between two cycles."),
    label_window: Optional[float] = typer.Option(
        None, "--label-window", min=0, help="Seconds within which a click labels an item "
        "served (default: recsys.data.served.LABEL_WINDOW_SECONDS)."),
    once: bool = typer.Option(False, "--once", help="One cycle, then stop."),
) -> None:
    """Every --every seconds: import what was served and clicked, materialize, build those
    days, warm-start the run --watch serves on them, check it and publish it into --watch."""
    from recsys.data.served import LABEL_WINDOW_SECONDS
    from recsys.follow import follow as run

    run(repo, watch, every, LABEL_WINDOW_SECONDS if label_window is None else label_window,
        once=once, log=console.print)


@app.command("encode-text")
@friendly
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
@friendly
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
    from_day: Optional[str] = typer.Option(
        None, "--from", help="Build only the rows from this day (ISO date, UTC) on; the split "
        "is chosen inside the window, the history still reaches back before it."),
    to_day: Optional[str] = typer.Option(None, "--to", help="... up to this day, included."),
    features: str = typer.Option("joined", "--features", help="joined (point in time) | "
                                 "logged (the served impressions alone, with the features the "
                                 "serving model saw, from the served log)."),
    force: bool = FORCE,
) -> None:
    """Build train / val / test sets with Feast's point-in-time join, partition by partition
    (a killed build resumes where it stopped)."""
    from recsys.dataset.build import build_dataset as run
    from recsys.dataset.build import default_out
    from recsys.data.split import Window, split_spec

    spec = split_spec(split, val_days=val_days, test_days=test_days, val_from=val_from,
                      test_from=test_from, shares=shares)
    window = Window.of(from_day, to_day)
    out = out or default_out(repo)
    info = run(repo, out, force=force, service_name=feature_service, memory_gb=memory_gb,
               engine=engine, partition_rows=partition_rows, split_spec=spec, window=window,
               features=features)
    sizes = ", ".join(f"{s} {v['rows']:,}" for s, v in info["splits"].items())
    if info["window"]:
        console.print(f"window: {info['window']['from'] or 'the first day'} to "
                      f"{info['window']['to'] or 'the last day'}")
    console.print(f"split: {info['split']['how']}; validation from "
                  f"{info['split']['val_from']}, test from {info['split']['test_from']}")
    console.print(f"dataset {out}: {sizes} rows, {len(info['columns'])} columns, "
                  f"{info['build']['partitions']} partition(s) on {engine}"
                  + (", the features as logged" if features == "logged" else ""))


@app.command()
@friendly
def summary(
    repo: Path = REPO,
    dataset: Optional[Path] = typer.Option(None, "--dataset",
                                           help="Built dataset (default datasets/<preset>)."),
) -> None:
    """Print what was generated and what was built."""
    from recsys.data.offline import offline_dir, read_repo_meta
    from recsys.data.summary import print_import, print_summary
    from recsys.dataset.build import default_out
    from recsys.dataset.meta import DATASET_META, DatasetMeta

    meta = read_repo_meta(repo)
    if meta.imported:  # what was read, what each column became, the maps
        print_import(meta.raw, offline_dir(repo), console)
    else:
        print_summary(meta.raw, console)
    dataset = dataset or default_out(repo, meta)
    if (dataset / DATASET_META).is_file():
        for split, v in DatasetMeta.read(dataset).splits.items():
            console.print(f"{dataset}/{split}: {v['rows']:,} rows in {v['parts']} part(s)")
    else:
        console.print(f"no dataset at {dataset}: run `recsys build-dataset`")


@app.command()
@friendly
def train(
    model: Optional[str] = typer.Option(None, "--model", help="The model (`recsys models` lists "
                                        "them; or `model:` in --config)."),
    dataset: Optional[Path] = typer.Option(
        None, "--dataset", help="Dataset folder (default: datasets/<preset>, where "
        "build-dataset writes the data in feature_repo/)."),
    config: Optional[Path] = CONFIG,
    epochs: Optional[int] = EPOCHS,
    batch_size: Optional[int] = BATCH_SIZE,
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=MAX_SEED,
                                       help=f"Default {TrainConfig.seed}."),
    dense_lr: Optional[float] = typer.Option(
        None, "--dense-lr", min=0.0, help=f"Adam's rate on the dense layers (default "
        f"{TrainConfig.dense_lr}; a smaller one suits an update with --init-from)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<model>)."),
    text: bool = TEXT,
    image: bool = IMAGE,
    history: Optional[str] = typer.Option(
        None, "--history", help="Also read the user's last clicks, pooled by attention (DIN's "
        "target attention over the candidate) | mean | none; din reads them by attention, the "
        "cold-start models by their mean where the dataset has them (none: not)."),
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
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="Start from this finished run's best epoch (weights, "
        "embedding rows, optimizer state) instead of random weights: the same model and "
        "features, on data that may hold new users and items (they get fresh rows)."),
    force: bool = FORCE,
) -> None:
    """Train one model; resumes an interrupted run in the same --out."""
    from recsys.dataset.meta import DatasetMeta

    dataset = dataset or Path("datasets") / workspace_preset()
    DatasetMeta.read(dataset)  # a missing dataset is refused before torch is imported
    from recsys.run import Run

    if init_from is not None:
        Run(init_from).check_trained()
    from recsys.config import Arm, config_with_model, resolve

    file = config_with_model(config, model)
    modalities = [m for m, on in (("text", text), ("image", image)) if on]
    # refused before torch where --out or the flags alone name the folder (not the registry)
    known = out or (Path("runs") / Arm(model, tuple(modalities), "", backbone or "mlp").name
                    if config is None and history is None else None)
    if known is not None and not force:
        Run(known).check_not_finished()
    from recsys.train.job import Job, train_job

    hashed_rows = {n: r for n, r in ((USER_ID, user_rows), (ITEM_ID, item_rows))
                   if r is not None}
    cfg = resolve(file, {"model": model, "epochs": epochs, "batch_size": batch_size,
                         "seed": seed, "dense_lr": dense_lr, "checkpoint_every": checkpoint_every,
                         "modalities": modalities or None, "hashed_rows": hashed_rows or None,
                         "history": history},
                  {"fusion": fusion, "backbone": backbone},
                  f"--config {config}" if config else "the flags")
    out = out or Path("runs") / cfg.name
    metrics = train_job(Job(dataset, out, cfg, device, force, init_from), nproc, console.print)
    if isinstance(metrics, int):  # the processes failed, and said why
        raise typer.Exit(metrics)
    _print_trained(cfg.model, out, metrics)


def _print_trained(model: str, out: Path, metrics: dict) -> None:
    from recsys.eval.report import metrics_table
    from recsys.models.registry import model_class

    if model_class(model).capabilities.retrieval:
        _print_retrieval(out)  # judged by where a click ranks, not by a CTR logloss
    else:
        console.print(metrics_table(metrics), soft_wrap=True)
    for name, h in metrics["hashing"].items():
        console.print(f"{name}: {h['distinct_ids']:,} distinct IDs hashed into "
                      f"{h['rows']:,} rows; {h['colliding_share']:.2%} share a row "
                      f"(uniform hashing: {h['expected_share']:.2%})", soft_wrap=True)
    console.print(f"metrics: {out / 'metrics.json'}")


def _print_retrieval(out: Path) -> None:
    """A retrieval run's Recall@K of the test clicks beside popularity's, overall and per
    scenario (measured here, not published: `recsys index` does that); said plainly where the
    model is below popularity."""
    from recsys.retrieval.index import build_index

    found = build_index(out, publish=False, write=False)["retrieval"]
    rows = {"overall": found["overall"], **found["per_scenario"]}
    ks = [k.split("@")[1] for k in rows["overall"]["model"] if k.startswith("recall@")]
    console.print("| slice | " + " | ".join(f"Recall@{k} (popularity)" for k in ks) + " |",
                  soft_wrap=True)
    console.print("| --- |" + " ---: |" * len(ks))
    below = []
    for name, r in rows.items():
        cells = [f"{r['model'][f'recall@{k}']:.4f} ({r['popularity'][f'recall@{k}']:.4f})"
                 for k in ks]
        console.print(f"| {name} | " + " | ".join(cells) + " |")
        if r["model"][f"recall@{ks[1]}"] < r["popularity"][f"recall@{ks[1]}"]:
            below.append(name)
    if below:
        console.print(f"below popularity at Recall@{ks[1]} in: {', '.join(below)}: this run "
                      f"retrieves worse than ranking items by their training clicks",
                      soft_wrap=True)


@app.command()
@friendly
def tune(
    model: Optional[str] = typer.Option(None, "--model", help="The model to tune (or `model:` "
                                        "in --config)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Dataset folder (default: "
                                           "datasets/<preset>)."),
    config: Optional[Path] = CONFIG,
    trials: int = typer.Option(20, "--trials", min=1, help="Finished trials to reach (pruned "
                               "ones count)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds for the whole "
                                            "tune; the trials running then finish."),
    jobs: int = typer.Option(min(2, os.cpu_count() or 1), "--jobs", min=1,
                             help="Trials at once, each in its own process."),
    out: Optional[Path] = typer.Option(None, "--out", help="Default runs/tune-<model>."),
    force: bool = FORCE,
) -> None:
    """Tune a model's rates, batch, width and regularization with Optuna (TPE, median
    pruning) on validation AUC; each trial a run folder; a killed tune resumes; best.yaml for
    `recsys train --config`."""
    from recsys.config import config_with_model
    from recsys.dataset.meta import DatasetMeta

    dataset = dataset or Path("datasets") / workspace_preset()
    DatasetMeta.read(dataset)
    base = config_with_model(config, model)
    from recsys.train.tune import Tune, tune as run

    out = out or Path("runs") / f"tune-{base['model']}"
    result = run(Tune(dataset, out, base, trials, timeout, jobs), force=force,
                 log=console.print)
    console.print("| trial | state | validation AUC | epochs | parameters |")
    console.print("| ---: | --- | ---: | ---: | --- |")
    for t in result["trials"]:
        auc = "-" if t["val_auc"] is None else f"{t['val_auc']:.4f}"
        params = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in t["params"].items())
        console.print(f"| {t['number']} | {t['state'].lower()} | {auc} | {t['epochs']} | "
                      f"{params} |", soft_wrap=True)
    best = result["best"]
    console.print(f"best: trial {best['number']}, validation AUC {best['val_auc']:.4f} (test "
                  f"AUC {best['test_auc']:.4f}, reported, not chosen on); "
                  f"{result['seconds']:.0f} s; `recsys train --config {out / 'best.yaml'}`; "
                  f"plot {out / 'trials.png'}", soft_wrap=True)


@app.command()
@friendly
def plan(
    preset: str = typer.Option(PlanRequest.preset, "--preset",
                               help="ID scale: tiny | small | medium | full"),
    world_size: int = typer.Option(PlanRequest.world_size, "--world-size", min=1,
                                   help="Ranks (GPUs or processes)."),
    device: str = typer.Option(PlanRequest.device, "--device", help="cuda | cpu"),
    memory_gb: float = typer.Option(PlanRequest.memory_gb, "--memory-gb", callback=positive,
                                    help="Memory per rank (GPU memory on cuda, host memory on "
                                    "cpu)."),
    dim: int = typer.Option(PlanRequest.dim, "--dim", min=1, help="Embedding dimension."),
    dtype: str = typer.Option(PlanRequest.dtype, "--dtype", help="Table storage: fp32 | fp16; "
                              "with --serving fp32 (a run) or an export's int8 | int4 | fp16"),
    uvm: bool = typer.Option(PlanRequest.uvm, "--uvm", help="cuda: allow tables in host memory "
                             "behind a GPU cache."),
    host_memory_gb: float = typer.Option(PlanRequest.host_memory_gb, "--host-memory-gb",
                                         callback=positive,
                                         help="Host memory per rank for --uvm."),
    batch_size: int = typer.Option(PlanRequest.batch_size, "--batch-size", min=1,
                                   help="Batch per rank."),
    model: str = typer.Option(PlanRequest.model, "--model"),
    serving: bool = typer.Option(PlanRequest.serving, "--serving",
                                 help="The memory of one serving replica (--memory-gb: its "
                                 "host's) instead of a training plan."),
) -> None:
    """Plan the sharding of a preset's tables with TorchRec's planner (meta device, no memory
    used): the plan, bytes per rank and whether it fits; or with --serving, one serving
    replica's memory. Exits 1 when it does not fit."""
    from recsys.eval.report import plan_table, serving_table
    from recsys.train import plan as planning

    req = PlanRequest(preset=preset, world_size=world_size, device=device, memory_gb=memory_gb,
                      dim=dim, dtype=dtype, uvm=uvm, host_memory_gb=host_memory_gb,
                      batch_size=batch_size, model=model, serving=serving)
    req.check()
    if serving:
        report = planning.serving(req)
        console.print(serving_table(report), soft_wrap=True)
        if not report["fits"]:
            raise typer.Exit(1)
        return
    report = planning.summary(req)
    if "remedies" in report:  # they name the request's fields
        flags = flags_of(plan.__wrapped__)
        report["remedies"] = [as_flags(r, tuple(flags), flags) for r in report["remedies"]]
    console.print(plan_table(report), soft_wrap=True)
    if not report["fits"]:
        raise typer.Exit(1)


@app.command()
@friendly
def serve(
    run: Optional[Path] = typer.Option(None, "--run", help="A finished run folder "
                                       "(runs/<name>); or --watch."),
    repo: Path = REPO,
    host: str = typer.Option(Settings.host, "--host", help="Address to bind (0.0.0.0: every "
                             "interface)."),
    port: int = typer.Option(Settings.port, "--port", min=1, max=65535),
    workers: int = typer.Option(Settings.workers, "--workers", min=1,
                                help="Server processes, each with the model and its caches."),
    refresh_seconds: float = typer.Option(
        Settings.refresh_seconds, "--refresh-seconds", min=0, help="How often the item cache "
        "checks for a new materialization of the online store (0: never)."),
    retrieval: Optional[Path] = typer.Option(
        None, "--retrieval", help="A two_tower run with its index (`recsys index`): POST "
                                  "/recommend retrieves with it and ranks with --run."),
    watch: Optional[Path] = typer.Option(
        None, "--watch", help="A folder of runs: serve its newest finished run (or the one "
        "its CURRENT file names) and swap in a newer one without a restart; one that fails "
        "to load or to score is refused and the old one keeps serving."),
    watch_seconds: float = typer.Option(Settings.watch_seconds, "--watch-seconds", min=0.1,
                                        help="How often --watch looks for a newer run."),
    log_served: bool = typer.Option(Settings.log_served, "--log-served/--no-log-served",
                                    help="Log every answer's items, scores and features under "
                                    "the repo's data/served/."),
    log_flush_seconds: float = typer.Option(
        Settings.log_flush_seconds, "--log-flush-seconds", min=0.01, help="How often the "
        "served log is written (a kill -9 loses at most the answers of this interval)."),
) -> None:
    """Serve a trained run: POST /score, /feedback, /recommend; GET /health, /metadata,
    /metrics."""
    from recsys.run import Run
    from recsys.serve.watch import first_run

    if run is None and watch is None:
        raise UsageError("missing --run: pass a finished run folder, or --watch DIR to serve "
                         "the newest run in DIR", fields="run")
    if run is not None and watch is not None:
        raise UsageError("--run and --watch: pass one (--watch serves its folder's newest run)",
                         fields=("run", "watch"))
    run = run or first_run(watch)
    settings = Settings(str(run), str(repo), refresh_seconds, host, port, workers,
                        str(retrieval or ""), str(watch or ""), watch_seconds, log_served,
                        log_flush_seconds)
    settings.check()
    Run(run).check_trained()  # before the server's imports: a wrong --run answers at once
    if retrieval is not None:
        from recsys.run import INDEX_DIR, INDEX_META

        Run(retrieval).check_trained()
        if not (retrieval / INDEX_DIR / INDEX_META).is_file():
            raise UsageError(f"retrieval {retrieval}: no index; build it with `recsys index "
                             f"--run {retrieval}`", fields="retrieval")
    from recsys.data.offline import check_repo
    from recsys.serve.server import serve as run_server

    check_repo(repo)
    run_server(settings, started=console.print)


@app.command()
@friendly
def index(
    run: Path = typer.Option(..., "--run", help="A finished run of a retrieval model "
                                                "(`recsys train --model two_tower`)."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="The repo whose items to index "
                                        "(default: the one the run's dataset was built from)."),
    force: bool = FORCE,
) -> None:
    """Encode every item with a retrieval run's item tower into a FAISS index (RUN/index), and
    the vectors into the repo's feature store (its item_retrieval view)."""
    from recsys.retrieval.index import build_index
    from recsys.run import INDEX_DIR

    info = build_index(run, repo, force=force, log=console.print)
    recall = next(v for k, v in info.items() if k.startswith("recall@"))
    console.print(f"{info['items']:,} items of {info['dim']} values, {info['kind']} index "
                  f"(recall@100 against exact search {recall:.4f}), {info['items_per_s']:,.0f} "
                  f"items/s encoded: {run / INDEX_DIR}")
    console.print(f"item vectors in the feature store: {info['feature store']}")
    metrics = info["retrieval"]
    console.print(f"next-day clicks ({metrics['test clicks']:,}), ranked among their scenario's "
                  f"items:")
    for where, figures in [("overall", metrics["overall"]), *metrics["per_scenario"].items()]:
        console.print(f"  {where}: " + ", ".join(
            f"{key} {figures['model'][key]:.4f} (popularity {figures['popularity'][key]:.4f})"
            for key in figures["model"] if key.startswith("recall@")))


@app.command()
@friendly
def export(
    run: Path = typer.Argument(..., help="A finished run (`recsys train`)."),
    dtype: str = typer.Option("int8", "--dtype", help="The tables' type: int8 / int4 "
                              "(row-wise, a scale and bias a row), fp16 or fp32."),
    out: Optional[Path] = typer.Option(None, "--out", help="Default: RUN-DTYPE beside RUN."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Whose test split checks "
                                           "the artifact (default: the run's own)."),
    force: bool = FORCE,
) -> None:
    """Export a run as a scoring artifact: a TorchScript program with its tables in DTYPE that
    loads without recsys's model code; `recsys serve --run` takes it as it takes a run."""
    from recsys.export import export as export_run

    out = out or run.with_name(f"{run.name}-{dtype}")
    facts = export_run(run, dtype, out, dataset, force=force, log=console.print)
    console.print(f"{out}: {facts['model']}, tables {facts['table_bytes'] / 2**20:,.1f} MiB in "
                  f"{dtype} against {facts['table_bytes_fp32'] / 2**20:,.1f} MiB in fp32 "
                  f"({facts['table_bytes'] / facts['table_bytes_fp32']:.3f}), "
                  f"{facts['seconds']:.1f} s", soft_wrap=True)
    console.print(f"| test AUC | {run.name} | {out.name} |")
    console.print("| --- | ---: | ---: |")
    mine, theirs = facts["metrics"], facts["run_metrics"]
    console.print(f"| overall | {theirs['overall']['auc']:.4f} | {mine['overall']['auc']:.4f} |")
    for code, scenario in mine["scenarios"].items():
        console.print(f"| {scenario['name']} | {theirs['scenarios'][code]['auc']:.4f} | "
                      f"{scenario['auc']:.4f} |")
    if facts["max_abs_diff_from_run"] is not None:
        console.print(f"largest |p_artifact - p_run| over the test rows: "
                      f"{facts['max_abs_diff_from_run']:.2e}")


app.command("models")(list_models)
app.add_typer(experiment_app, name="experiment")
app.add_typer(import_app, name="import")
app.add_typer(runs_app, name="runs")


def main() -> None:
    """The `recsys` console script."""
    run(app)


if __name__ == "__main__":
    main()
