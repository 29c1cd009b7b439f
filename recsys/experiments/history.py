"""`recsys experiment history`: what the user's history is worth. Each model alone, with its
history pooled by target attention (`+history`) and by its mean (`+history-mean`), and the
models that read a history by nature (din), over K seeds, per scenario, overall and on few-shot
and zero-shot users. A gain is paired: the same seed with the history minus the model without
it (din against the first model)."""

from __future__ import annotations

from typing import Optional

from recsys.config import Arm
from recsys.experiments.paired import PairedExperiment
from recsys.experiments.context import Context
from recsys.experiments.spec import Option, listed
from recsys.schema import HISTORY_POOLINGS

SUBSETS = ("few_shot_user", "zero_shot_user")
MODELS = ("mmoe",)  # the models read with and without a history by default


class History(PairedExperiment):
    name = "history"
    about = ("Each model without the user's history, with it (target attention, mean) and "
             "din: per scenario and on few-shot / zero-shot users, with the paired gains.")
    plot_file = "history.png"
    options = (Option("models", Optional[str], None, "Models read with and without the "
                      "history, a,b (default mmoe); din joins them."),)
    title = "History experiment"
    explained = """`+history`: the model also reads the user's last clicks before each row (the
user_history view), pooled by DIN's target attention over the candidate item; `+history-mean`:
by their mean; `din` reads it by nature. Few-shot / zero-shot users: 1-4 / no training
interactions (a few-shot user's history is all the model knows of him)."""
    gains = "AUC gain from the history (same seed, with minus the model without)"
    gain_of = "the history"

    def arms(self, ctx: Context) -> dict[Arm, Arm | None]:
        """Every model alone; with each history pooling against itself; the history models
        (din) against the first model."""
        from recsys.models.registry import model_names

        models = listed(ctx.options.get("models")) or MODELS
        return {**{Arm(m): None for m in models},
                **{Arm(m, history=p): Arm(m) for m in models for p in HISTORY_POOLINGS},
                **{Arm(m): Arm(models[0]) for m in model_names(family="history")}}

    def columns(self, first: dict) -> tuple[str, ...]:
        return (*super().columns(first), *SUBSETS)
