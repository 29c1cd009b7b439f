"""ple: Progressive Layered Extraction. Each level has shared experts and experts of each
scenario; a scenario's gate mixes its own and the shared experts, a shared gate mixes all of
them for the next level; one tower per scenario on the last level."""

from dataclasses import dataclass

import torch
from torch import nn

from recsys.models.base import Capabilities, Model, SparseArch, mlp, route, tower
from recsys.models.config import ModelConfig


@dataclass
class PLEConfig(ModelConfig):
    expert: tuple[int, ...] = (128, 64)
    tower: tuple[int, ...] = (32,)
    levels: int = 2
    shared_experts: int = 2
    task_experts: int = 1  # per scenario


def _mix(gate: nn.Linear, gate_input: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
    weights = gate(gate_input).softmax(-1).unsqueeze(-1)  # (B, K, 1)
    return (weights * torch.stack(experts, dim=1)).sum(1)


class CGCLevel(nn.Module):
    """One Customized Gate Control level."""

    def __init__(self, in_dim: int, cfg: PLEConfig, n_scenarios: int, last: bool):
        super().__init__()
        self.n_scenarios = n_scenarios
        def experts(n):
            return nn.ModuleList(mlp(in_dim, cfg.expert, cfg.dropout) for _ in range(n))

        self.shared = experts(cfg.shared_experts)
        self.task = nn.ModuleList(experts(cfg.task_experts) for _ in range(n_scenarios))
        self.task_gates = nn.ModuleList(
            nn.Linear(in_dim, cfg.task_experts + cfg.shared_experts)
            for _ in range(n_scenarios))
        self.shared_gate = None if last else nn.Linear(
            in_dim, cfg.shared_experts + n_scenarios * cfg.task_experts)

    def forward(self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor):
        shared = [e(shared_input) for e in self.shared]
        task = [[e(task_inputs[s]) for e in self.task[s]] for s in range(self.n_scenarios)]
        outs = [_mix(self.task_gates[s], task_inputs[s], task[s] + shared)
                for s in range(self.n_scenarios)]
        shared_next = None if self.shared_gate is None else \
            _mix(self.shared_gate, shared_input, shared + [e for t in task for e in t])
        return outs, shared_next


class PLE(Model, name="ple"):
    capabilities = Capabilities("multi-scenario")
    Config = PLEConfig

    def __init__(self, layout, cfg: PLEConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        dims = [self.sparse.out_dim] + [cfg.expert[-1]] * (cfg.levels - 1)
        self.levels = nn.ModuleList(CGCLevel(d, cfg, len(layout.scenarios),
                                             last=i == cfg.levels - 1)
                                    for i, d in enumerate(dims))
        self.towers = nn.ModuleList(tower(cfg.expert[-1], cfg.tower, cfg.dropout)
                                    for _ in layout.scenarios)

    def forward(self, batch):
        x = self.sparse(batch)
        task_inputs, shared = [x] * len(self.towers), x
        for level in self.levels:
            task_inputs, shared = level(task_inputs, shared)
        return self.sparse.combine(route(torch.cat([t(h) for t, h in zip(self.towers,
                                                                          task_inputs)], dim=1),
                                         batch.scenario), batch)
