"""`recsys experiment multi-modal`: each model with and without text vectors (and, if asked,
with text and image vectors), over K seeds, per scenario and on zero-shot users and items. The
gain of a modality is the paired difference of the same model and seed with and without it."""

from __future__ import annotations

from recsys.config import Arm
from recsys.experiments.context import Context
from recsys.experiments.paired import PairedExperiment
from recsys.experiments.spec import Option

SUBSETS = ("zero_shot_user", "zero_shot_item")
MODELS = ("dnn_mixed", "mmoe")


class MultiModal(PairedExperiment):
    name = "multi-modal"
    about = ("dnn_mixed and mmoe with and without text vectors: per scenario and on zero-shot "
             "users and items, with the paired gain.")
    plot_file = "multi_modal.png"
    options = (Option("image", bool, False, "Also train each model with text and image "
                      "vectors."),)
    title = "Multi-modal experiment"
    explained = """`+text`: the model also gets the sentence embeddings of the user's and
the item's text (`recsys encode-text`), each group projected into one more embedding slot;
`+image`: the item's image vector too. Zero-shot: the user / item has no training interaction."""
    gains = "AUC gain from the modality (same model and seed, with minus without)"
    gain_of = "the modality"

    def arms(self, ctx: Context) -> dict[Arm, Arm | None]:
        """Each model alone, with text, and (with `image`) with text and image; each against
        the same model alone."""
        variants = ((), ("text",), ("text", "image")) if ctx.options.get("image") \
            else ((), ("text",))
        return {Arm(m, v): Arm(m) if v else None for m in MODELS for v in variants}

    def columns(self, first: dict) -> tuple[str, ...]:
        return (*super().columns(first), *SUBSETS)
