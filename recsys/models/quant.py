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
    holds for a batch as the collection does, one pooled row per feature: `forward` gives the
    rows of `keys` (B, len(keys), dim) and of `history_keys` (R, len(history_keys), dim), R = 1
    for one request's rows (`one_history`: its history is looked up for row 0 alone, not
    answered as empty bags for every other row), else B. One kernel per pooling (a
    multi-valued feature's mean, the rest summed) reads its features' columns of `batch.ids`;
    the history's features have a kernel of their own on the same tables (the same weights in
    memory, and saved once), so each kernel runs at its own batch size."""

    def __init__(self, ebc: FusedEmbeddingBagCollection, layout: Layout, dtype: str):
        super().__init__()
        sparse_type, _ = EXPORT_DTYPES[dtype]
        state = ebc.state_dict()
        columns = _columns(layout)
        order = {k: i for i, k in enumerate(layout.kjt_keys)}
        by_pooling: dict = {}
        for table in ebc.embedding_bag_configs():
            by_pooling.setdefault(table.pooling, []).append(table)
        self.kernels, self.history_kernels = nn.ModuleList(), nn.ModuleList()
        # each kernel's ID columns, its multi-valued features' widths and its empty features
        self.reads: list[tuple[list[int], tuple[int, ...], int]] = []
        self.history_reads: list[tuple[list[int], tuple[int, ...], int]] = []
        self.keys: list[str] = []
        self.history_keys: list[str] = []
        for pooling, tables in by_pooling.items():
            owner = {f: t for t, table in enumerate(tables) for f in table.feature_names}
            features = sorted(owner, key=order.__getitem__)  # the batch's own order
            plain = [f for f in features if f in layout.sparse]
            history = [f for f in features if f not in layout.sparse]

            def kernel(names: list[str], weights) -> tuple[nn.Module, int]:
                # every table of the group, each with a feature (one that no click reads
                # gets an empty one): the two kernels' storages are then one
                unread = sorted(set(range(len(tables))) - {owner[f] for f in names})
                return IntNBitTableBatchedEmbeddingBagsCodegen(
                    embedding_specs=[(t.name, t.num_embeddings, t.embedding_dim, sparse_type,
                                      EmbeddingLocation.HOST) for t in tables],
                    feature_table_map=[owner[f] for f in names] + unread,
                    pooling_mode=pooling_type_to_pooling_mode(pooling), device="cpu",
                    output_dtype=SparseType.FP32, row_alignment=ROW_ALIGNMENT,
                    scale_bias_size_in_bytes=SCALE_BIAS_BYTES, weight_lists=weights), len(unread)

            tables_kernel, unread = kernel(plain, [
                quantized_rows(state[f"embedding_bags.{t.name}.weight"], dtype) for t in tables])
            self.kernels.append(tables_kernel)
            self.reads.append(([c for f in plain for c in columns[f]],
                               tuple(len(columns[f]) for f in plain), unread))
            self.keys += plain
            if history:
                clicks, unread = kernel(history, None)
                clicks.initialize_weights()  # then the storage of the tables' kernel replaces it
                clicks.weights_host = tables_kernel.weights_host
                self.history_kernels.append(clicks)
                self.history_reads.append(([c for f in history for c in columns[f]], (), unread))
                self.history_keys += history
        self.dim = ebc.embedding_bag_configs()[0].embedding_dim

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch.ids[:1] if batch.one_history else batch.ids
        return (self._pooled(self.kernels, self.reads, batch.ids, len(self.keys)),
                self._pooled(self.history_kernels, self.history_reads, ids,
                             len(self.history_keys)))

    def _pooled(self, kernels: nn.ModuleList, reads: list, ids: torch.Tensor,
                features: int) -> torch.Tensor:
        """(rows of `ids`, features, dim): each kernel's features, pooled."""
        out = []
        for kernel, (cols, widths, unread) in zip(kernels, reads):
            found = torch.cat([ids[:, cols], ids.new_full((ids.shape[0], unread), -1)], dim=1)
            # a feature a column (history-like) after the plain ones: the empty ones are so
            bags = kjt([""] * (len(widths) + found.shape[1] - sum(widths)), found, widths,
                       found.shape[1] - sum(widths))
            offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(bags.lengths())
            pooled = kernel(bags.values().int(), offsets.int())
            out.append(pooled[:, :pooled.shape[1] - unread * self.dim])
        if not out:
            return ids.new_zeros((ids.shape[0], 0, self.dim), dtype=torch.float32)
        return torch.cat(out, dim=1).view(ids.shape[0], features, self.dim)

    def table_bytes(self) -> int:
        """Bytes of the tables as stored (rows, their scale and bias)."""
        return sum(k.weights_host.numel() * k.weights_host.element_size()
                   for k in self.kernels)  # the history's kernels share these


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
