"""din: Deep Interest Network. The user's history is pooled by target attention (DIN's
activation unit weighs each clicked item by its relevance to the candidate item; see
base.HistoryPool), joins the other embeddings, and an MLP shared by the scenarios ends in one
output layer per scenario."""

from dataclasses import dataclass

import torch
from torch import nn

from recsys.models.base import Capabilities, Model, SparseArch, mlp, route, tower
from recsys.models.config import HISTORY_POOLINGS, ModelConfig


@dataclass
class DINConfig(ModelConfig):
    hidden: tuple[int, ...] = (200, 80)  # DIN's MLP
    tower: tuple[int, ...] = ()  # per scenario, after the shared MLP


class DIN(Model):
    capabilities = Capabilities("history", history=HISTORY_POOLINGS[0])
    Config = DINConfig

    def __init__(self, layout, cfg: DINConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        self.bottom = mlp(self.sparse.out_dim, cfg.hidden, cfg.dropout)
        self.towers = nn.ModuleList(tower(cfg.hidden[-1], cfg.tower, cfg.dropout)
                                    for _ in layout.scenarios)

    def forward(self, batch):
        h = self.bottom(self.sparse(batch))
        return route(torch.cat([t(h) for t in self.towers], dim=1), batch.scenario)
