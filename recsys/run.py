"""A run folder, owned here: its file names, its config.json (the resolved config and where it
came from), the dataset facts it was trained on, and its best epoch loaded for inference.

`recsys train` writes a run through this module; serving, evaluation, the experiments and a warm
start read it through this module alone, so none of them imports the training loop.

    runs/<name>/
      config.json          the resolved TrainConfig + provenance (dataset, fingerprint, code)
      dataset.json         the dataset's meta.json: its schema and sizes (the model's inputs)
      best.pt | best/      the best epoch: torch.save (one process) or a
                           torch.distributed.checkpoint folder (written by several)
      best_optim.pt        the best epoch's optimizer state (one process): a warm start's
                           (`--init-from`) starting point
      checkpoint.pt | checkpoint/   the latest epoch (and step), to resume
      metrics.json         test metrics, written last: a run with it is finished
      {val,test}_scores.parquet
An exported run (recsys.artifact) reads as a run: its program in place of the weights.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.config import PROVENANCE, Provenance, TrainConfig
from recsys.errors import DataError, OutputExistsError, UsageError
from recsys.dataset.meta import DatasetMeta
from recsys.files import hash_into, load_torch, read_json, write_json

if TYPE_CHECKING:  # torch and the layout are imported where a model is built: a missing run
    import torch   # is refused without them

    from recsys.dataset.layout import Layout

CONFIG, METRICS, DATASET_COPY = "config.json", "metrics.json", "dataset.json"
BEST, CHECKPOINT = "best.pt", "checkpoint.pt"  # one process
BEST_OPTIM = "best_optim.pt"  # the best epoch's {dense_opt, fused_opts} (one process)
SHARDED_BEST, SHARDED = "best", "checkpoint"  # torch.distributed.checkpoint folders
STATE, DENSE_OPT = "state.json", "dense_opt.pt"  # beside a sharded checkpoint's shards
SCORES = "{split}_scores.parquet"  # a split's scores, row for row with its files
# a retrieval run's index folder (`recsys index`): the FAISS index and its facts, the run's
# Recall@K / NDCG@K beside popularity, and each store ID's scenario (where it is shown most;
# -1: never shown) and training clicks, what /recommend keeps a scenario's items by and ranks a
# cold user's by
INDEX_DIR, INDEX_FILE, INDEX_META = "index", "items.faiss", "index.json"
RETRIEVAL_METRICS, CATALOGUE = "retrieval.json", "catalogue.parquet"
RETRAIN = "train the run again"  # what to do about a damaged run file


@dataclass(frozen=True)
class Run:
    """A run folder; reading it needs neither the dataset nor the training code."""

    path: Path

    @property
    def saved(self) -> dict:
        """config.json as written: the config and its provenance."""
        return read_json(self.path / CONFIG, RETRAIN)

    @property
    def provenance(self) -> Provenance:
        """Where the run came from (config.json's provenance keys)."""
        return Provenance.from_json(self.saved)

    def config(self) -> TrainConfig:
        """The run's TrainConfig (the model's hyper-parameters included). A run written by an
        older recsys whose config no longer reads is refused, never misread."""
        saved = self.saved
        try:
            return TrainConfig.from_json({k: v for k, v in saved.items()
                                          if k not in PROVENANCE}, str(self.path / CONFIG))
        except UsageError as e:
            raise DataError(f"{e}: this run was trained by another version of recsys; train "
                            f"it again (`recsys train --model {saved.get('model', 'MODEL')} "
                            f"--out {self.path} --force`, with its flags)") from None

    def dataset_meta(self) -> DatasetMeta:
        """The meta.json of the dataset the run trained on, kept in the run folder."""
        path = self.path / DATASET_COPY
        if not path.is_file():
            raise DataError(f"{self.path}: keeps no copy of its dataset's meta.json (trained "
                            f"by an older recsys); {RETRAIN}")
        return DatasetMeta.from_json(read_json(path, RETRAIN), str(path))

    def layout(self) -> Layout:
        """The model's inputs as the run trained them (modalities, hashed tables)."""
        from recsys.dataset.layout import Layout

        cfg = self.config()
        return Layout.from_meta(self.dataset_meta(), cfg.modalities, cfg.hashed_rows,
                                cfg.history)

    @property
    def is_artifact(self) -> bool:
        """An exported run (recsys.artifact): a program in place of the weights."""
        from recsys.artifact import is_artifact

        return is_artifact(self.path)

    @property
    def weights(self) -> Path:
        """The file (or a sharded checkpoint's metadata) holding the best epoch: an
        artifact's program."""
        from recsys.artifact import PROGRAM

        if (self.path / BEST).is_file():
            return self.path / BEST
        if self.is_artifact:
            return self.path / PROGRAM
        return self.path / SHARDED_BEST / ".metadata"

    @property
    def has_weights(self) -> bool:
        return (self.path / BEST).is_file() or (self.path / SHARDED_BEST).is_dir() or \
            self.is_artifact

    @property
    def finished(self) -> bool:
        return (self.path / METRICS).is_file()

    def check_not_finished(self) -> None:
        """Refuse to train over a finished run (an OutputExistsError naming force and out)."""
        if self.finished:
            raise OutputExistsError(f"{self.path} holds a finished run; pass force=True to train "
                                    f"it again or choose another out", fields=("force", "out"))

    def check_trained(self) -> "Run":
        """A run with its config and a best epoch, or a DataError saying what is missing."""
        if not (self.path / CONFIG).is_file() or not self.has_weights:
            raise DataError(f"{self.path}: not a finished run (no {CONFIG} or {BEST}); pass "
                            f"runs/<name> of a `recsys train` that finished")
        return self

    def metrics(self) -> dict:
        return read_json(self.path / METRICS, RETRAIN)

    def fingerprint(self) -> str:
        """A short hash of the best epoch's weights: which model is serving."""
        return hash_into(hashlib.sha256(), self.weights).hexdigest()[:16]

    def load_model(self, layout: Layout) -> torch.nn.Module:
        """The best epoch, ready to predict in this process (`layout` must have the run's
        modalities and hashed tables): built from config.json and the weights alone. A run
        sharded over several processes is gathered into one here."""
        import torch

        saved = self.saved
        if tuple(saved.get("modalities", ())) != layout.modalities:
            raise UsageError(f"{self.path} was trained with modalities "
                             f"{saved.get('modalities', [])}, the data was loaded with "
                             f"{list(layout.modalities)}")
        hashed = {n: layout.num_embeddings[layout.slot(n)] - 1 for n in layout.hashed}
        if saved.get("hashed_rows", {}) != hashed:
            raise UsageError(f"{self.path} hashed its IDs into {saved.get('hashed_rows', {})} "
                             f"rows, the data was loaded with {hashed}")
        if self.is_artifact:  # its program: no model class is built
            from recsys.artifact import Artifact

            return Artifact(self.path)
        from recsys.models.registry import build_model

        cfg = self.config()
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, layout, cfg.model_config)
        self.load_weights(model)
        return model

    def state_dict(self) -> dict:
        """The best epoch's tensors by name, without a model: mapped from best.pt (one process),
        or a sharded `best/` gathered into a model built as the run was."""
        if (self.path / BEST).is_file():
            return load_torch(self.path / BEST, RETRAIN, weights_only=True, mmap=True)
        if self.is_artifact:
            raise UsageError(f"{self.path} is an exported artifact: it keeps no training "
                             f"state; start from the run it was exported from")
        return self.load_model(self.layout()).state_dict()

    def optimizer_state(self) -> dict | None:
        """The best epoch's optimizer state ({dense_opt, fused_opts}), or None where the run
        kept none (trained in several processes, or before it was kept)."""
        path = self.path / BEST_OPTIM
        return load_torch(path, RETRAIN, weights_only=True) if path.is_file() else None

    def load_weights(self, model: torch.nn.Module) -> None:
        """The best epoch into `model`, sharded or not: a `best/` checkpoint folder (written by
        several processes) is resharded to the model's layout."""
        if (self.path / SHARDED_BEST).is_dir():
            weights = model.state_dict()
            load_sharded({"model": weights}, self.path / SHARDED_BEST)
            model.load_state_dict(weights)
        else:  # mapped, not read: no second copy of the tables in memory
            model.load_state_dict(load_torch(self.path / BEST, RETRAIN, weights_only=True,
                                             mmap=True))

    # ---- writing (the training loop) ------------------------------------------------------------
    def write_start(self, config: dict, dataset_meta: DatasetMeta) -> None:
        """A new run folder's config.json and its dataset's facts."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG).write_text(json.dumps(config, indent=2))
        write_json(dataset_meta.raw, self.path / DATASET_COPY)

    def write_metrics(self, metrics: dict) -> None:
        write_json(metrics, self.path / METRICS)

    def scores(self, split: str) -> Path:
        return self.path / SCORES.format(split=split)


def load_sharded(state: dict, path: Path) -> None:
    """Fill `state`'s tensors in place from a torch.distributed.checkpoint folder, whatever the
    sharding it was saved with (a 2-rank checkpoint loads into one process, too)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # "assuming ... a single process": yes, on purpose
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=path, no_dist=not dist.is_initialized())
