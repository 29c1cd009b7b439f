"""dnn_mixed: one DNN on all scenarios; the scenario is one of its sparse features."""

from torch import nn

from recsys.models.base import ModelConfig, SparseArch, tower


class DNNMixed(nn.Module):
    def __init__(self, layout, cfg: ModelConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        self.net = tower(self.sparse.out_dim, cfg.hidden, cfg.dropout)

    def forward(self, batch):
        return self.net(self.sparse(batch)).squeeze(1)
