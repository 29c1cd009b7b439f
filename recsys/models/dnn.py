"""dnn: the single-scenario baseline. One independent DNN (own embeddings, own MLP) per
scenario; each row reaches only its scenario's network, so each network learns from its
scenario's rows alone, exactly as if trained separately."""

import torch
from torch import nn

from recsys.models.base import ModelConfig
from recsys.models.dnn_mixed import DNNMixed


class SingleScenarioDNN(nn.Module):
    def __init__(self, layout, cfg: ModelConfig):
        super().__init__()
        self.nets = nn.ModuleList(DNNMixed(layout, cfg) for _ in layout.scenarios)

    def forward(self, batch):
        out = torch.zeros(len(batch), device=batch.labels.device)
        for s, net in enumerate(self.nets):
            mask = batch.scenario == s
            if mask.any():
                out = out.masked_scatter(mask, net(batch.select(mask)))
        return out
