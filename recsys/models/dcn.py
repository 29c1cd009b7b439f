"""DCN-v2's cross network (Wang et al., 2021), the bottom any model can sit on (`--backbone
dcn`): each layer multiplies the input row x0 element-wise by a linear map of the previous
layer's output and adds that output back, x <- x0 * (W x + b) + x, so layer l holds feature
crosses of degree l + 1 at the cost of one matrix. W is full rank or, on wide inputs, the
low-rank U V^T of the paper (its cost grows with the rank, not with the width squared)."""

from __future__ import annotations

import torch
from torch import nn


class CrossNet(nn.Module):
    def __init__(self, width: int, layers: int, rank: int = 0):
        super().__init__()
        low = 0 < rank < width
        self.maps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, rank, bias=False), nn.Linear(rank, width))
            if low else nn.Linear(width, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for linear in self.maps:
            x = x0 * linear(x) + x
        return x
