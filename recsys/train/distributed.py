"""Training over several processes with TorchRec: torchrun starts them, DistributedModelParallel
shards the embedding tables by a planner-made plan and wraps the dense layers in DDP, each rank
trains on its share of every batch, and predictions are gathered on every rank.

gloo on CPU (table-wise / column-wise: what TorchRec shards there), NCCL on CUDA (row-wise too).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner
from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation
from torchrec.distributed.planner.types import HardwareConfig, KernelConfig, \
    ParameterConstraints, TopologyFactory, TrainerConfig
from torchrec.distributed.sharding_plan import get_default_sharders
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.types import ShardingType
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection

from recsys.errors import UsageError
from recsys.eval.evaluate import predict_stream
from recsys.models.registry import model_class, model_names
from recsys.config import TrainConfig

DEVICES = ("cpu", "cuda")
GiB = 2 ** 30
RESERVED = 0.1  # share of each rank's memory the planner keeps for everything else
ROW_WISE_MIN_ROWS = 1_000_000


def sharding_types(device: str) -> list[str]:
    """What the planner may choose per table. Data-parallel is left out: a replicated copy of
    a large table on every rank defeats the purpose (and TorchRec's fused data-parallel
    tables do not run on CPU)."""
    types = [ShardingType.TABLE_WISE, ShardingType.COLUMN_WISE, ShardingType.TABLE_COLUMN_WISE]
    if device == "cuda":
        types += [ShardingType.ROW_WISE, ShardingType.TABLE_ROW_WISE]
    return [t.value for t in types]


def constraints(tables: dict[str, int], device: str,
                kernels: list[str] | None = None) -> dict[str, ParameterConstraints]:
    """Per table (name -> rows): the sharding types and kernels the planner may use. On CUDA,
    the large tables are split by rows over all ranks, so no rank holds a whole one."""
    out = {}
    for name, rows in tables.items():
        types = sharding_types(device)
        if device == "cuda" and rows >= ROW_WISE_MIN_ROWS:
            types = [ShardingType.ROW_WISE.value]
        out[name] = ParameterConstraints(sharding_types=types, compute_kernels=kernels)
    return out


def make_planner(world_size: int, local_world_size: int, device: str, memory_bytes: int,
                 tables: dict[str, int], batch_size: int = TrainConfig.batch_size,
                 host_bytes: int | None = None,
                 uvm: bool = False) -> EmbeddingShardingPlanner:
    """TorchRec's planner for `world_size` ranks of `memory_bytes` each (GPU memory on cuda;
    host memory on cpu). Tables stay in that memory unless `uvm`."""
    caps = {"hbm_cap_bytes": memory_bytes, "ddr_cap_bytes": host_bytes or memory_bytes} \
        if device == "cuda" else {"ddr_cap_bytes": memory_bytes}
    topology = TopologyFactory.create_topology(
        TrainerConfig(world_size=world_size, local_world_size=local_world_size, **caps),
        HardwareConfig(), KernelConfig(compute_device=device))
    kernels = [EmbeddingComputeKernel.FUSED.value]
    if uvm:
        kernels.append(EmbeddingComputeKernel.FUSED_UVM_CACHING.value)
    return EmbeddingShardingPlanner(
        topology=topology, batch_size=batch_size, debug=False,
        constraints=constraints(tables, device, kernels),
        storage_reservation=FixedPercentageStorageReservation(RESERVED))


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def table_configs(model: torch.nn.Module) -> dict[str, EmbeddingBagConfig]:
    """Every embedding table of the model: name -> its config (rows, width, ...)."""
    return {c.name: c for m in model.modules()
            if isinstance(m, FusedEmbeddingBagCollection) for c in m.embedding_bag_configs()}


def table_rows(model: torch.nn.Module) -> dict[str, int]:
    """Every embedding table of the model: name -> rows."""
    return {name: c.num_embeddings for name, c in table_configs(model).items()}


def check_device_name(device: str) -> None:
    if device not in DEVICES:
        raise UsageError(f"device {device}: choose one of {', '.join(DEVICES)}", fields="device")


def check_device(device: str) -> None:
    """A known device that this machine has."""
    check_device_name(device)
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: no CUDA GPU is visible here; use device cpu or run "
                         "on a GPU machine with the gpu extra (`make setup FLAVOR=gpu`)",
                         fields="device")


def check_shardable(model: str, nproc: int, batch_size: int) -> None:
    # shardable: every step makes the same lookups on every rank, one forward and backward
    # through one set of tables (models declare it: Capabilities.shardable)
    if not model_class(model).capabilities.shardable:
        raise UsageError(f"nproc {nproc}: {model} trains in one process only; shardable "
                         f"models: {', '.join(model_names(shardable=True))}", fields="nproc")
    if batch_size % nproc:
        raise UsageError(f"batch_size {batch_size} is not a multiple of nproc {nproc}: each "
                         f"process takes an equal share of every batch",
                         fields=("batch_size", "nproc"))


@dataclass
class Ranks:
    """This process's place in the job: without torchrun, one process and no process group;
    under torchrun (`distributed`), the model is sharded even with one rank (one GPU)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    distributed: bool = False
    local_world: int = 1  # processes on this machine

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str) -> "Ranks":
        """Join the process group torchrun describes in the environment."""
        # TorchRec / checkpoint deprecation notices, repeated by every rank, say nothing to users
        warnings.filterwarnings("ignore", category=FutureWarning)
        where = torch.device("cpu")
        if device == "cuda":
            where = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(where)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), where, True,
                   int(os.environ["LOCAL_WORLD_SIZE"]))

    def stop(self, finished: bool = True) -> None:
        """Leave the process group. A `finished` rank first waits for the others: one that tore
        its group down while a peer still wrote its last results aborted now and then ("terminate
        called without an active exception"); after a failure no barrier, a peer may be gone."""
        if dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()

    def gather(self, value):
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def shard(model: torch.nn.Module, ranks: Ranks) -> DistributedModelParallel:
    """The model with its tables placed by TorchRec's planner (same plan on every rank)."""
    host = host_memory_bytes() // ranks.local_world
    memory = torch.cuda.get_device_properties(ranks.device).total_memory \
        if ranks.device.type == "cuda" else host
    planner = make_planner(ranks.world, ranks.local_world, ranks.device.type, memory,
                           table_rows(model), host_bytes=host)
    plan = planner.collective_plan(model, get_default_sharders(), dist.GroupMember.WORLD)
    return DistributedModelParallel(model, device=ranks.device, plan=plan)


