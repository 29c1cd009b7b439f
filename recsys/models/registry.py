"""The model registry: every model by name, each a `base.Model` (forward on a `Batch`, its own
loss, its `Config` of hyper-parameters) whose declared `capabilities` say what it needs and
offers; the experiments and the sharding take their model lists from here."""

from __future__ import annotations

from recsys.dataset.layout import Layout
from recsys.errors import UsageError
from recsys.models.base import REGISTRY, Model
from recsys.models.config import ModelConfig
from recsys.models import (din, dnn, dnn_mixed, dropoutnet, m2m, maml, melu, metaemb, mmoe,
                           pepnet, ple, shared_bottom, star, two_tower)

# importing a model's module registers it (base.Model's `name`); the modules in the tables'
# order: the AntM2C paper's multi-scenario baselines, then the newer multi-scenario models, the
# user's history against the candidate, cold start, retrieval
ORDER = (dnn, dnn_mixed, shared_bottom, mmoe, ple, star, pepnet, m2m, din, dropoutnet, metaemb,
         maml, melu, two_tower)
MODELS: dict[str, type[Model]] = {name: cls for module in ORDER for name, cls in REGISTRY.items()
                                  if cls.__module__ == module.__name__}
assert len(MODELS) == len(REGISTRY), "a registered model's module is missing from ORDER"


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
