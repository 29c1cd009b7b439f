"""table_lookup, the models' path to their tables, against TorchRec's own
FusedEmbeddingBagCollection forward: the same embeddings, and after a backward pass the same
rows updated by the fused optimizer, for tables of both poolings and a batch whose keys come in
another order than the tables', some rows empty; each feature answered in the order asked, the
history's apart (of row 0 alone for one request's rows)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.base import table_lookup

# the sum tables first, as SparseArch orders them (single values, then bags)
TABLES = [("a", ["x", "hx_0", "hx_1"], PoolingType.SUM), ("c", ["y"], PoolingType.SUM),
          ("b", ["bag"], PoolingType.MEAN)]


def _collection() -> FusedEmbeddingBagCollection:
    torch.manual_seed(0)
    return FusedEmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name=n, embedding_dim=4, num_embeddings=10,
                                   feature_names=f, pooling=p) for n, f, p in TABLES],
        optimizer_type=RowWiseAdagrad, optimizer_kwargs={"lr": 0.5})


def test_table_lookup_is_the_collections_forward_and_backward():
    keys = ["y", "bag", "x", "hx_1", "hx_0"]  # not the tables' order
    lengths = torch.tensor([1, 1, 1,  3, 0, 2,  1, 1, 1,  1, 0, 0,  1, 1, 0])  # 3 rows a key
    ids = torch.randint(0, 10, (int(lengths.sum()),), generator=torch.Generator().manual_seed(1))
    kjt = KeyedJaggedTensor.from_lengths_sync(keys, ids, lengths)
    own, ours = _collection(), _collection()
    plain, history = ["x", "bag", "y"], ["hx_0", "hx_1"]
    expected = own(kjt).to_dict()
    got, clicks = table_lookup(ours, SimpleNamespace(sparse=kjt, one_history=False), {}, plain,
                               history)
    assert torch.equal(got, torch.stack([expected[k] for k in plain], dim=1))
    assert torch.equal(clicks, torch.stack([expected[k] for k in history], dim=1))
    assert got.abs().sum() > 0 and clicks.abs().sum() > 0
    _, row0 = table_lookup(ours, SimpleNamespace(sparse=kjt, one_history=True), {}, plain,
                           history)
    assert torch.equal(row0, clicks[:1])
    weight = torch.randn(got.shape), torch.randn(clicks.shape)
    expected_all = torch.cat([torch.stack([expected[k] for k in plain], 1),
                              torch.stack([expected[k] for k in history], 1)], dim=1)
    (expected_all * torch.cat(weight, dim=1)).sum().backward()
    ((got * weight[0]).sum() + (clicks * weight[1]).sum()).backward()
    for name, value in own.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
    assert not torch.equal(own.state_dict()["embedding_bags.a.weight"],
                           _collection().state_dict()["embedding_bags.a.weight"])  # it moved
