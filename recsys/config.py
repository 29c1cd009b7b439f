"""A training run's configuration: every hyper-parameter of the run, the optimizers and the
model, with the defaults kept here (the run) and in each model's `Config` (the model).

`recsys train --config FILE.yaml` and `recsys experiment ... --config FILE.yaml` read it; the
file has the shape of a run's config.json (without its provenance), and flags given on the
command line win over it:

    model: mmoe            # train only; experiments take their models from --models
    epochs: 20             # the most: early stopping on validation AUC (patience) decides
    patience: 2
    batch_size: 2048
    dense_lr: 0.001        # Adam on the dense layers
    weight_decay: 0.0      # of the dense layers (Adam's L2)
    model_config:          # the model's keys (for an experiment: the keys every model has)
      embedding_dim: 16
      embedding_lr: 0.05   # row-wise Adagrad on the embedding rows
      backbone: dcn
      n_experts: 8

It sits below `train/` so that a run folder (`recsys.run`), serving and evaluation read it
without importing training. The module is light to import (the registry and the layout are
imported where used): the CLI's defaults and help text come from these dataclasses without
importing torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from recsys.errors import STRICT, UsageError
from recsys.schema import HISTORY_POOLINGS, NO_HISTORY
from recsys.models.config import ModelConfig, check_model_config
from recsys.files import read_yaml


MAX_SEED = 2 ** 63 - 1  # seeds are 64-bit integers
# A warm start's dense rate, as a share of a fresh run's (the rolling evaluation's update arm,
# `recsys follow`). Yesterday's dense layers already fit every day before; one day at a fresh
# run's rate pulls them toward that day, which costs next-day AUC, most on new users, while the
# new day's ID rows learn at their own row-wise rate.
UPDATE_DENSE_LR_SHARE = 0.1
# `recsys follow`'s passes over a cycle's impressions: one, as online learning reads a stream
# (each impression trained on once; the update is kept only if it beats its parent on the
# cycle's validation rows)
FOLLOW_EPOCHS = 1


@dataclass(frozen=True)
class Provenance:
    """Where a run came from, kept in its config.json beside the config: the dataset it read
    (and its fingerprint), the processes it ran in, the run it started from, the code's commit.
    A changed commit does not stop a resume; the rest does."""

    dataset: str
    dataset_fingerprint: str
    nproc: int | None = None  # None: one process
    init_from: str | None = None  # a warm start's parent run, and its fingerprint
    init_fingerprint: str | None = None
    code: dict | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "code"}

    @classmethod
    def from_json(cls, saved: dict) -> "Provenance":
        return cls(**{k: saved.get(k) for k in PROVENANCE})


# keys of config.json that say where the run came from, not how it trains
PROVENANCE = tuple(f.name for f in fields(Provenance))


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: the part of a run's config its runs differ by."""

    model: str
    modalities: tuple[str, ...] = ()  # "text", "image"
    history: str = ""  # a history pooling; "": none beyond what the model reads by nature
    backbone: str = "mlp"

    @property
    def name(self) -> str:
        """The arm as its run folder and the tables name it: "mmoe+text+history+dcn"."""
        history = (history_token(self.history),) if self.history else ()
        backbone = () if self.backbone == "mlp" else (self.backbone,)
        return "+".join((self.model, *self.modalities, *history, *backbone))

    @classmethod
    def from_json(cls, data: dict) -> "Arm":
        return cls(**{**data, "modalities": tuple(data.get("modalities", ()))})


