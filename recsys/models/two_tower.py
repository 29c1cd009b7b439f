"""two_tower: a retrieval model. A user tower (the user's features, the row's scenario and
context, with `--history mean` the mean of the user's history) and an item tower (the item's
features and vectors) each end in a unit vector; a row's logit is their inner product over a
temperature, so every item of a catalogue can be scored against a user by one vector search.

It trains on the clicks of a batch: each clicked row's user against every item clicked in the
batch (in-batch negatives, a sampled softmax), each logit less the log of its item's sampling
probability (the logQ correction of Yi et al. 2019, "Sampling-bias-corrected neural modeling":
popular items are sampled as negatives more often and would otherwise be pushed down). That
probability is estimated in stream, per item: the decayed mean number of steps between two
batches in which it is clicked."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import cross_entropy, normalize

from recsys.errors import UsageError
from recsys.models.base import Capabilities, HistoryPool, Model, SparseArch, mlp
from recsys.schema import HISTORY_POOLINGS
from recsys.models.config import ModelConfig
from recsys.schema import ITEM_ID

ITEM_OWNER = "item"


@dataclass
class TwoTowerConfig(ModelConfig):
    user_tower: tuple[int, ...] = (128, 64)  # the last size is the vectors' dimension
    item_tower: tuple[int, ...] = (128, 64)
    temperature: float = 0.05
    frequency_decay: float = 0.01  # of the streaming estimate of how often an item is clicked
    interaction: str = "none"  # its score is a dot product already


class TwoTower(Model, name="two_tower"):
    # the history (--history mean) pooled by its mean alone: a user's vector cannot depend on
    # the candidate item
    capabilities = Capabilities("retrieval", shardable=False,
                                history_poolings=(HISTORY_POOLINGS[1],), interaction=False)
    Config = TwoTowerConfig

    def __init__(self, layout, cfg: TwoTowerConfig):
        super().__init__()
        if cfg.backbone != "mlp":
            raise UsageError(f"backbone {cfg.backbone!r}: two_tower's towers are their own; "
                             f"use the default (mlp)", fields="backbone")
        if cfg.user_tower[-1] != cfg.item_tower[-1]:
            raise UsageError(f"user_tower {cfg.user_tower} and item_tower {cfg.item_tower} must "
                             f"end in the same size (the vectors' dimension)",
                             fields="item_tower")
        self.sparse = SparseArch(layout, cfg)
        d = cfg.embedding_dim
        # who owns each embedding slot: the sparse features, the vector groups, then the
        # history's slots (its pooled clicks the user's; their product with the candidate
        # item is left out, as anything of the candidate is from the user's side)
        owners = [*layout.owners, *(g.owner for g in layout.vectors),
                  *(("user", None) if layout.history_length else ())]
        assert len(owners) == self.sparse.n_slots and HistoryPool.SLOTS == 2
        self.item_slots = [i for i, o in enumerate(owners) if o == ITEM_OWNER]
        self.user_slots = [i for i, o in enumerate(owners) if o not in (ITEM_OWNER, None)]
        # the item's dense features (its recent counts) change by the day; its vector is
        # made of what it is, the user's of everything else the row knows
        self.user_dense = [j for j, o in enumerate(layout.dense_owners) if o != ITEM_OWNER]
        self.user = _tower(len(self.user_slots) * d + len(self.user_dense), cfg.user_tower,
                           cfg.dropout)
        self.item = _tower(len(self.item_slots) * d, cfg.item_tower, cfg.dropout)
        self.vector_dim = cfg.item_tower[-1]
        self.item_column = layout.slot(ITEM_ID)  # its column of a batch's ID matrix
        self.temperature, self.decay = cfg.temperature, cfg.frequency_decay
        items = layout.num_embeddings[layout.slot(ITEM_ID)]
        self.register_buffer("steps", torch.zeros((), dtype=torch.float64))
        self.register_buffer("last_step", torch.zeros(items, dtype=torch.float64))
        self.register_buffer("step_gap", torch.ones(items, dtype=torch.float64))

    def vectors(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, dim) unit vectors of each row's user and item."""
        emb = self.sparse.lookup(batch)
        user = torch.cat([emb[:, self.user_slots].flatten(1), batch.dense[:, self.user_dense]],
                         dim=1)
        if batch.one_history:  # one request: one user, scenario and context, one user vector
            user = user[:1]
        item = normalize(self.item(emb[:, self.item_slots].flatten(1)), dim=1)
        return normalize(self.user(user), dim=1).expand_as(item), item

    def forward(self, batch):
        user, item = self.vectors(batch)
        return (user * item).sum(1) / self.temperature

    def loss(self, batch, episode=None):
        user, item = self.vectors(batch)
        clicked = batch.labels > 0
        items = batch.ids[clicked, self.item_column]
        if len(items) < 2:  # nothing to tell apart: a zero that keeps the graph
            return (user * item).sum() * 0.0
        if self.training:
            self._count(items)
        logits = user[clicked] @ item[clicked].t() / self.temperature - \
            self.log_frequency(items).unsqueeze(0)
        # an item clicked twice in the batch is no negative of itself
        same = (items.unsqueeze(1) == items.unsqueeze(0)) & \
            ~torch.eye(len(items), dtype=torch.bool, device=items.device)
        return cross_entropy(logits.masked_fill(same, float("-inf")),
                             torch.arange(len(items), device=items.device))

    def log_frequency(self, items: torch.Tensor) -> torch.Tensor:
        """log of each item's estimated chance to be clicked in a batch: -log(steps between
        two batches that click it)."""
        return -torch.log(self.step_gap[items]).float()

    @torch.no_grad()
    def _count(self, items: torch.Tensor) -> None:
        self.steps += 1
        seen = torch.unique(items)
        self.step_gap[seen] = (1 - self.decay) * self.step_gap[seen] + \
            self.decay * (self.steps - self.last_step[seen])
        self.last_step[seen] = self.steps


def _tower(in_dim: int, sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    """An MLP whose last layer is linear (the vector, normalized by the caller)."""
    return nn.Sequential(*mlp(in_dim, sizes[:-1], dropout),
                         nn.Linear(sizes[-2] if len(sizes) > 1 else in_dim, sizes[-1]))
