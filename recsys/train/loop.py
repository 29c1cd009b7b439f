"""`recsys train`: the training loop with early stopping on validation AUC, checkpoints after
every epoch (written atomically), and automatic resume of an interrupted run."""

from __future__ import annotations

import resource
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recsys.dataset.counts import training_counts
from recsys.dataset.episodes import EpisodeSampler
from recsys.dataset.hashing import collisions
from recsys.dataset.layout import has_history, Layout
from recsys.dataset.loader import distinct_values, load_split
from recsys.dataset.meta import DatasetMeta
from recsys.dataset.stream import PREFETCH, SplitFiles, StreamLoader
from recsys.errors import OutputExistsError, UsageError
from recsys.eval.evaluate import EVAL_BATCH, predict, score_batches, split_auc, \
    split_metrics, write_scores
from recsys.memory import available_memory, check_fits
from recsys.models.registry import build_model, model_class
from recsys.models.base import TrainWrapper, dense_bytes_with_adam, dense_parameters, \
    sparse_optimizers, table_bytes
from recsys.models.config import ONE_PROCESS_TABLE_DTYPE, ModelConfig
from recsys.models.cold import COLD_ENTITIES
from recsys.provenance import code_version, dataset_fingerprint
from recsys.run import BEST, BEST_OPTIM, CHECKPOINT, CONFIG, DENSE_OPT, SHARDED, \
    SHARDED_BEST, STATE, Run, load_sharded
from recsys.files import load_torch, read_json, save_torch
from recsys.config import Provenance, TrainConfig
from recsys.train.distributed import Ranks, check_shardable, predict_sharded, save_sharded, \
    shard
from recsys.train.warm_start import grown_rows, parent_layout, warm_start

RESTART = "pass force=True to start the run over, or train into another folder"  # a corrupt file


class _Checkpoints:
    """Where a run keeps its latest epoch and its best: torch.save files in one process,
    torch.distributed.checkpoint folders (each rank writes its shards) in several. `model` is
    the model; `trainer` what trains it (its TrainWrapper, sharded by DMP in several
    processes), which holds the fused sparse optimizers."""

    def __init__(self, out: Path, ranks: Ranks):
        self.out, self.ranks = out, ranks
        self.sharded = ranks.distributed
        self.run = Run(out)

    def check_resumable(self, nproc_saved: int | None) -> bool:
        """Whether there is an interrupted run to resume; it must have been written by as many
        processes as this run has."""
        single, sharded = (self.out / CHECKPOINT).exists(), (self.out / SHARDED).is_dir()
        if not (single or sharded):
            return False
        if sharded != self.sharded or (nproc_saved or 1) != self.ranks.world:
            # (a sharded run's optimizer state does not load into another layout)
            raise OutputExistsError(
                f"{self.out} holds a checkpoint written by {nproc_saved or 1} process(es); "
                f"resume it with nproc {nproc_saved or 1}, or pass force=True to start over "
                f"(`recsys` reads its best epoch in any number of processes)",
                                    fields=("nproc", "force"))
        return True

    def save(self, model, trainer, dense_opt, state: dict) -> None:
        if not self.sharded:
            save_torch({"model": model.state_dict(), "dense_opt": dense_opt.state_dict(),
                        "fused_opts": [o.state_dict() for o in sparse_optimizers(trainer)],
                        "state": state}, self.out / CHECKPOINT)
            return
        # the dense optimizer is the same on every rank: rank 0 saves it whole
        save_sharded({"model": model.state_dict(),
                      "sparse_opt": trainer.fused_optimizer.state_dict()},
                     self.out / SHARDED, self.ranks,
                     extra={STATE: state, DENSE_OPT: dense_opt.state_dict()})

    def load(self, model, trainer, dense_opt) -> dict:
        if not self.sharded:
            ckpt = load_torch(self.out / CHECKPOINT, RESTART, weights_only=False)
            model.load_state_dict(ckpt["model"])
            dense_opt.load_state_dict(ckpt["dense_opt"])
            for opt, saved in zip(sparse_optimizers(trainer), ckpt["fused_opts"]):
                opt.load_state_dict(saved)
            return ckpt["state"]
        saved = {"model": model.state_dict(),
                 "sparse_opt": trainer.fused_optimizer.state_dict()}
        load_sharded(saved, self.out / SHARDED)
        model.load_state_dict(saved["model"])
        trainer.fused_optimizer.load_state_dict(saved["sparse_opt"])
        dense_opt.load_state_dict(load_torch(self.out / SHARDED / DENSE_OPT, RESTART,
                                             weights_only=True))
        return read_json(self.out / SHARDED / STATE, RESTART)

    def save_best(self, model, trainer, dense_opt) -> None:
        if self.sharded:
            save_sharded({"model": model.state_dict()}, self.out / SHARDED_BEST, self.ranks)
        elif self.ranks.main:
            # the optimizer first: a best.pt is never newer than its optimizer state
            save_torch({"dense_opt": dense_opt.state_dict(),
                        "fused_opts": [o.state_dict() for o in sparse_optimizers(trainer)]},
                       self.out / BEST_OPTIM)
            save_torch(model.state_dict(), self.out / BEST)