@dataclass
class TrainConfig:
    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    model: str
    # the most epochs: training stops once validation AUC has not improved for `patience`
    # epochs and keeps the best one, so the data decides how long (2 epochs on `small`, 6 on
    # MovieLens-100K's 80k rows) and no epoch count is tuned per dataset
    epochs: int = 20
    batch_size: int = 2048
    dense_lr: float = 1e-3  # Adam, dense parameters (the sparse rate is the model's)
    weight_decay: float = 0.0
    seed: int = 0
    patience: int = 2  # epochs without a better validation AUC before stopping
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: at epoch ends only)
    modalities: tuple[str, ...] = ()  # "text", "image": vectors fused with the IDs
    # the user's history, pooled by "attention" or "mean" ("": not read; a model that reads
    # it by nature, din, takes its own by default, and one that reads it where present, the
    # cold-start models, takes its own when the dataset has one (`resolve_for_data`); "none":
    # not read by such a model either)
    history: str = ""
    # ID feature -> rows its raw IDs are hashed into (user_rows / item_rows on the CLI)
    hashed_rows: dict[str, int] = field(default_factory=dict)
    model_config: ModelConfig | None = None  # None: the model's defaults

    def __post_init__(self):
        from recsys.models.registry import model_class

        cls = model_class(self.model)
        if self.model_config is None:
            self.model_config = cls.Config()
        self.history = self.history or cls.capabilities.history

    def resolve_for_data(self, dataset_has_history: bool) -> None:
        """What the defaults leave to the data, once the dataset is known (the run's saved
        config then says what it read and how it trained): the history of a model that reads
        it where present, and the interaction (mf-first where the model reads a history)."""
        from recsys.models.registry import model_class

        can = model_class(self.model).capabilities
        if not self.history and can.history_where_present and dataset_has_history:
            self.history = can.history_where_present
        if not self.model_config.interaction:  # (a model without a dot part says "none")
            reads = bool(self.history) and self.history != NO_HISTORY
            self.model_config.interaction = "mf-first" if reads else "dot"

    @property
    def arm(self) -> "Arm":
        """What an experiment varies between its runs: the model, its modalities, its history
        (none where the model reads its own by nature) and its backbone."""
        from recsys.models.registry import model_class

        can = model_class(self.model).capabilities
        own = can.history or can.history_where_present
        return Arm(self.model, tuple(self.modalities),
                   self.history if self.history != own else "", self.model_config.backbone)

    @property
    def name(self) -> str:
        return self.arm.name

    def check(self) -> None:
        from recsys.dataset.layout import check_history, check_modalities
        from recsys.models.registry import model_class

        cls = model_class(self.model)  # an unknown name fails here, before any data is read
        if not isinstance(self.model_config, cls.Config):
            raise UsageError(f"{self.model} takes a {cls.Config.__name__}")
        check_modalities(self.modalities)
        check_history(self.history)
        if cls.capabilities.history and self.history != cls.capabilities.history:
            raise UsageError(f"history {self.history!r}: {self.model} always pools it by "
                             f"{cls.capabilities.history}; leave history out",
                             fields="history")
        if self.history and self.history != NO_HISTORY and \
                self.history not in cls.capabilities.history_poolings:
            raise UsageError(f"history {self.history!r}: {self.model} pools it by "
                             f"{' or '.join(cls.capabilities.history_poolings)} only",
                             fields="history")
        check_model_config(self.model_config)
        if self.model_config.interaction != "none" and not cls.capabilities.interaction:
            raise UsageError(f"interaction {self.model_config.interaction!r}: {self.model} has "
                             f"no dot part; leave interaction out (or none)",
                             fields="interaction")
        for name, rows in self.hashed_rows.items():
            rows_field = f"{name.removesuffix('_id')}_rows"  # user_id -> user_rows
            if rows < 1:
                raise UsageError(f"{rows_field} {rows}: must be at least 1", fields=rows_field)
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} {getattr(self, name)}: must be at least 1",
                                 fields=name)
        for name in ("dense_lr", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name} {getattr(self, name)}: must be at least 0",
                                 fields=name)
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"seed {self.seed}: must be a non-negative 64-bit integer",
                             fields="seed")
        if self.checkpoint_every < 0:
            raise UsageError(f"checkpoint_every {self.checkpoint_every}: must be 0 (epoch "
                             f"ends only) or more", fields="checkpoint_every")

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples become lists, as on disk

    @classmethod
    def from_json(cls, data: dict, where: str = "the config") -> "TrainConfig":
        """A config from its JSON / YAML form (config.json, a --config file), checked: an
        unknown key or a value of the wrong type is one UsageError naming it."""
        from recsys.models.registry import model_class

        if not isinstance(data, dict):
            raise UsageError(f"{where}: holds a {type(data).__name__}, not `key: value` lines")
        data = dict(data)
        if "model" not in data:
            raise UsageError(f"{where}: model: missing (it is required)")
        model = model_class(str(data["model"]))
        model_data = data.pop("model_config", None) or {}
        run = _validated(TrainConfig, {**data, "model_config": None}, where)
        run.model_config = _validated(
            model.Config, model_data, where, "model_config.",
            f"; {run.model} takes {', '.join(f.name for f in fields(model.Config))}")
        return run


