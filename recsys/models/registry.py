"""The model registry: every model by name, each a `base.Model` (forward on a `Batch`, its own
loss, its `Config` of hyper-parameters) whose declared `capabilities` say what it needs and
offers; the experiments and the sharding take their model lists from here."""

from __future__ import annotations

from recsys.dataset.layout import Layout
from recsys.errors import UsageError
from recsys.models.base import Model
from recsys.models.config import MODEL_NAMES, ModelConfig
from recsys.models.din import DIN
from recsys.models.dnn import SingleScenarioDNN
from recsys.models.dnn_mixed import DNNMixed
from recsys.models.dropoutnet import DropoutNet
from recsys.models.m2m import M2M
from recsys.models.maml import MAML
from recsys.models.melu import MeLU
from recsys.models.metaemb import MetaEmb
from recsys.models.mmoe import MMoE
from recsys.models.pepnet import PEPNet
from recsys.models.ple import PLE
from recsys.models.shared_bottom import SharedBottom
from recsys.models.star import STAR
from recsys.models.two_tower import TwoTower

MODELS: dict[str, type[Model]] = {
    # the AntM2C paper's multi-scenario baselines, then the newer multi-scenario models
    "dnn": SingleScenarioDNN,
    "dnn_mixed": DNNMixed,
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "star": STAR,
    "pepnet": PEPNet,
    "m2m": M2M,
    # the user's history against the candidate
    "din": DIN,
    # cold start
    "dropoutnet": DropoutNet,
    "metaemb": MetaEmb,
    "maml": MAML,
    "melu": MeLU,
    # retrieval: a user's vector and an item's, for a vector search over the catalogue
    "two_tower": TwoTower,
}
assert tuple(MODELS) == MODEL_NAMES, "models.config.MODEL_NAMES must name the registry's models"


def model_names(family: str | None = None, shardable: bool | None = None) -> tuple[str, ...]:
    """The registered models with the given capabilities, in registry order."""
    return tuple(n for n, c in MODELS.items()
                 if (family is None or c.capabilities.family == family)
                 and (shardable is None or c.capabilities.shardable == shardable))


def model_class(name: str) -> type[Model]:
    if name not in MODELS:
        raise UsageError(f"model {name!r}: unknown; choose one of {', '.join(MODELS)}",
                         fields="model")
    return MODELS[name]


def build_model(name: str, layout: Layout, cfg: ModelConfig | None = None) -> Model:
    """The named model with its config (its class's `Config`; the defaults without one)."""
    cls = model_class(name)
    cfg = cfg if cfg is not None else cls.Config()
    if not isinstance(cfg, cls.Config):
        raise UsageError(f"{name} takes a {cls.Config.__name__}, not a {type(cfg).__name__}")
    return cls(layout, cfg)