def _prepare_out(out: Path, config: dict, force: bool, checkpoints: _Checkpoints,
                 meta: DatasetMeta) -> bool:
    """Check the run folder (every rank), then clear or create it (rank 0) with the config and
    the dataset's metadata (its schema and sizes: what serving rebuilds the model's inputs
    from); whether to resume."""
    if not force:
        Run(out).check_not_finished()
    ranks = checkpoints.ranks
    saved = read_json(out / CONFIG, RESTART) if (out / CONFIG).exists() and not force else {}
    resume = not force and checkpoints.check_resumable(saved.get("nproc"))
    same = {k: v for k, v in saved.items() if k != "code"} == \
        {k: v for k, v in config.items() if k != "code"}
    if resume and not same:
        raise OutputExistsError(f"{out} holds an interrupted run with another configuration; "
                                f"pass force=True to start over or choose another out",
                                fields=("force", "out"))
    ranks.barrier()  # every rank has looked before rank 0 changes anything
    if ranks.main:
        if force and out.exists():
            shutil.rmtree(out)
        Run(out).write_start(config, meta)
    ranks.barrier()
    return resume


def memory_use(model: torch.nn.Module, layout: Layout, dim: int, ranks: Ranks) -> dict:
    """Peak resident memory of every process next to the bytes the tables and their row-wise
    Adagrad state need (float32), and the dense parameters with Adam's two moments."""
    rows = sum(layout.num_embeddings)
    return {"peak_rss_bytes": ranks.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                           * 1024),
            "table_bytes": rows * dim * 4, "sparse_optimizer_bytes": rows * 4,
            "dense_bytes_with_adam": dense_bytes_with_adam(model)}


def _check_tables_fit(layout: Layout, model_config: ModelConfig, ranks: Ranks) -> None:
    """The embedding tables (weights + one row-wise Adagrad float per row) this machine's
    processes hold must fit its available memory: refused with the numbers, not a failed
    allocation. A floor: the dense layers and the batches come on top."""
    if ranks.device.type != "cpu":
        return  # GPU memory: `recsys plan` answers that
    rows = sum(layout.num_embeddings)
    dtype = model_config.table_dtype if ranks.distributed else ONE_PROCESS_TABLE_DTYPE
    need = table_bytes(rows, model_config.embedding_dim, dtype) * ranks.local_world // ranks.world
    flags = f"{rows:,} table rows of dim {model_config.embedding_dim}"
    check_fits(flags, need, available_memory(), "memory",
               "pass a smaller user_rows / item_rows, or more machines", ("user_rows", "item_rows"))