def history_token(pooling: str) -> str:
    """A history pooling as a run's name and an experiment's arm say it: "history" (attention),
    "history-mean"."""
    return "history" if pooling == HISTORY_POOLINGS[0] else f"history-{pooling}"


# the run's keys a config file may set; a run's config.json also holds where it ran, which a
# config file read from it leaves aside
FILE_KEYS = tuple(f.name for f in fields(TrainConfig))


def _validated(cls, data: dict, where: str, prefix: str = "", hint: str = ""):
    """`data` as an instance of the dataclass `cls`, or a UsageError naming the first bad key
    (`prefix`: where `data` sits in the file; `hint` ends the message)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as e:
        error = e.errors()[0]
        loc = prefix + ".".join(str(p) for p in error["loc"]) or "the file"
        what = {"missing": "missing (it is required)",
                "unexpected_keyword_argument": "not a known key (check its spelling)"}.get(
            error["type"], error["msg"])
        raise UsageError(f"{where}: {loc}: {what}{hint}") from None


def read_config(path: Path, model: str | None = None) -> dict:
    """A --config file's keys (checked that they are a run's keys). `model`: the --model flag,
    which wins over the file's."""
    if not path.is_file():
        raise UsageError(f"config {path}: no such file; pass a YAML file", fields="config")
    data = read_yaml(path, "fix the config file") or {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: holds a {type(data).__name__}, not `key: value` lines; the "
                         f"keys are {', '.join(FILE_KEYS)}")
    data = {k: v for k, v in data.items() if k not in PROVENANCE}
    unknown = [k for k in data if k not in FILE_KEYS]
    if unknown:
        raise UsageError(f"{path}: {unknown[0]}: not a known key; the keys are "
                         f"{', '.join(FILE_KEYS)}")
    if model is not None:
        data["model"] = model
    return data


def config_with_model(path: Path | None, model: str | None) -> dict:
    """A command's --config file (or none) with its --model in: the model must be named by
    one of them."""
    data = read_config(path, model) if path is not None else {}
    if model is not None:
        data["model"] = model
    if "model" not in data:
        raise UsageError("missing --model: pass it, or `model:` in a --config file")
    return data


def resolve(file: dict, flags: dict, model_flags: dict | None = None,
            where: str = "the config") -> TrainConfig:
    """The run's config: the defaults, then the config file's keys, then the flags given
    (None: not given). `model_flags` go into the model's config (--fusion, --backbone)."""
    data = {**file, **{k: v for k, v in flags.items() if v is not None}}
    data["model_config"] = {**(data.get("model_config") or {}),
                            **{k: v for k, v in (model_flags or {}).items() if v is not None}}
    cfg = TrainConfig.from_json(data, where)
    try:
        cfg.check()
    except UsageError as e:  # name the file when the value came from it
        given = {k for d in (flags, model_flags or {}) for k, v in d.items() if v is not None}
        if not file or given & set(e.fields):
            raise
        raise UsageError(f"{where}: {e}") from None
    return cfg
