"""A shardable model with an objective of its own (clicks weigh three times a non-click), for
the tests that train it over several processes: the processes import it from here."""

from __future__ import annotations

from torch.nn.functional import binary_cross_entropy_with_logits

from recsys.models.registry import MODELS
from recsys.models.mmoe import MMoE

NAME = "weighted_mmoe"


class WeightedMMoE(MMoE):
    def loss(self, batch, episode=None):
        return binary_cross_entropy_with_logits(self(batch), batch.labels,
                                                weight=1 + 2 * batch.labels)


def register() -> None:
    MODELS[NAME] = WeightedMMoE
