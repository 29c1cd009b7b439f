"""Shared machinery of the cold-start models (dropoutnet, metaemb, maml, melu).

All four share one base, the dnn_mixed network (embeddings -> MLP tower) with two changes:
- a user's or item's embedding is a content prior (a small MLP over its profile embeddings,
  and its text / image vectors when the model has them) plus its own ID row, so the row learns
  only what the profile does not tell, and an ID with few interactions stays close to its prior;
- a defined cold path: an ID with no training interaction (a new ID, or a value outside the
  table) never had its row trained, so its slot takes the model's `cold_embedding` (the prior,
  unless a model learns a better one). Training drops a share of the rows' IDs to that path at
  random (DropoutNet), so the network learns to predict from it.
dropoutnet is this base; metaemb, maml and melu add their meta-learning on top of it. The
training counts per ID are buffers of the model, handed to it before training
(dataset.counts) and saved with it; the meta-learning tasks come with each batch as an episode
(dataset.episodes). So every model is a function of its batches: a resumed run replays an
uninterrupted one, and a saved model loads without its training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

from recsys.dataset.batch import Batch
from recsys.dataset.layout import Layout
from recsys.models.base import Capabilities, Model, SparseArch, tower
from recsys.models.dnn_mixed import DNNConfig
from recsys.schema import ITEM_ID, USER_ID

COLD_ENTITIES = (USER_ID, ITEM_ID)


@dataclass
class ColdStartConfig(DNNConfig):
    """dropoutnet's (and every cold-start model's): how often training drops an ID."""

    id_dropout: float = 0.3  # share of training rows whose user / item ID is dropped


@dataclass
class EpisodeConfig(ColdStartConfig):
    """A cold-start model that also learns on meta-learning episodes."""

    meta_tasks: int = 32  # tasks (users or items) per meta-learning step


class ColdStartModel(Model):
    # not shardable: the priors and meta-learning read and write table rows directly, which
    # sharded tables do not offer
    capabilities = Capabilities("cold-start", shardable=False, cold_path=True,
                                history_where_present="mean")
    Config = ColdStartConfig

    def __init__(self, layout: Layout, cfg: ColdStartConfig):
        super().__init__()
        self.layout, self.cfg = layout, cfg
        self.sparse = SparseArch(layout, cfg)
        self.net = tower(self.sparse.out_dim, cfg.hidden, cfg.dropout)
        self.slots = {name: layout.slot(name) for name in COLD_ENTITIES}
        # what is known of a new user / item before any interaction: its profile's
        # embeddings, and with --text / --image its projected vectors
        self.content_slots = {name: [layout.slot(f) for f in
                                     layout.content(name.removesuffix("_id"))] +
                              [layout.slot(g.view) for g in layout.vectors if g.owner == name]
                              for name in COLD_ENTITIES}
        self.priors = nn.ModuleDict({name: content_mlp(len(slots), cfg.embedding_dim)
                                     for name, slots in self.content_slots.items()})
        for name in COLD_ENTITIES:
            size = layout.num_embeddings[self.slots[name]]
            self.register_buffer(f"{name}_counts", torch.zeros(size, dtype=torch.int32))

    # ---- set-up from the training split ------------------------------------------------------
    def set_counts(self, counts: dict[str, np.ndarray], add: bool = False) -> None:
        """Training interactions per ID row (dataset.counts; the unknown row stays at zero:
        always cold). `add`: on top of the counts held (a warm start's parent's: an ID the
        parent trained on is not cold because today's data lacks it)."""
        for name in COLD_ENTITIES:
            buffer = getattr(self, f"{name}_counts")
            n = np.asarray(counts[name], dtype=np.int64)[:buffer.numel()].copy()
            if add:
                n += buffer.numpy()
            n[-1] = 0
            buffer.copy_(torch.from_numpy(np.minimum(n, np.iinfo(np.int32).max)
                                          .astype(np.int32)))

    def training_counts(self, batch: Batch, name: str) -> torch.Tensor:
        return getattr(self, f"{name}_counts")[batch.ids[:, self.slots[name]]]

    def cold_masks(self, batch: Batch, dropout: bool | None = None) -> dict[str, torch.Tensor]:
        """Rows whose user / item takes the cold path: unseen IDs, and in training (unless
        `dropout` says otherwise) a random `id_dropout` share of the rest."""
        dropout = self.training if dropout is None else dropout
        masks = {}
        for name in COLD_ENTITIES:
            masks[name] = self.training_counts(batch, name) == 0
            if dropout:
                masks[name] |= torch.rand(len(batch)) < self.cfg.id_dropout
        return masks

    # ---- forward -----------------------------------------------------------------------------
    def prior(self, emb: torch.Tensor, name: str) -> torch.Tensor:
        """(B, D) content prior of `name` from the rows' embeddings (B, F, D)."""
        return self.priors[name](emb[:, self.content_slots[name]].flatten(1))

    def correction(self, emb: torch.Tensor, name: str) -> torch.Tensor | float:
        """What the cold path adds to the prior: nothing here; metaemb learns a correction."""
        return 0.0

    def cold_embedding(self, emb: torch.Tensor, name: str) -> torch.Tensor:
        """(B, D) embedding of cold IDs of `name`: the content prior plus the correction."""
        return self.prior(emb, name) + self.correction(emb, name)

    def compose(self, emb: torch.Tensor, cold: dict[str, torch.Tensor]) -> torch.Tensor:
        """The looked-up rows (B, F, D) with each entity slot made its embedding: prior + row
        for seen IDs, the cold embedding for cold ones."""
        out = emb
        for name, mask in cold.items():
            slot = self.slots[name]
            value = self.prior(emb, name) + emb[:, slot]
            # in inference always, so that an exported program holds the cold path whatever
            # rows it was traced on (where no row is cold, `where` keeps `value`)
            if mask.any() or not self.training:
                value = torch.where(mask[:, None], self.cold_embedding(emb, name), value)
            out = replace_slot(out, slot, value)
        return out

    def embed(self, batch: Batch, cold: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.sparse.join(self.compose(self.sparse.lookup(batch), cold), batch)

    @torch.no_grad()
    def start_from_cold(self, name: str, ids: torch.Tensor, batch: Batch) -> None:
        """Make the IDs `ids` (one per row of `batch`) seen, starting from what they were served
        cold: each row is set to the correction, so prior + row = the cold embedding (the
        warm-up protocol)."""
        self.eval()
        self.sparse.table(name)[ids] = self.correction(self.sparse.lookup(batch), name)
        if self.sparse.dot is not None:  # the dot part's term was 0 for them: it stays so
            self.sparse.dot.table(name)[ids] = 0.0
        getattr(self, f"{name}_counts")[ids] = 1

    def forward(self, batch: Batch) -> torch.Tensor:
        cold = self.cold_masks(batch)
        return self.sparse.combine(self.net(self.embed(batch, cold)).squeeze(1), batch, cold)

    def loss(self, batch: Batch, episode=None) -> torch.Tensor:
        """The training objective on one batch (subclasses add their meta-learning terms on
        the episode's tasks)."""
        return binary_cross_entropy_with_logits(self(batch), batch.labels)


def content_mlp(n_features: int, dim: int) -> nn.Sequential:
    """Profile embeddings (n_features x dim, flattened) -> one embedding of size dim."""
    return nn.Sequential(nn.Linear(n_features * dim, 32), nn.ReLU(), nn.Linear(32, dim))


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
