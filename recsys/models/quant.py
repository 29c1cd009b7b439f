"""A trained model's embedding tables for inference: FBGEMM's inference kernel
(IntNBitTableBatchedEmbeddingBagsCodegen, the one TorchRec's quantized collections run) over
tables stored in int8 / int4 (row-wise, a float16 scale and bias a row), fp16 or fp32.

A `QuantTables` reads its features' IDs from the batch's ID matrix with tensor operations alone,
so a traced program replays it for any batch size (no KJT split, whose sizes are Python ints).
"""

from __future__ import annotations

import torch
from fbgemm_gpu.split_embedding_configs import SparseType
from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation
from fbgemm_gpu.split_table_batched_embeddings_ops_inference import (
    IntNBitTableBatchedEmbeddingBagsCodegen,
    align_to_cacheline,
    rounded_row_size_in_bytes,
)
from torch import nn
from torchrec.modules.embedding_configs import pooling_type_to_pooling_mode
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedTensor

from recsys.artifact import DTYPES
from recsys.dataset.batch import Batch, kjt
from recsys.dataset.layout import Layout
from recsys.models.config import TABLE_DTYPE_BYTES

# the storage types an exported table takes: FBGEMM's type and its bits a value
EXPORT_DTYPES = dict(zip(DTYPES, [(SparseType.INT8, 8), (SparseType.INT4, 4),
                                  (SparseType.FP16, 16), (SparseType.FP32, 32)]))

ROW_ALIGNMENT = 1  # bytes a row is padded to: none on CPU
SCALE_BIAS_BYTES = 4  # int8 / int4: a float16 scale and bias a row


def exported_table_bytes(rows: int, dim: int, dtype: str) -> int:
    """Bytes of an exported table of `rows` rows of width `dim` in `dtype`, as the inference
    kernel stores it (each row padded, each table from a 128-byte cache line)."""
    row = rounded_row_size_in_bytes(dim, EXPORT_DTYPES[dtype][0], ROW_ALIGNMENT,
                                    SCALE_BIAS_BYTES)
    return align_to_cacheline(rows * row)


def quantized_rows(weight: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A float table -> FBGEMM's inference rows (uint8) and, for int8 / int4, each row's
    float16 scale and bias (4 bytes)."""
    sparse_type, bits = EXPORT_DTYPES[dtype]
    weight = weight.detach().float().contiguous()
    if sparse_type in (SparseType.FP32, SparseType.FP16):
        return (weight if bits == 32 else weight.half()).view(torch.uint8), None
    rows = torch.ops.fbgemm.FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf(weight, bits)
    return rows[:, :-4].contiguous(), rows[:, -4:].contiguous()


class QuantTables(nn.Module):
    """The tables of a FusedEmbeddingBagCollection in `dtype`, answering the features it
    holds for a batch as the collection does (a KeyedTensor, one pooled row per feature). One
    kernel per pooling (a multi-valued feature's mean, the rest summed); each reads its
    features' columns of `batch.ids`, the history's for row 0 alone where `one_history`."""

    def __init__(self, ebc: FusedEmbeddingBagCollection, layout: Layout, dtype: str):
        super().__init__()
        sparse_type, _ = EXPORT_DTYPES[dtype]
        state = ebc.state_dict()
        columns = _columns(layout)
        order = {k: i for i, k in enumerate(layout.kjt_keys)}
        by_pooling: dict = {}
        for table in ebc.embedding_bag_configs():
            by_pooling.setdefault(table.pooling, []).append(table)
        self.kernels = nn.ModuleList()
        self.groups: list[tuple[list[int], tuple[int, ...], int]] = []
        self.keys: list[str] = []
        for pooling, tables in by_pooling.items():
            owner = {f: t for t, table in enumerate(tables) for f in table.feature_names}
            features = sorted(owner, key=order.__getitem__)  # the batch's own order
            self.kernels.append(IntNBitTableBatchedEmbeddingBagsCodegen(
                embedding_specs=[(t.name, t.num_embeddings, t.embedding_dim, sparse_type,
                                  EmbeddingLocation.HOST) for t in tables],
                feature_table_map=[owner[f] for f in features],
                pooling_mode=pooling_type_to_pooling_mode(pooling), device="cpu",
                output_dtype=SparseType.FP32, row_alignment=ROW_ALIGNMENT,
                scale_bias_size_in_bytes=SCALE_BIAS_BYTES,
                weight_lists=[quantized_rows(state[f"embedding_bags.{t.name}.weight"], dtype)
                              for t in tables]))
            plain = [f for f in features if f in layout.sparse]  # the history's after them
            self.groups.append(([c for f in features for c in columns[f]],
                                tuple(len(columns[f]) for f in plain),
                                len(features) - len(plain)))
            self.keys += features
        self.dim = ebc.embedding_bag_configs()[0].embedding_dim

    def forward(self, batch: Batch) -> KeyedTensor:
        out = []
        for kernel, (cols, widths, history) in zip(self.kernels, self.groups):
            found = kjt([""] * (len(widths) + history), batch.ids[:, cols], widths, history,
                        batch.one_history)
            offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(found.lengths())
            out.append(kernel(found.values().int(), offsets.int()))
        return KeyedTensor(keys=self.keys, values=torch.cat(out, dim=1),
                           length_per_key=[self.dim] * len(self.keys))

    def table_bytes(self) -> int:
        """Bytes of the tables as stored (rows, their scale and bias)."""
        return sum(k.weights_host.numel() * k.weights_host.element_size() for k in self.kernels)


def _columns(layout: Layout) -> dict[str, list[int]]:
    """Where each KJT feature sits in a batch's ID matrix (Layout.inputs): a sparse feature's
    columns (one, or a multi-valued one's width), a history feature's one column."""
    out = {}
    for c in layout.inputs:
        if c.matrix == "ids" and c.history:  # one feature per position ("history_item_ids_0")
            out.update({f"{c.name}_{i}": [c.start + i] for i in range(c.width)})
        elif c.matrix == "ids":
            out[c.name] = list(range(c.start, c.start + c.width))
    return out


def quantize(model: nn.Module, layout: Layout, dtype: str) -> tuple[int, int]:
    """Replace every fused table collection of `model` (in place) by its `QuantTables` in
    `dtype`; the tables' bytes before and after."""
    before = after = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FusedEmbeddingBagCollection):
                before += sum(t.num_embeddings * t.embedding_dim * TABLE_DTYPE_BYTES["fp32"]
                              for t in child.embedding_bag_configs())
                quant = QuantTables(child, layout, dtype)
                after += quant.table_bytes()
                setattr(module, name, quant)
    return before, after
