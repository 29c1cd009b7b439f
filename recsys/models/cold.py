"""Shared machinery of the cold-start models (dropoutnet, metaemb, maml, melu).

Each is the dnn_mixed network (embeddings -> MLP tower) with a defined cold path: a user or
item ID with no training interaction (a new ID, or a value outside the table) never had its
embedding row trained, so the model fills that slot with its `cold_embedding` instead. The
training counts per ID are buffers of the model, saved with it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

from recsys.dataset.loader import Batch, Layout, SplitData, rows_batch
from recsys.models.base import ModelConfig, SparseArch, tower
from recsys.schema import FEATURES

COLD_ENTITIES = ("user_id", "item_id")
# What is known about a new user / item before any interaction: its profile features.
CONTENT = {f"{owner}_id": tuple(f.name for f in FEATURES
                                if f.owner == owner and f.kind == "categorical")
           for owner in ("user", "item")}


class ColdStartModel(nn.Module):
    def __init__(self, layout: Layout, cfg: ModelConfig):
        super().__init__()
        self.layout, self.cfg = layout, cfg
        self.sparse = SparseArch(layout, cfg)
        self.net = tower(self.sparse.out_dim, cfg.hidden, cfg.dropout)
        self.slots = {name: layout.slot(name) for name in COLD_ENTITIES}
        for name in COLD_ENTITIES:
            size = layout.num_embeddings[self.slots[name]]
            self.register_buffer(f"{name}_counts", torch.zeros(size, dtype=torch.int32))
        self.rng = np.random.default_rng(0)

    # ---- set-up from the training split ------------------------------------------------------
    def observe(self, train: SplitData, seed: int = 0) -> None:
        """Count training interactions per ID (the unknown row stays at zero: always cold)."""
        for name, slot in self.slots.items():
            counts = getattr(self, f"{name}_counts")
            n = np.bincount(train.ids[:, slot], minlength=counts.numel())[:counts.numel()]
            n[-1] = 0
            counts.copy_(torch.from_numpy(n.astype(np.int32)))
        self.rng = np.random.default_rng([seed, 7])
        self.train_data = train

    def training_counts(self, batch: Batch, name: str) -> torch.Tensor:
        return getattr(self, f"{name}_counts")[batch.ids[:, self.slots[name]]]

    def cold_masks(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {name: self.training_counts(batch, name) == 0 for name in COLD_ENTITIES}

    # ---- forward -----------------------------------------------------------------------------
    def cold_embedding(self, emb: torch.Tensor, name: str) -> torch.Tensor:
        """(B, D) embedding for cold IDs of `name`, from the row's embeddings (B, F, D).
        Here: zeros (no information); subclasses learn better ones."""
        return emb.new_zeros(emb.shape[0], emb.shape[2])

    def embed(self, batch: Batch, cold: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network's input with each cold slot replaced by its cold embedding."""
        emb = self.sparse.lookup(batch)
        for name, mask in cold.items():
            if mask.any():
                emb = replace_slot(emb, self.slots[name],
                                   torch.where(mask[:, None], self.cold_embedding(emb, name),
                                               emb[:, self.slots[name]]))
        return self.sparse.join(emb, batch)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(self.embed(batch, self.cold_masks(batch))).squeeze(1)

    def loss(self, batch: Batch) -> torch.Tensor:
        """The training objective on one batch (subclasses add their meta-learning terms)."""
        return binary_cross_entropy_with_logits(self(batch), batch.labels)

    # ---- meta-learning helpers -----------------------------------------------------------------
    def rows(self, index: np.ndarray) -> Batch:
        """A batch of training rows by index (any shape; flattened)."""
        return rows_batch(self.train_data, self.layout.sparse, np.asarray(index).ravel())


def replace_slot(emb: torch.Tensor, slot: int, value: torch.Tensor) -> torch.Tensor:
    """emb (..., F, D) with emb[..., slot, :] = value (..., D), without in-place writes."""
    mask = torch.zeros(emb.shape[-2], 1, dtype=torch.bool)
    mask[slot] = True
    return torch.where(mask, value.unsqueeze(-2), emb)


def linear_layers(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


def task_forward(layers: list[nn.Linear], x: torch.Tensor,
                 own: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The tower on x (T, K, in) where layers in `own` use per-task weights (T, out, in) and
    biases (T, out); the others use the shared layer. ReLU between layers, as `tower`."""
    for i, layer in enumerate(layers):
        if i in own:
            weight, bias = own[i]
            x = torch.einsum("tki,toi->tko", x, weight) + bias[:, None, :]
        else:
            x = layer(x)
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x.squeeze(-1)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-task mean BCE over the rows in mask, summed over tasks: (T,) tasks' gradients stay
    their own."""
    bce = binary_cross_entropy_with_logits(logits, labels, reduction="none") * mask
    return (bce.sum(1) / mask.sum(1).clamp(min=1)).sum()
