"""dnn: the single-scenario baseline. One independent DNN (own embeddings, own MLP) per
scenario; each row reaches only its scenario's network, so each network learns from its
scenario's rows alone, exactly as if trained separately."""

from torch import nn

from recsys.models.base import Capabilities, Model
from recsys.models.dnn_mixed import DNNConfig, DNNMixed


class SingleScenarioDNN(Model, name="dnn"):
    # not shardable: a batch without a scenario's rows skips its network, and a sharded
    # lookup must run on every rank at once
    capabilities = Capabilities("multi-scenario", shardable=False)
    Config = DNNConfig

    def __init__(self, layout, cfg: DNNConfig):
        super().__init__()
        self.nets = nn.ModuleList(DNNMixed(layout, cfg) for _ in layout.scenarios)

    def forward(self, batch):
        out = batch.labels.new_zeros(batch.labels.shape[0])
        for s, net in enumerate(self.nets):
            mask = batch.scenario == s
            # in inference every net, rows or none: an exported program replays each
            if mask.any() or not self.training:
                out = out.masked_scatter(mask, net(batch.select(mask)))
        return out
