"""`recsys plan`: will a preset's tables fit a cluster? The model is built on the meta device (no
memory used) at the preset's ID scale, TorchRec's planner places every table on the ranks, and
the plan is printed with its bytes per rank and a verdict; when nothing fits, the same planner
is asked about the usual remedies (fp16 tables, more ranks, a smaller dim, UVM caching) and the
ones that fit are named. `--serving`: what one serving replica holds instead (`serving`)."""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from torchrec.distributed.planner.types import PlannerError
from torchrec.distributed.sharding_plan import get_default_sharders
from torchrec.distributed.types import ShardingPlan

from recsys.data.presets import get_preset
from recsys.train.config import PlanRequest
from recsys.antm2c import ANTM2C
from recsys.dataset.layout import Layout
from recsys.dataset.meta import DatasetMeta
from recsys.models.registry import build_model, model_class
from recsys.models.base import dense_bytes_with_adam, dense_parameters, table_bytes
from recsys.models.config import ONE_PROCESS_TABLE_DTYPE
from recsys.models.quant import exported_table_bytes
from recsys.schema import ITEM_ID
from recsys.train.distributed import RESERVED, GiB, make_planner, table_configs, table_rows


def _meta_layout(req: PlanRequest) -> Layout:
    preset = get_preset(req.preset)
    return Layout.from_meta(DatasetMeta(ANTM2C, preset.n_users, preset.n_items))


def _meta_model(req: PlanRequest, layout: Layout | None = None) -> torch.nn.Module:
    layout = layout or _meta_layout(req)
    with torch.device("meta"):
        # served, the model is built as trained (in one process) whatever its export's dtype
        return build_model(req.model, layout, model_class(req.model).Config(
            embedding_dim=req.dim,
            table_dtype=ONE_PROCESS_TABLE_DTYPE if req.serving else req.dtype))


def try_plan(req: PlanRequest) -> tuple[ShardingPlan | None, torch.nn.Module, str]:
    """The planner's plan (None when nothing fits), the meta model, the planner's reason."""
    model = _meta_model(req)
    planner = make_planner(req.world_size, min(req.world_size, 8), req.device,
                           int(req.memory_gb * GiB), table_rows(model), req.batch_size,
                           int(req.host_memory_gb * GiB), req.uvm)
    try:
        return planner.plan(model, get_default_sharders()), model, ""
    except PlannerError as e:
        return None, model, str(e).splitlines()[0]


def shard_rows(plan: ShardingPlan, model: torch.nn.Module, req: PlanRequest) -> list[dict]:
    """One row per table: its sharding, kernel, ranks and the bytes each rank holds
    (weights + row-wise Adagrad state, one float32 per row of each shard)."""
    sizes = table_rows(model)
    rows = []
    for module_plan in plan.plan.values():
        for name, sharding in module_plan.items():
            per_rank: dict[int, int] = {}
            for shard in sharding.sharding_spec.shards:
                n_rows, n_cols = shard.shard_sizes
                per_rank[shard.placement.rank()] = per_rank.get(shard.placement.rank(), 0) + \
                    table_bytes(n_rows, n_cols, req.dtype)
            rows.append({"table": name, "rows": sizes[name],
                         "sharding": sharding.sharding_type, "kernel": sharding.compute_kernel,
                         "ranks": sorted(per_rank), "bytes_per_rank": per_rank})
    return rows


def summary(req: PlanRequest) -> dict:
    """The plan as a report: per-table rows, per-rank totals, the verdict, and remedies when
    it does not fit."""
    plan, model, reason = try_plan(req)
    report = {"request": asdict(req), "tables": len(table_rows(model)),
              "fits": plan is not None}
    if plan is None:
        report.update(reason=reason, remedies=remedies(req))
        return report
    tables = shard_rows(plan, model, req)
    dense = dense_bytes_with_adam(model)  # replicated on every rank
    ranks = [sum(t["bytes_per_rank"].get(r, 0) for t in tables) for r in range(req.world_size)]
    report.update(shards=tables, dense_bytes=dense, rank_bytes=[b + dense for b in ranks],
                  usable_bytes=int(req.memory_gb * GiB * (1 - RESERVED)))
    return report


def remedies(req: PlanRequest) -> list[str]:
    """The usual changes that make the planner find a plan, each as the request's field and
    its new value ("dtype fp16"; a switch as "uvm=True")."""
    options = []  # each kind from the smallest change to the largest
    if req.dtype == "fp32":
        options.append(("dtype fp16", replace(req, dtype="fp16")))
    for factor in (2, 4, 8):
        options.append((f"world_size {req.world_size * factor}",
                        replace(req, world_size=req.world_size * factor)))
    for factor in (2, 4):
        if req.dim // factor >= 4:
            options.append((f"dim {req.dim // factor}", replace(req, dim=req.dim // factor)))
    if req.device == "cuda" and not req.uvm:
        options.append((f"uvm=True (tables cached in GPU memory from {req.host_memory_gb:g} GB "
                        f"host memory per rank)", replace(req, uvm=True)))
    found, answered = [], set()
    for flag, option in options:
        kind = flag.split()[0]
        if kind in answered:
            continue  # the smallest change of each kind that fits is enough
        if try_plan(option)[0] is not None:
            found.append(flag)
            answered.add(kind)
    return found


# an item's row of the serving cache, per value: an ID column's int64, a dense or vector float32
CACHE_ID_BYTES, CACHE_VALUE_BYTES = 8, 4


def serving(req: PlanRequest) -> dict:
    """One serving replica (`recsys serve` worker) of the preset's model: every table whole
    (in fp32 a run as trained is loaded: weights + row-wise Adagrad state; in another dtype
    `recsys export`'s artifact: the inference kernel's rows), the dense weights in float32,
    and the item cache (each item's model inputs and the Arrow row they came from: twice its
    IDs and values). Bytes each; `--workers N` holds N of them. Whether it fits memory_gb."""
    layout = _meta_layout(req)
    model = _meta_model(req, layout)
    exported = req.dtype != ONE_PROCESS_TABLE_DTYPE  # else the run as trained is served

    def held(rows: int, dim: int) -> int:
        return exported_table_bytes(rows, dim, req.dtype) if exported else \
            table_bytes(rows, dim, req.dtype)

    tables = [{"table": name, "rows": c.num_embeddings, "dim": c.embedding_dim,
               "bytes": held(c.num_embeddings, c.embedding_dim)}
              for name, c in table_configs(model).items()]
    ids = sum(w for o, w in zip(layout.owners, layout.widths or (1,) * len(layout.sparse))
              if o == "item")
    values = sum(1 for o in layout.dense_owners if o == "item") + \
        sum(g.width for g in layout.vectors if g.owner == ITEM_ID)
    cache = 2 * get_preset(req.preset).n_items * (ids * CACHE_ID_BYTES + values * CACHE_VALUE_BYTES)
    dense = sum(p.numel() for p in dense_parameters(model)) * 4
    replica = sum(t["bytes"] for t in tables) + dense + cache
    return {"request": asdict(req), "exported": exported, "tables": tables, "dense_bytes": dense,
            "cache_bytes": cache, "replica_bytes": replica,
            "fits": replica <= req.memory_gb * GiB}