def predict_sharded(model, files, layout, ranks: Ranks, batch_size: int) -> np.ndarray:
    """Probabilities of every row of a split (`files`: dataset.stream.SplitFiles): each rank
    streams an equal stretch (the last one padded, since every rank must make the same
    sharded lookups), and the stretches are gathered in order."""
    from recsys.dataset.stream import StreamLoader

    loader = StreamLoader(files, layout, batch_size, rank=ranks.rank, world=ranks.world,
                          pad=True)
    probs = predict_stream(model, loader, device=ranks.device)
    return np.concatenate(ranks.gather(probs))[:files.rows]


def save_sharded(state: dict, path: Path, ranks: Ranks, extra: dict | None = None) -> None:
    """A torch.distributed.checkpoint of `state` (each rank writes its shards), written to a
    temporary folder that replaces `path` once every rank is done; `extra` maps file names in
    it to objects rank 0 writes beside (.json: JSON, else torch.save)."""
    tmp = path.with_name(path.name + ".tmp")
    if ranks.main:
        shutil.rmtree(tmp, ignore_errors=True)
    ranks.barrier()
    dcp.save(state, checkpoint_id=tmp)
    ranks.barrier()
    if ranks.main:
        for name, obj in (extra or {}).items():
            if name.endswith(".json"):
                (tmp / name).write_text(json.dumps(obj))
            else:
                torch.save(obj, tmp / name)
        old = path.with_name(path.name + ".old")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    ranks.barrier()
