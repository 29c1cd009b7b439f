"""Hyper-parameters every model has (`ModelConfig`; each model's own config adds its layers)
and the checks of their values. Light to import: the CLI's defaults and help text come from
here without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.errors import STRICT, UsageError


@dataclass
class ModelConfig:
    """Hyper-parameters every model has; each model's own config (models/<name>.py) adds its
    layers. A run's config.json records them all (`recsys train --config` sets them)."""

    __pydantic_config__ = STRICT  # read by pydantic when a file is validated

    embedding_dim: int = 16
    table_dtype: str = "fp32"  # fp32 | fp16 (the embedding tables' storage)
    embedding_lr: float = 0.05  # the sparse optimizer: row-wise Adagrad, inside the backward pass
    dropout: float = 0.0
    # text / image vectors: "concat" adds each projected vector group as one more embedding
    # slot; "gated" makes that slot a learned per-dimension mix of the projection and the
    # owner's ID embedding
    fusion: str = "concat"
    # the bottom every model's layers sit on: "mlp" is none (the embeddings as they are);
    # "dcn" is DCN-v2's cross layers, x <- x0 * (W x + b) + x, W of rank `cross_rank`
    backbone: str = "mlp"
    cross_layers: int = 2
    cross_rank: int = 64  # 0: full rank
    # the share of training rows whose history is cut to its latest k clicks, k drawn from 0 to
    # its length: most rows are busy users' with long histories, and a few-shot user's has a
    # click or three, which the model should read as well (make bench-feed trains with 0.5)
    history_truncation: float = 0.0
    # "dot": the logit also gets logistic MF's terms, <user, item> and, where the model reads the
    # history, <mean of the history's items, item>, from tables of their own (an MLP learns a
    # dot product badly, Rendle et al. 2020; its own history table learns "who clicked h clicks
    # v", which the candidate's table cannot); "mf-first": those terms with logistic MF's user
    # and item biases, trained alone until validation AUC stops improving, then the network
    # joins at full weight and the two train on from the MF's best epoch (joint training from
    # the first step leaves the dot part under-trained: the network fits the rows within a few
    # epochs and early stopping ends both); "none": the network alone; "" (the default): the
    # data decides once it is known (`TrainConfig.resolve_for_data`): mf-first for a model
    # that reads the history (whose dot term is what carries a user the training never saw),
    # dot for one that does not (docs/training.md says on which validation figures)
    interaction: str = ""


FUSIONS = ("concat", "gated")
INTERACTIONS = ("dot", "mf-first", "none")
BACKBONES = ("mlp", "dcn")
TABLE_DTYPE_BYTES = {"fp32": 4, "fp16": 2}  # the tables' storage: bytes a value
# what one process's tables are stored in, whatever table_dtype says: TorchRec's unsharded
# FusedEmbeddingBagCollection hands FBGEMM no storage type (the sharded modules do)
ONE_PROCESS_TABLE_DTYPE = "fp32"


def check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise UsageError(f"fusion {fusion}: choose one of {', '.join(FUSIONS)}", fields="fusion")


# integer hyper-parameters that may be 0 (every other one counts something: at least 1)
ZERO_ALLOWED = ("cross_layers", "cross_rank")
SHARES = ("dropout", "id_dropout", "history_truncation")  # in [0, 1)


def check_model_config(cfg: ModelConfig) -> None:
    """Values the types allow but the models cannot take: one UsageError naming the key."""
    check_fusion(cfg.fusion)
    if cfg.backbone not in BACKBONES:
        raise UsageError(f"backbone {cfg.backbone!r}: choose one of {', '.join(BACKBONES)}",
                         fields="backbone")
    if cfg.interaction and cfg.interaction not in INTERACTIONS:  # "": resolved with the data
        raise UsageError(f"interaction {cfg.interaction!r}: choose one of "
                         f"{', '.join(INTERACTIONS)}", fields="interaction")
    if cfg.table_dtype not in TABLE_DTYPE_BYTES:
        raise UsageError(f"table_dtype {cfg.table_dtype!r}: choose one of "
                         f"{', '.join(TABLE_DTYPE_BYTES)}")
    for key, value in vars(cfg).items():
        if isinstance(value, tuple):  # layer sizes
            bad = any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
            what = "layer sizes of at least 1 each"
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        elif key in SHARES:
            bad, what = not 0 <= value < 1, "in [0, 1)"
        elif isinstance(value, int):
            floor = 0 if key in ZERO_ALLOWED else 1
            bad, what = value < floor, f"at least {floor}"
        else:
            bad, what = value < 0, "at least 0"
        if bad:
            raise UsageError(f"{key} {value!r}: must be {what}", fields=key)
