"""`recsys train --init-from RUN`: a run that starts from a finished run's best epoch (its dense
weights, embedding rows and optimizer state) rather than from random weights, on data that may
hold more users and items than the parent saw (a log that grew by days).

A table that grew keeps the parent's rows for the IDs the parent knew and its "unknown" row
(always a table's last); the new IDs' rows are what a fresh run of the same seed would start
with. Everything else must match: a parent of another model, other features, scenarios or
model sizes is refused with one line naming the difference. The parent is read through the run
module alone (TorchEasyRec's continued training does the same from a checkpoint folder)."""

from __future__ import annotations

from dataclasses import asdict

import torch

from recsys.dataset.layout import Layout
from recsys.errors import UsageError
from recsys.run import Run
from recsys.config import TrainConfig


def parent_layout(parent: Run, cfg: TrainConfig, layout: Layout) -> Layout:
    """The parent's inputs, checked against this run's: the same model, features and model
    sizes, and no table smaller than the parent's; a UsageError naming the first difference."""
    parent.check_trained()
    was, before = parent.config(), parent.layout()
    facts = [("model", was.model, cfg.model), ("modalities", was.modalities, cfg.modalities),
             ("history", was.history, cfg.history),
             ("hashed rows", was.hashed_rows, cfg.hashed_rows),
             ("sparse features", before.sparse, layout.sparse),
             ("dense features", before.dense, layout.dense),
             ("scenarios", before.scenarios, layout.scenarios),
             ("history length", before.history_length, layout.history_length),
             ("vector features", [g.columns for g in before.vectors],
              [g.columns for g in layout.vectors])]
    if was.model == cfg.model:  # then its sizes (another model's config has other fields)
        facts += [(f"model_config.{k}", v, getattr(cfg.model_config, k))
                  for k, v in asdict(was.model_config).items() if _shapes_model(k)]
    for what, old, new in facts:
        if old != new:
            raise UsageError(f"--init-from {parent.path}: {what}: the parent's {_show(old)}, "
                             f"this run's {_show(new)}; warm-start only from a run of the same "
                             f"model on the same features", fields="init_from")
    for name, old, new in zip(layout.sparse, before.num_embeddings, layout.num_embeddings):
        if new < old:
            raise UsageError(f"--init-from {parent.path}: its {name} table has {old:,} rows, "
                             f"this dataset's {new:,}; a table may only grow (append data to "
                             f"the repo, never rebuild it with fewer IDs)", fields="init_from")
    return before


def _shapes_model(field: str) -> bool:
    """Whether a ModelConfig field decides a tensor's shape or the model's function (rates and
    dropout may change between a parent and its child)."""
    return not field.endswith("_lr") and field != "dropout"


def _show(value) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)


def grown_rows(layout_before: Layout, layout: Layout) -> set[tuple[int, int]]:
    """(parent rows, rows now) of every table that grew."""
    return {(old, new) for old, new in zip(layout_before.num_embeddings, layout.num_embeddings)
            if old != new}


def grow(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """`fresh` (a new table, or its optimizer state) with the parent's rows in place: the known
    IDs' rows and the unknown row (the last), the new IDs' rows left as they were."""
    out = fresh.clone()
    out[:old.shape[0] - 1] = old[:-1]
    out[-1] = old[-1]
    return out


def _merge(name: str, saved: dict, now: dict, grown: set[tuple[int, int]], parent: Run) -> dict:
    """`now`'s tensors replaced by `saved`'s (the parent's), grown where a table grew."""
    merged = {}
    for key, fresh in now.items():
        if key not in saved:
            raise UsageError(f"--init-from {parent.path}: its {name} has no {key}; warm-start "
                             f"only from a run of the same model", fields="init_from")
        old = saved[key]
        if not isinstance(fresh, torch.Tensor) or old.shape == fresh.shape:
            merged[key] = old
        elif old.dim() and old.shape[1:] == fresh.shape[1:] and \
                (old.shape[0], fresh.shape[0]) in grown:
            merged[key] = grow(old, fresh)
        else:
            raise UsageError(f"--init-from {parent.path}: its {name} {key} has shape "
                             f"{list(old.shape)}, this run's {list(fresh.shape)}; warm-start "
                             f"only from a run of the same model and sizes", fields="init_from")
    return merged


def warm_start(model: torch.nn.Module, parent: Run, layout_before: Layout, layout: Layout,
               dense_opt: torch.optim.Optimizer, sparse_opts: list) -> bool:
    """Load the parent's best epoch into `model` (built, seeded, for this run's `layout`) and
    its optimizer state into `dense_opt` and the fused `sparse_opts` (the state: the rates are
    this run's); whether the parent kept optimizer state (a run trained in several processes
    keeps its weights only)."""
    grown = grown_rows(layout_before, layout)
    model.load_state_dict(_merge("weights", parent.state_dict(), model.state_dict(), grown,
                                 parent))
    saved = parent.optimizer_state()
    if saved is None:
        return False
    rates = [{k: v for k, v in group.items() if k != "params"} for group in dense_opt.param_groups]
    dense_opt.load_state_dict(saved["dense_opt"])  # its moments; the rates stay this run's
    for group, own in zip(dense_opt.param_groups, rates, strict=True):
        group.update(own)
    for opt, state in zip(sparse_opts, saved["fused_opts"], strict=True):
        now = opt.state_dict()["state"]
        opt.load_state_dict({"state": {table: _merge("optimizer state",
                                                     state["state"].get(table, {}), rows,
                                                     grown, parent)
                                       for table, rows in now.items()}})
    return True
