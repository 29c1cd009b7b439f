"""Models by name. Each takes a `Batch` and returns one logit per row."""

from __future__ import annotations

from torch import nn

from recsys.dataset.loader import Layout, SplitData
from recsys.errors import UsageError
from recsys.models.base import ModelConfig
from recsys.models.dnn import SingleScenarioDNN
from recsys.models.dnn_mixed import DNNMixed
from recsys.models.dropoutnet import DropoutNet
from recsys.models.maml import MAML
from recsys.models.melu import MeLU
from recsys.models.metaemb import MetaEmb
from recsys.models.mmoe import MMoE
from recsys.models.ple import PLE
from recsys.models.shared_bottom import SharedBottom

MODELS: dict[str, type[nn.Module]] = {
    "dnn": SingleScenarioDNN,
    "dnn_mixed": DNNMixed,
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "dropoutnet": DropoutNet,
    "metaemb": MetaEmb,
    "maml": MAML,
    "melu": MeLU,
}
MULTI_SCENARIO_MODELS = ("dnn", "dnn_mixed", "shared_bottom", "mmoe", "ple")
COLD_START_MODELS = ("dropoutnet", "metaemb", "maml", "melu")


def model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise UsageError(f"unknown model '{name}': choose one of {', '.join(MODELS)} (--model)")
    return MODELS[name]


def build_model(name: str, layout: Layout, cfg: ModelConfig | None = None,
                train: SplitData | None = None, seed: int = 0) -> nn.Module:
    """The named model; given the training split, cold-start models also learn from it what
    they need before training (interaction counts per ID, meta-learning tasks)."""
    model = model_class(name)(layout, cfg or ModelConfig())
    if train is not None and hasattr(model, "observe"):
        model.observe(train, seed)
    return model
