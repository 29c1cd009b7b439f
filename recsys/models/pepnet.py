"""pepnet: Parameter and Embedding Personalized Network (Chang et al., KDD 2023).

- Gate NU: a two-layer network ending in gamma * sigmoid, so a gate starts near 1 (gamma = 2)
  and can scale what it gates up or down.
- EPNet: a gate from what describes the scenario (its embedding and statistics) and the
  embeddings themselves (gradient stopped) scales every embedding value: the scenario picks
  what each feature contributes.
- PPNet: a gate per layer of the network, from the user's and the item's ID embeddings and
  EPNet's output (gradient stopped), scales that layer's output: per-user (and item)
  parameters without a table of them.
The paper's per-task towers are one tower here: a click is the one task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recsys.models.base import Capabilities, Model, ScenarioSide, SparseArch
from recsys.models.config import ModelConfig
from recsys.schema import ITEM_ID, USER_ID


@dataclass
class PEPNetConfig(ModelConfig):
    hidden: tuple[int, ...] = (256, 128, 64)
    gate_hidden: int = 64
    gate_scale: float = 2.0  # gamma of every gate


class GateNU(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, scale: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim), nn.Sigmoid())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.net(x)


class PEPNet(Model, name="pepnet"):
    capabilities = Capabilities("multi-scenario")
    Config = PEPNetConfig

    def __init__(self, layout, cfg: PEPNetConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        d = cfg.embedding_dim
        width = d * self.sparse.n_slots  # every embedding value
        self.side = ScenarioSide(layout, d)
        self.embedding_gate = GateNU(self.side.width + width, cfg.gate_hidden, width,
                                     cfg.gate_scale)
        self.persons = [layout.slot(n) for n in (USER_ID, ITEM_ID) if n in layout.sparse]
        prior = d * len(self.persons) + width
        sizes = (self.sparse.out_dim, *cfg.hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.layer_gates = nn.ModuleList(GateNU(prior, cfg.gate_hidden, b, cfg.gate_scale)
                                         for b in cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(sizes[-1], 1)

    def forward(self, batch):
        emb = self.sparse.lookup(batch)  # (B, F, D)
        general = emb.flatten(1)
        gated = general * self.embedding_gate(
            torch.cat([self.side(emb, batch), general.detach()], dim=1))
        prior = torch.cat([emb[:, self.persons].flatten(1), gated.detach()], dim=1)
        h = self.sparse.rows(torch.cat([gated, batch.dense], dim=1))
        for layer, gate in zip(self.layers, self.layer_gates):
            h = self.dropout(torch.relu(layer(h)) * gate(prior))
        return self.sparse.combine(self.out(h).squeeze(1), batch)
