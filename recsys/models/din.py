"""din: Deep Interest Network. The user's history is pooled by target attention (DIN's
activation unit weighs each clicked item by its relevance to the candidate item; see
base.HistoryPool), joins the other embeddings, and an MLP shared by the scenarios ends in one
output layer per scenario."""

from dataclasses import dataclass

from recsys.models.base import Capabilities
from recsys.schema import HISTORY_POOLINGS
from recsys.models.shared_bottom import SharedBottom, SharedBottomConfig


@dataclass
class DINConfig(SharedBottomConfig):
    bottom: tuple[int, ...] = (200, 80)  # DIN's MLP
    tower: tuple[int, ...] = ()  # per scenario: one output layer


class DIN(SharedBottom, name="din"):
    """shared_bottom's network, whose input always holds the history by target attention."""

    capabilities = Capabilities("history", history=HISTORY_POOLINGS[0])
    Config = DINConfig
