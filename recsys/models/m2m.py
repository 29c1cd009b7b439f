"""m2m: Multi-Scenario Multi-Task Meta Learning (Zhang et al., CIKM 2022).

- Expert views: self-attention over the feature embeddings (each feature a token), then
  several expert MLPs, each a view of the row.
- Scenario knowledge: what describes the scenario (its embedding and statistics) through an
  MLP; the task's view is a learned vector (a click is the one task).
- Meta attention: the attention that mixes the experts has weights generated from the
  scenario knowledge, v . relu(W(s) [expert; task] + b(s)), softmax over the experts.
- Meta tower: layers whose weights and biases are generated from the scenario knowledge, with
  a residual connection, h <- relu(W(s) h + b(s)) + h, then an output layer.
So every scenario gets its own attention and tower from shared generators: what it has in
common with the others is learned once, what sets it apart from its own description.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recsys.errors import UsageError
from recsys.models.base import Capabilities, Model, ScenarioSide, SparseArch, mlp
from recsys.models.config import ModelConfig


@dataclass
class M2MConfig(ModelConfig):
    n_experts: int = 4
    expert: tuple[int, ...] = (64, 32)  # each expert's layers; the last is a view's width
    heads: int = 2  # of the self-attention over the feature embeddings
    scenario_hidden: int = 32  # width of the scenario knowledge
    tower_layers: int = 2  # generated layers of the meta tower


class M2M(Model, name="m2m"):
    capabilities = Capabilities("multi-scenario")
    Config = M2MConfig

    def __init__(self, layout, cfg: M2MConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        d, width = cfg.embedding_dim, cfg.expert[-1]
        if d % cfg.heads:
            raise UsageError(f"heads {cfg.heads}: must divide embedding_dim {d}")
        self.attention = nn.TransformerEncoderLayer(d, cfg.heads, dim_feedforward=2 * d,
                                                    dropout=cfg.dropout, batch_first=True)
        self.experts = nn.ModuleList(mlp(self.sparse.out_dim, cfg.expert, cfg.dropout)
                                     for _ in range(cfg.n_experts))
        self.side = ScenarioSide(layout, d)
        self.scenario = nn.Sequential(nn.Linear(self.side.width, cfg.scenario_hidden),
                                      nn.ReLU())
        self.task = nn.Parameter(torch.zeros(width))
        k = cfg.scenario_hidden
        self.attention_weight = nn.Linear(k, 2 * width * width)  # [expert; task] -> width
        self.attention_bias = nn.Linear(k, width)
        self.attention_v = nn.Parameter(torch.randn(width) / width ** 0.5)
        self.tower_weights = nn.ModuleList(nn.Linear(k, width * width)
                                           for _ in range(cfg.tower_layers))
        self.tower_biases = nn.ModuleList(nn.Linear(k, width) for _ in range(cfg.tower_layers))
        for gen in (self.attention_weight, *self.tower_weights):  # generated weights start
            nn.init.normal_(gen.weight, std=0.01)                 # small: the residual path
            nn.init.normal_(gen.bias, std=1 / width ** 0.5)       # dominates at first
        self.out = nn.Linear(width, 1)
        self.width = width

    def forward(self, batch):
        emb = self.sparse.lookup(batch)  # (B, F, D): each feature a token
        x = self.sparse.join(self.attention(emb), batch)
        views = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, W)
        s = self.scenario(self.side(emb, batch))  # (B, K)
        b, w = emb.shape[0], self.width
        pair = torch.cat([views, self.task.expand(b, views.shape[1], w)], dim=2)  # (B, E, 2W)
        hidden = torch.relu(torch.einsum("bei,bio->beo", pair,
                                         self.attention_weight(s).view(b, 2 * w, w))
                            + self.attention_bias(s)[:, None, :])
        alpha = (hidden @ self.attention_v).softmax(dim=1)  # (B, E)
        h = (alpha[:, :, None] * views).sum(1)
        for weight, bias in zip(self.tower_weights, self.tower_biases):
            h = torch.relu(torch.einsum("bi,bio->bo", h, weight(s).view(b, w, w)) + bias(s)) + h
        return self.sparse.combine(self.out(h).squeeze(1), batch)
