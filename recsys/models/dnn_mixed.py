"""dnn_mixed: one DNN on all scenarios; the scenario is one of its sparse features."""

from dataclasses import dataclass

from recsys.models.base import Capabilities, Model, SparseArch, tower
from recsys.models.config import ModelConfig


@dataclass
class DNNConfig(ModelConfig):
    hidden: tuple[int, ...] = (256, 128, 64)


class DNNMixed(Model, name="dnn_mixed"):
    capabilities = Capabilities("multi-scenario")
    Config = DNNConfig

    def __init__(self, layout, cfg: DNNConfig):
        super().__init__()
        self.sparse = SparseArch(layout, cfg)
        self.net = tower(self.sparse.out_dim, cfg.hidden, cfg.dropout)

    def forward(self, batch):
        logit, = self.sparse.networks(self.sparse(batch), batch, [self.net])
        return self.sparse.combine(logit.squeeze(1), batch)
