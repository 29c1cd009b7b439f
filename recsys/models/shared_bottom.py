"""shared_bottom: a shared MLP bottom, one tower per scenario."""

from dataclasses import dataclass

import torch
from torch import nn

from recsys.models.base import Capabilities, Model, SparseArch, mlp, route, tower
from recsys.models.config import ModelConfig


@dataclass
class SharedBottomConfig(ModelConfig):
    bottom: tuple[int, ...] = (256, 128)
    tower: tuple[int, ...] = (32,)


class SharedBottom(Model, name="shared_bottom"):
    capabilities = Capabilities("multi-scenario")
    Config = SharedBottomConfig

    def __init__(self, layout, cfg: SharedBottomConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        self.bottom = mlp(self.sparse.out_dim, cfg.bottom, cfg.dropout)
        self.towers = nn.ModuleList(tower(cfg.bottom[-1], cfg.tower, cfg.dropout)
                                    for _ in layout.scenarios)

    def forward(self, batch):
        h, = self.sparse.networks(self.sparse(batch), batch, [self.bottom])
        return self.sparse.combine(route(torch.cat([t(h) for t in self.towers], dim=1),
                                         batch.scenario), batch)
