"""`recsys plan`'s request: the ranks, their memory and the model whose tables are placed (the
run's own config is `recsys.config.TrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from recsys.artifact import DTYPES
from recsys.config import TrainConfig
from recsys.errors import UsageError
from recsys.models.config import ONE_PROCESS_TABLE_DTYPE, TABLE_DTYPE_BYTES, ModelConfig


@dataclass(frozen=True)
class PlanRequest:
    """`recsys plan`: the ranks, their memory and the model whose tables are placed."""

    preset: str = "full"
    world_size: int = 8
    device: str = "cuda"
    memory_gb: float = 80.0  # per rank: GPU memory on cuda, host memory on cpu
    dim: int = ModelConfig.embedding_dim
    dtype: str = "fp32"
    uvm: bool = False  # cuda: let tables spill to host memory through a UVM cache
    host_memory_gb: float = 256.0  # per rank, used with uvm
    batch_size: int = TrainConfig.batch_size  # per rank
    model: str = "mmoe"
    serving: bool = False  # one serving replica's memory (of memory_gb) instead of the ranks'

    def check(self) -> None:
        from recsys.data.presets import get_preset
        from recsys.models.registry import model_names
        from recsys.train.distributed import check_device_name

        get_preset(self.preset)
        check_device_name(self.device)
        if self.serving and self.dtype not in DTYPES:
            # served: a run as trained (one process: its tables in ONE_PROCESS_TABLE_DTYPE),
            # or an export's artifact in its own table type
            raise UsageError(f"dtype {self.dtype} with serving: choose "
                             f"{ONE_PROCESS_TABLE_DTYPE} (a run as trained) or an export's "
                             f"{', '.join(d for d in DTYPES if d != ONE_PROCESS_TABLE_DTYPE)}",
                             fields="dtype")
        if not self.serving and self.dtype not in TABLE_DTYPE_BYTES:
            raise UsageError(f"dtype {self.dtype}: choose one of {', '.join(TABLE_DTYPE_BYTES)}",
                             fields="dtype")
        if self.serving and self.model not in model_names():
            raise UsageError(f"model {self.model}: choose one of {', '.join(model_names())}",
                             fields="model")
        if not self.serving and self.model not in model_names(shardable=True):
            raise UsageError(f"model {self.model}: not shardable; choose one of "
                             f"{', '.join(model_names(shardable=True))}", fields="model")
        for name in ("world_size", "dim", "memory_gb", "batch_size"):
            if getattr(self, name) <= 0:
                raise UsageError(f"{name} {getattr(self, name)}: must be positive",
                                 fields=name)
        if self.uvm and self.device != "cuda":
            raise UsageError("uvm=True: UVM caching needs device cuda", fields=("uvm", "device"))
