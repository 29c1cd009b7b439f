"""Models register themselves: the registry's list is the one list of names (each class's own
`name`), `recsys models` prints it, and a second model of a taken name is refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.models.base import REGISTRY, Model
from recsys.models.registry import MODELS, model_names


def test_every_model_is_registered_once_under_its_own_name():
    assert MODELS == REGISTRY and all(cls.name == name for name, cls in MODELS.items())
    assert model_names(family="multi-scenario")[:2] == ("dnn", "dnn_mixed")  # the tables' order
    shown = CliRunner().invoke(app, ["models"], terminal_width=120)
    assert shown.exit_code == 0
    assert all(f"│ {name} " in shown.output for name in MODELS)


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="'mmoe' registered twice"):
        class Another(Model, name="mmoe"):
            pass
    assert REGISTRY["mmoe"].__name__ == "MMoE"


def test_a_cold_start_model_reads_the_history_where_the_dataset_has_one():
    """Resolved once the dataset is known (the run's config then says it); none: not read;
    the arm keeps its name (the history is the model's own)."""
    from recsys.config import TrainConfig

    for model in ("dropoutnet", "metaemb", "maml", "melu"):
        read, without, refused = (TrainConfig(model=model), TrainConfig(model=model),
                                  TrainConfig(model=model, history="none"))
        read.resolve_for_data(True), without.resolve_for_data(False)
        refused.resolve_for_data(True)
        assert (read.history, without.history, refused.history) == ("mean", "", "none")
        assert read.name == without.name == model and refused.name == f"{model}+history-none"
        refused.check()
    mmoe = TrainConfig(model="mmoe")
    mmoe.resolve_for_data(True)
    assert mmoe.history == ""  # the others read it only when told


def test_the_interaction_is_mf_first_where_the_model_reads_a_history():
    """The default interaction, resolved with the data: mf-first for a model that reads the
    user's history, dot for one that does not; a value given is kept; a model without a dot
    part keeps none."""
    from recsys.config import TrainConfig
    from recsys.models.registry import model_class

    def resolved(model: str, has_history: bool = True, **kw) -> str:
        cfg = TrainConfig(model=model, **kw)
        cfg.resolve_for_data(has_history)
        cfg.check()
        return cfg.model_config.interaction

    assert resolved("din") == resolved("mmoe", history="mean") == "mf-first"
    assert resolved("dropoutnet") == "mf-first" and resolved("dropoutnet", False) == "dot"
    assert resolved("mmoe") == resolved("dropoutnet", history="none") == "dot"
    assert resolved("din", model_config=model_class("din").Config(interaction="dot")) == "dot"
    assert resolved("two_tower", history="mean") == resolved("maml") == "none"
