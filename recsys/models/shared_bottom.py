"""shared_bottom: a shared MLP bottom, one tower per scenario."""

import torch
from torch import nn

from recsys.models.base import ModelConfig, SparseArch, mlp, route, tower


class SharedBottom(nn.Module):
    def __init__(self, layout, cfg: ModelConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        self.bottom = mlp(self.sparse.out_dim, cfg.bottom, cfg.dropout)
        self.towers = nn.ModuleList(tower(cfg.bottom[-1], cfg.tower, cfg.dropout)
                                    for _ in layout.scenarios)

    def forward(self, batch):
        h = self.bottom(self.sparse(batch))
        return route(torch.cat([t(h) for t in self.towers], dim=1), batch.scenario)
