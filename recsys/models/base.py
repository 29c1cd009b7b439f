"""Shared building blocks: the embedding arch (TorchRec, fused optimizer), MLPs, routing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedTensor

from recsys.dataset.loader import Batch, Layout
from recsys.errors import UsageError


@dataclass
class ModelConfig:
    """Hyper-parameters of every model (each uses the fields it needs)."""

    embedding_dim: int = 16
    table_dtype: str = "fp32"  # fp32 | fp16 (the embedding tables' storage)
    embedding_lr: float = 0.05  # row-wise Adagrad, applied inside the backward pass
    hidden: tuple[int, ...] = (256, 128, 64)  # dnn / dnn_mixed
    bottom: tuple[int, ...] = (256, 128)  # shared_bottom
    expert: tuple[int, ...] = (128, 64)  # mmoe / ple experts
    tower: tuple[int, ...] = (32,)
    n_experts: int = 4  # mmoe
    ple_levels: int = 2
    ple_shared_experts: int = 2
    ple_task_experts: int = 1
    dropout: float = 0.0
    # text / image vectors: "concat" adds each projected vector group as one more embedding
    # slot; "gated" makes that slot a learned per-dimension mix of the projection and the
    # owner's ID embedding
    fusion: str = "concat"
    # cold start (dropoutnet, metaemb, maml, melu)
    id_dropout: float = 0.3  # share of training rows whose user / item ID is dropped
    meta_tasks: int = 32  # tasks (users or items) per meta-learning step
    # maml / melu: weight of the meta loss beside the usual loss. It moves the shared network
    # with the noisy gradient of a few dozen tasks, which at weight 1 swamps the usual loss.
    meta_weight: float = 0.1
    inner_lr: float = 0.01  # maml / melu: step size of the per-task (inner) update
    inner_steps: int = 1
    metaemb_weight: float = 1.0  # metaemb: its meta loss moves only the generators
    metaemb_alpha: float = 0.1  # metaemb: weight of the cold loss against the warm-up loss
    metaemb_lr: float = 0.1  # metaemb: step size of the simulated warm-up


FUSIONS = ("concat", "gated")
TABLE_DTYPES = {"fp32": (DataType.FP32, 4), "fp16": (DataType.FP16, 2)}  # type, bytes


def check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise UsageError(f"--fusion {fusion}: choose one of {', '.join(FUSIONS)}")


class SparseArch(nn.Module):
    """One embedding table per sparse feature, sizes from the Layout, and one projection per
    vector group (text / image) of the Layout.

    FusedEmbeddingBagCollection runs FBGEMM's table-batched kernel with row-wise Adagrad
    applied in the backward pass: only the rows a batch touches are updated, so a step's cost
    does not grow with table size. The dense optimizer must skip these weights
    (see `dense_parameters`)."""

    def __init__(self, layout: Layout, cfg: ModelConfig):
        super().__init__()
        check_fusion(cfg.fusion)
        # a multi-valued feature's values (genres) are pooled by their mean
        widths = layout.widths or (1,) * len(layout.sparse)
        tables = [EmbeddingBagConfig(name=f"t_{name}", embedding_dim=cfg.embedding_dim,
                                     num_embeddings=size, feature_names=[name],
                                     data_type=TABLE_DTYPES[cfg.table_dtype][0],
                                     pooling=PoolingType.MEAN if width > 1 else PoolingType.SUM)
                  for name, size, width in zip(layout.sparse, layout.num_embeddings, widths)]
        # the default device: "meta" when built to be sharded or planned (no memory used)
        self.ebc = FusedEmbeddingBagCollection(tables=tables, optimizer_type=RowWiseAdagrad,
                                               optimizer_kwargs={"lr": cfg.embedding_lr},
                                               device=torch.get_default_device())
        self.dim, self.n_sparse, self.keys = cfg.embedding_dim, len(layout.sparse), \
            list(layout.sparse)
        groups = layout.vectors
        self.spans = [(sum(g.width for g in groups[:i]), g.width) for i, g in enumerate(groups)]
        self.owner_slots = [layout.slot(g.owner) for g in groups]
        self.projections = nn.ModuleList(nn.Linear(g.width, cfg.embedding_dim) for g in groups)
        self.gates = nn.ModuleList(nn.Linear(2 * cfg.embedding_dim, cfg.embedding_dim)
                                   for _ in groups) if cfg.fusion == "gated" else None
        self.n_slots = len(layout.sparse) + len(groups)
        self.out_dim = cfg.embedding_dim * self.n_slots + len(layout.dense)

    def lookup(self, batch: Batch) -> torch.Tensor:
        """(B, F + G, D): one embedding per sparse feature, in Layout order, then one per
        vector group."""
        pooled = self.ebc(batch.sparse)
        if pooled.keys() != self.keys:  # sharded tables answer grouped by rank: reorder
            values = KeyedTensor.regroup([pooled], [self.keys])[0]
        else:
            values = pooled.values()
        emb = values.view(len(batch), self.n_sparse, self.dim)
        if not self.spans:
            return emb
        slots = []
        for i, (start, width) in enumerate(self.spans):
            value = self.projections[i](batch.vectors[:, start:start + width])
            if self.gates is not None:
                own = emb[:, self.owner_slots[i]]
                gate = torch.sigmoid(self.gates[i](torch.cat([own, value], dim=1)))
                value = gate * value + (1 - gate) * own
            slots.append(value)
        return torch.cat([emb, torch.stack(slots, dim=1)], dim=1)

    def join(self, emb: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, F, D) embeddings + the batch's dense features -> the model's input row."""
        return torch.cat([emb.flatten(1), batch.dense], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.join(self.lookup(batch), batch)

    def table(self, name: str) -> torch.Tensor:
        """The embedding table of feature `name`, as a view: writes change the model."""
        return self.ebc.state_dict()[f"embedding_bags.t_{name}.weight"]


def mlp(in_dim: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = size
    return nn.Sequential(*layers)


def tower(in_dim: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """An MLP ending in one logit."""
    body = mlp(in_dim, sizes, dropout)
    return nn.Sequential(*body, nn.Linear(sizes[-1] if sizes else in_dim, 1))


def route(per_scenario: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
    """(B, S) logits of every scenario's tower -> (B,) the row's own scenario."""
    return per_scenario.gather(1, scenario.unsqueeze(1)).squeeze(1)


def training_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The model's own objective where it has one (the meta-learning models), else BCE."""
    if hasattr(model, "loss"):
        return model.loss(batch)
    return binary_cross_entropy_with_logits(model(batch), batch.labels)


def sparse_optimizers(model: nn.Module) -> list:
    """The fused (in-backward) optimizers of the model's embedding tables (one for a model
    sharded by DistributedModelParallel)."""
    if isinstance(model, DistributedModelParallel):
        return [model.fused_optimizer]
    return [m.fused_optimizer() for m in model.modules()
            if isinstance(m, FusedEmbeddingBagCollection)]


def set_sparse_lr(model: nn.Module, lr: float) -> None:
    for opt in sparse_optimizers(model):
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()  # hands the new rate to the fused kernel


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters for the dense optimizer: everything but the fused embedding tables."""
    fused = {id(p) for m in model.modules()
             if isinstance(m, (FusedEmbeddingBagCollection, ShardedEmbeddingBagCollection))
             for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in fused]


def table_bytes(rows: int, dim: int, dtype: str = "fp32") -> int:
    """Bytes of `rows` embedding rows of width `dim`: the weights in `dtype` and their row-wise
    Adagrad state (one float32 per row)."""
    return rows * dim * TABLE_DTYPES[dtype][1] + rows * 4


def dense_bytes_with_adam(model: nn.Module) -> int:
    """float32 bytes of the dense parameters with Adam's two moments."""
    return sum(p.numel() for p in dense_parameters(model)) * 4 * 3