def _check_batch_fits(layout: Layout, model_config: ModelConfig, batch_size: int,
                      rows: int) -> None:
    """A batch's inputs (in the shuffle buffer, the prefetched batches and the one in use) and
    its embeddings with their gradients must fit available memory: a floor, the model's
    activations come on top."""
    batch = min(batch_size, rows)
    inputs = 8 * layout.id_columns + 4 * len(layout.dense) + \
        4 * sum(g.width for g in layout.vectors)
    looked_up = len(layout.kjt_keys) + len(layout.vectors)  # the history's clicks each too
    embeddings = 4 * model_config.embedding_dim * looked_up
    need = batch * (inputs * (PREFETCH + 2) + 2 * embeddings)
    check_fits(f"batch_size {batch_size:,}", need, available_memory(), "memory",
               "pass a smaller batch_size", "batch_size")


def train(dataset: Path, out: Path, cfg: TrainConfig, force: bool = False,
          progress: bool = True, log=print, ranks: Ranks | None = None,
          init_from: Path | None = None, on_epoch=None) -> dict:
    """Train, evaluate the best epoch on test, write out/metrics.json and return it. With
    `ranks` from torchrun, the model is sharded over the processes and each trains on its
    share of every batch. `init_from`: a finished run whose best epoch the model starts from
    (train.warm_start: the same model and features, tables that may have grown). `on_epoch`:
    called with (epoch, validation AUC) after each epoch (a tuner's pruning: it may raise)."""
    trainer = Trainer(dataset, out, cfg, ranks or Ranks(), progress, log)
    trainer.prepare(force, init_from)
    while trainer.more_epochs():
        val_auc = trainer.epoch()
        if on_epoch is not None:
            on_epoch(trainer.state["epoch"], val_auc)
    return trainer.finish()


