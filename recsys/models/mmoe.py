"""mmoe: Multi-gate Mixture-of-Experts. Shared experts; each scenario mixes them with its own
softmax gate and scores with its own tower."""

from dataclasses import dataclass

import torch
from torch import nn

from recsys.models.base import Capabilities, Model, SparseArch, mlp, route, tower
from recsys.models.config import ModelConfig


@dataclass
class MMoEConfig(ModelConfig):
    expert: tuple[int, ...] = (128, 64)
    tower: tuple[int, ...] = (32,)
    n_experts: int = 4


class MMoE(Model, name="mmoe"):
    capabilities = Capabilities("multi-scenario")
    Config = MMoEConfig

    def __init__(self, layout, cfg: MMoEConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        d, self.n_scenarios = self.sparse.out_dim, len(layout.scenarios)
        self.experts = nn.ModuleList(mlp(d, cfg.expert, cfg.dropout)
                                     for _ in range(cfg.n_experts))
        self.gates = nn.Linear(d, self.n_scenarios * cfg.n_experts)  # all scenarios' gates at once
        self.towers = nn.ModuleList(tower(cfg.expert[-1], cfg.tower, cfg.dropout)
                                    for _ in layout.scenarios)

    def forward(self, batch):
        return self.sparse.combine(self.head(self.sparse(batch), batch.scenario, batch), batch)

    def head(self, x, scenario, batch=None):
        """Everything after the embedding lookups: experts, gates and towers (`batch`: the
        rows x came from, so that one request's shared columns are multiplied once)."""
        *experts, gates = self.sparse.networks(x, batch, [*self.experts, self.gates])
        experts = torch.stack(experts, dim=1)  # (B, E, H)
        gates = gates.view(x.shape[0], self.n_scenarios, -1).softmax(-1)  # (B, S, E)
        mixed = torch.einsum("bse,beh->bsh", gates, experts)
        return route(torch.cat([t(mixed[:, s]) for s, t in enumerate(self.towers)], dim=1),
                     scenario)
