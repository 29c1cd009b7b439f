"""The model's input: a `Batch` (TorchRec KeyedJaggedTensor + dense + vectors + labels +
scenario), the one type every model's forward takes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor


@dataclass
class Batch:
    """One mini-batch: sparse IDs as a KJT (one value per feature and row), dense features,
    vector features (text / image; zero columns without them), labels and the scenario of each
    row."""

    sparse: KeyedJaggedTensor
    # (B, Layout.id_columns) the same IDs as a matrix, for routing rows by scenario: column j
    # is sparse feature j for the single-valued ones (they come first); the last `history`
    # columns are the history's positions, -1 where there is no click
    ids: torch.Tensor
    dense: torch.Tensor  # (B, D) float32
    labels: torch.Tensor  # (B,) float32
    scenario: torch.Tensor  # (B,) int64
    vectors: torch.Tensor  # (B, V) float32: the Layout's vector groups, concatenated
    widths: tuple[int, ...] = ()  # Layout.widths
    history: int = 0  # len(Layout.history_keys)
    # every row is one request's candidate, whose user, scenario, context and history are row
    # 0's (a served request): the history's tables are read for row 0 alone and its lookups
    # broadcast, the KJT holding no history value for the other rows (`ids` still holds each
    # row's); what a model computes of the user's side alone it may compute once
    one_history: bool = False

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device) -> "Batch":
        if device.type == "cpu":
            return self
        return Batch(self.sparse.to(device), self.ids.to(device), self.dense.to(device),
                     self.labels.to(device), self.scenario.to(device), self.vectors.to(device),
                     self.widths, self.history, self.one_history)

    def select(self, mask: torch.Tensor) -> "Batch":
        # one request's rows share one history: any row kept reads it as row 0 did (no
        # branch on the mask's values, which an exported program could not replay)
        ids, one = self.ids[mask], self.one_history
        return Batch(kjt(self.sparse.keys(), ids, self.widths, self.history, one), ids,
                     self.dense[mask], self.labels[mask], self.scenario[mask],
                     self.vectors[mask], self.widths, self.history, one)

    @property
    def history_ids(self) -> torch.Tensor:
        """(B, history) the history's table rows, -1 where there is no click."""
        return self.ids[:, self.ids.shape[1] - self.history:]


def kjt(keys: list[str] | tuple[str, ...], ids: torch.Tensor, widths: tuple[int, ...] = (),
        history: int = 0, one_history: bool = False) -> KeyedJaggedTensor:
    """KJT from a (B, columns) ID matrix: one value per (feature, row) for the single-valued
    features; a multi-valued one's `widths[j]` columns give its values, -1 padding left out;
    the last `history` columns are one feature each, of one value or none (-1): row 0's
    alone where `one_history` (Batch.one_history)."""
    single = sum(1 for w in widths if w == 1) if widths else len(keys) - history
    values = [ids[:, :single].t().reshape(-1)]
    lengths = [torch.ones(ids.shape[0] * single, dtype=torch.int32)]
    at = single
    for width in widths[single:]:
        bag = ids[:, at:at + width]
        held = bag >= 0
        values.append(bag[held])  # row-major: each row's values in order
        lengths.append(held.sum(1, dtype=torch.int32))
        at += width
    if history:
        # feature-major, as a KJT's values
        positions = ids[:1 if one_history else None, ids.shape[1] - history:].t()
        held = positions >= 0
        values.append(positions[held])
        if one_history:  # the other rows: no value (their lookups are row 0's, broadcast)
            held = torch.cat([held, held.new_zeros(history, ids[1:].shape[0])], dim=1)
        lengths.append(held.reshape(-1).to(torch.int32))
    if len(values) == 1:
        return KeyedJaggedTensor(keys=list(keys), values=values[0], lengths=lengths[0])
    return KeyedJaggedTensor(keys=list(keys), values=torch.cat(values),
                             lengths=torch.cat(lengths))