class Trainer:
    """One run's training in phases: `prepare` (checks, the run folder, the model and its
    optimizers, a resume or a warm start), `epoch` (one pass over the training split, scored
    on validation, the best kept), `evaluate` (a split's scores, written to the run) and
    `finish` (the best epoch on test, metrics.json)."""

    def __init__(self, dataset: Path, out: Path, cfg: TrainConfig, ranks: Ranks,
                 progress: bool = True, log=print):
        cfg.check()
        if ranks.distributed:
            check_shardable(cfg.model, ranks.world, cfg.batch_size)
        self.dataset, self.out, self.cfg, self.ranks, self.progress = \
            dataset, out, cfg, ranks, progress
        self.log = log if ranks.main else (lambda *a, **k: None)
        self.meta = DatasetMeta.read(dataset)
        self.interaction_given = bool(cfg.model_config.interaction)  # else a parent's, or data's
        cfg.resolve_for_data(has_history(self.meta))
        self.can = model_class(cfg.model).capabilities
        self.layout = Layout.from_meta(self.meta, cfg.modalities, cfg.hashed_rows, cfg.history)
        self.state = {"epoch": 0, "best_auc": float("-inf"), "best_epoch": -1, "history": [],
                      "seconds": 0.0, "examples": 0, "step": 0, "loss_sum": 0.0,
                      "stage": "joint", "stage_start": 0}

    def prepare(self, force: bool, init_from: Path | None) -> None:
        """Everything is checked before anything is written; then the run folder, the model,
        its optimizers and where it starts (a checkpoint, a parent's best epoch, or random)."""
        cfg, ranks, layout, dataset = self.cfg, self.ranks, self.layout, self.dataset
        parent = Run(init_from) if init_from else None  # a warm start's: checked before a write
        if parent and not self.interaction_given:  # an update trains as its parent did
            parent.check_trained()
            cfg.model_config.interaction = parent.config().model_config.interaction
        layout_before = parent_layout(parent, cfg, layout) if parent else None
        if parent and ranks.distributed and grown_rows(layout_before, layout):
            raise UsageError(f"--init-from {parent.path}: this dataset's tables are larger "
                             f"than the parent's; warm-start a grown model in one process "
                             f"(--nproc 1)", fields=("init_from", "nproc"))
        # the resolved config and where it ran: any number in a report traces back to it
        came = Provenance(str(dataset), dataset_fingerprint(dataset),
                          ranks.world if ranks.distributed else None,
                          str(init_from) if parent else None,
                          parent.fingerprint() if parent else None, code_version())
        config = {**cfg.to_json(), **came.to_json()}
        _check_tables_fit(layout, cfg.model_config, ranks)  # before anything is written
        # the splits' footers and labels too: a damaged dataset is refused before the run
        self.files = {split: SplitFiles(dataset, split, layout)
                      for split in ("train", "val", "test")}
        _check_batch_fits(layout, cfg.model_config, cfg.batch_size, self.files["train"].rows)
        self.checkpoints = _Checkpoints(self.out, ranks)
        resume = _prepare_out(self.out, config, force, self.checkpoints, self.meta)
        # meta-learning episodes and test-time adaptation read the training split in memory
        self.train_data = load_split(dataset, "train", layout) \
            if self.can.episodes or self.can.adapts else None
        self.model, self.wrapper = _build(cfg, layout, ranks, self.log, parent)
        self.sampler = EpisodeSampler(self.train_data, layout, self.can.episodes,
                                      cfg.model_config.meta_tasks, cfg.seed) \
            if self.can.episodes else None
        self.dense_opt = torch.optim.Adam(dense_parameters(self.model), lr=cfg.dense_lr,
                                          weight_decay=cfg.weight_decay)
        if parent and not resume and not ranks.distributed:
            kept = warm_start(self.model, parent, layout_before, layout, self.dense_opt,
                              sparse_optimizers(self.wrapper))
            self.log(f"starting from {parent.path}'s best epoch" +
                     ("" if kept else " (its weights: it kept no optimizer state)"))
        if self.can.cold_path:  # the unseen IDs take the cold path: counted once, kept
            self.model.set_counts(training_counts(self.files["train"], layout, COLD_ENTITIES),
                                  add=parent is not None)
        # mf-first: the MF trains alone first (a resumed run goes on in its stage; a warm
        # start's parent trained its MF already, so an update trains both from the start)
        self.scale = getattr(getattr(self.model, "sparse", None), "network_scale", None)
        if self.scale is not None and not resume and not parent:
            self.state["stage"] = "mf"
        if resume:
            self._resume()
        elif parent and not ranks.distributed:
            self._score_start(parent)
        self.loader = StreamLoader(self.files["train"], layout, cfg.batch_size // ranks.world,
                                   shuffle=True, seed=cfg.seed, rank=ranks.rank,
                                   world=ranks.world)

    def _resume(self) -> None:
        self.state = {**self.state, **self.checkpoints.load(self.model, self.wrapper,
                                                            self.dense_opt)}
        where = f" step {self.state['step']}" if self.state.get("step") else ""
        self.log(f"resuming {self.out} from epoch {self.state['epoch'] + 1}{where}")
        if "rng" in self.state:
            torch.set_rng_state(torch.tensor(self.state["rng"], dtype=torch.uint8))
        if self.sampler is not None:
            self.sampler.load_state_dict(self.state["episodes"])

    def _score_start(self, parent: Run) -> None:
        """A warm start's starting point is the epoch to beat: an update whose epochs do not
        improve on its validation AUC (on this dataset's validation rows) keeps the parent's
        weights, so a few noisy rows cannot make the served model worse by validation."""
        auc = split_auc(self.dataset, "val", self.evaluate("val"))  # one process: no ranks
        self.state.update(best_auc=auc, start_auc=auc)
        self.checkpoints.save_best(self.model, self.wrapper, self.dense_opt)
        self.log(f"{self.cfg.name}: {parent.path.name}'s weights score val AUC {auc:.4f} here; "
                 f"an epoch must beat it")

    def more_epochs(self) -> bool:
        """Below the most epochs of the stage, and validation AUC improved within `patience`
        epochs of it; at the end of mf-first's MF stage, the network joins."""
        state = self.state
        start = state["stage_start"]
        more = state["epoch"] - start < self.cfg.epochs and \
            state["epoch"] - max(state["best_epoch"], start - 1) <= self.cfg.patience
        if more or state["stage"] != "mf":
            return more
        self._join_network()
        return True

    def _join_network(self) -> None:
        """From the MF's best epoch, the network joins at full weight (its scale, 0 so far,
        set to 1 and learned from now on); the best so far stays the one to beat. Joining from
        0 (ReZero) kept the network too weak to add what it can: on a feed world's validation
        din scored 0.7625 so, 0.7714 at full weight and 0.7687 trained jointly."""
        Run(self.out).load_weights(self.model)
        with torch.no_grad():
            self.scale.fill_(1.0)
        self.state.update(stage="joint", stage_start=self.state["epoch"])
        self.log(f"{self.cfg.name}: the MF's best epoch is {self.state['best_epoch'] + 1} "
                 f"(val AUC {self.state['best_auc']:.4f}); the network joins")

    def epoch(self) -> float:
        """One epoch, then its validation AUC (the best epoch kept); the AUC."""
        state, epoch = self.state, self.state["epoch"]
        # the MF stage: the network's scale stays 0 (its grad dropped; so the network's are 0)
        frozen = self.scale if state["stage"] == "mf" else None
        train_loss = _train_epoch(self.wrapper, self.dense_opt, self.loader, self.sampler,
                                  state, self.cfg, self.ranks, self.progress, self.checkpoint,
                                  frozen)
        # every rank: sharded scoring is collective; the run's val scores stay the kept
        # epoch's (this epoch's replace them below only when it is the best)
        kept = Run(self.out).scores("val")
        val_scores = self.evaluate("val", kept.with_name(f".epoch-{kept.name}"))
        val_auc = self._main_only(lambda: split_auc(self.dataset, "val", val_scores))
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss,
                                 "val_auc": val_auc, "stage": state["stage"]})
        self.log(f"{self.cfg.name} epoch {epoch + 1}: train loss {train_loss:.4f}, "
                 f"val AUC {val_auc:.4f}")
        if val_auc > state["best_auc"]:
            state["best_auc"], state["best_epoch"] = val_auc, epoch
            self.checkpoints.save_best(self.model, self.wrapper, self.dense_opt)
            if self.ranks.main:
                val_scores.replace(kept)
        elif self.ranks.main:
            val_scores.unlink()
        state["epoch"] = epoch + 1
        self.checkpoint(0, 0.0)
        return val_auc

    def checkpoint(self, step: int, loss_sum: float) -> None:
        """The run as it stands (`step` into the current epoch), to resume from."""
        self.state.update(step=step, loss_sum=loss_sum, rng=torch.get_rng_state().tolist())
        if self.sampler is not None:
            self.state["episodes"] = self.sampler.state_dict()
        self.checkpoints.save(self.model, self.wrapper, self.dense_opt, self.state)

    def evaluate(self, split: str, path: Path | None = None) -> Path:
        """The split's scores, written to the run folder (or `path`) as they stream out of the
        model."""
        ranks, layout = self.ranks, self.layout
        if self.can.adapts:  # adapts to each user's history: in memory
            batches = [predict(self.model, load_split(self.dataset, split, layout), layout,
                               self.train_data)]
        elif ranks.distributed:
            batches = [predict_sharded(self.model, self.files[split], layout, ranks,
                                       EVAL_BATCH)]
        else:
            batches = score_batches(self.model, StreamLoader(self.files[split], layout,
                                                             EVAL_BATCH))
        path = path or Run(self.out).scores(split)
        if ranks.main:
            write_scores(batches, path)
        ranks.barrier()
        return path

    def _main_only(self, compute):
        """What the main rank computes from the stored scores, handed to every rank."""
        return self.ranks.gather(compute() if self.ranks.main else None)[0]

    def finish(self) -> dict:
        """The best epoch's test metrics, written to metrics.json (the run is finished)."""
        cfg, state = self.cfg, self.state
        if state["best_epoch"] != state["epoch"] - 1:  # else the model is the best already
            Run(self.out).load_weights(self.model)
        test_scores = self.evaluate("test")
        metrics = {"model": cfg.model, "seed": cfg.seed, "dataset": str(self.dataset),
                   "modalities": list(cfg.modalities), "fusion": cfg.model_config.fusion,
                   "nproc": self.ranks.world,
                   **self._main_only(lambda: split_metrics(self.dataset, "test", test_scores)),
                   "hashing": {name: collisions(distinct_values(self.dataset, "train", name),
                                                rows) for name, rows in cfg.hashed_rows.items()},
                   "train": {"examples_per_s": state["examples"] / max(state["seconds"], 1e-9),
                             "epochs": state["epoch"], "best_epoch": state["best_epoch"] + 1,
                             # a warm start's: its parent's weights (best_epoch 0 if none beat it)
                             **({"start_val_auc": state["start_auc"]}
                                if "start_auc" in state else {}),
                             "seconds": state["seconds"], "history": state["history"],
                             "memory": memory_use(self.model, self.layout,
                                                  cfg.model_config.embedding_dim, self.ranks)}}
        if self.ranks.main:
            Run(self.out).write_metrics(metrics)
        return metrics


