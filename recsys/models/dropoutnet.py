"""dropoutnet: trains with user and item ID embeddings dropped at random (replaced by the cold
path, zeros), so the content features (profile, context) learn to carry the prediction. At
serving, cold IDs take exactly that path."""

import torch

from recsys.models.cold import COLD_ENTITIES, ColdStartModel


class DropoutNet(ColdStartModel):
    def cold_masks(self, batch):
        cold = super().cold_masks(batch)
        if self.training:
            for name in COLD_ENTITIES:
                cold[name] = cold[name] | (torch.rand(len(batch)) < self.cfg.id_dropout)
        return cold