def _build(cfg: TrainConfig, layout: Layout, ranks: Ranks, log, parent: Run | None):
    """The model and what trains it: its TrainWrapper, sharded by DistributedModelParallel
    over several processes (the wrapper, so the model's own loss is what trains). One process
    warm-starts from `parent` after this (warm_start); several load its weights here, into
    tables of the parent's sizes."""
    torch.manual_seed(cfg.seed)
    if not ranks.distributed:
        dtype = cfg.model_config.table_dtype
        if dtype != ONE_PROCESS_TABLE_DTYPE:
            log(f"table_dtype {dtype}: one process keeps its tables in "
                f"{ONE_PROCESS_TABLE_DTYPE} (TorchRec's unsharded fused tables take no storage "
                f"type); they are {dtype} when sharded (--nproc)")
        model = build_model(cfg.model, layout, cfg.model_config)
        return model, TrainWrapper(model)
    with torch.device("meta"):  # each rank allocates only its shards
        wrapper = TrainWrapper(build_model(cfg.model, layout, cfg.model_config))
    trainer = shard(wrapper, ranks)
    model = trainer.module.model
    if parent is not None:
        parent.load_weights(model)
    kinds = Counter(p.sharding_type for m in trainer.plan.plan.values() for p in m.values())
    log(f"{sum(kinds.values())} tables sharded over {ranks.world} process(es) on "
        f"{ranks.device.type}: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    return model, trainer


def _train_epoch(trainer, dense_opt, loader: StreamLoader, sampler, state: dict,
                 cfg: TrainConfig, ranks: Ranks, progress: bool, save,
                 frozen: torch.nn.Parameter | None = None) -> float:
    """One epoch from `state`'s step (a resumed run replays the stream from there); the mean
    training loss over every rank's batches. `frozen`: a parameter the epoch leaves as is."""
    epoch = state["epoch"]
    # the stream is a function of (seed, epoch): a resumed run replays it from its step
    loader.epoch, loader.start_batch = epoch, state["step"]
    trainer.train()
    bar = tqdm(total=len(loader), initial=state["step"], unit="batch",
               disable=not (progress and ranks.main),
               desc=f"{cfg.name}{' MF' if frozen is not None else ''} epoch "
                    f"{epoch + 1 - state['stage_start']}/{cfg.epochs}", mininterval=1.0)
    start, loss_sum, step, seen = time.perf_counter(), state["loss_sum"], state["step"], 0
    for batch in loader:
        episode = sampler.next() if sampler is not None else None
        loss = trainer(batch.to(ranks.device), episode)
        dense_opt.zero_grad()
        loss.backward()  # also updates the embedding rows (fused optimizer)
        if frozen is not None:
            frozen.grad = None
        dense_opt.step()
        loss_sum, step, seen = loss_sum + loss.item(), step + 1, seen + len(batch)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / step:.4f}", refresh=False)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < len(loader):
            state["seconds"] += time.perf_counter() - start
            state["examples"] += seen * ranks.world
            save(step, loss_sum)
            start, seen = time.perf_counter(), 0
    bar.close()
    state["seconds"] += time.perf_counter() - start
    state["examples"] += seen * ranks.world
    return float(np.mean(ranks.gather(loss_sum / step)))
