"""Shared building blocks: the embedding arch (TorchRec, fused optimizer), MLPs, routing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedTensor

from recsys.dataset.batch import Batch
from recsys.dataset.layout import Layout
from recsys.models.config import TABLE_DTYPE_BYTES, ModelConfig, check_fusion
from recsys.models.dcn import CrossNet
from recsys.models.quant import QuantTables
from recsys.schema import HISTORY_ITEMS, HISTORY_POOLINGS, ITEM_ID, SCENARIO, USER_ID

# TorchRec's modules ask torch.fx whether they are being traced on every forward; torch answers
# with a deprecation notice about its own API that a user can do nothing about
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


# which experiment a model belongs to: a closed set, each read the same way everywhere
FAMILIES = ("multi-scenario", "cold-start", "history", "retrieval")


@dataclass(frozen=True)
class Capabilities:
    """What a model needs and offers beyond forward(batch) -> logits and loss(batch)."""

    family: str  # one of FAMILIES
    shardable: bool = True  # DistributedModelParallel can shard its tables (one lookup a step)
    # entities whose meta-learning episodes (dataset.episodes) its loss takes
    episodes: tuple[str, ...] = ()
    cold_path: bool = False  # counts training interactions per ID: the unseen go cold
    adapts: bool = False  # adapts to each few-shot user's history at test time
    history: str = ""  # reads the user's history by nature, pooled so (din: "attention")
    # reads it, pooled so, where the dataset has one unless told `--history none` (the
    # cold-start models: a new user's clicks so far are most of what is known of him)
    history_where_present: str = ""
    history_poolings: tuple[str, ...] = HISTORY_POOLINGS  # the poolings of --history it takes
    interaction: bool = True  # adds the dot part's logit to its own (ModelConfig.interaction)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r}: one of {', '.join(FAMILIES)}")

    @property
    def retrieval(self) -> bool:
        """It gives user and item vectors (`vectors(batch)`) for a search over the catalogue."""
        return self.family == "retrieval"


REGISTRY: dict[str, type["Model"]] = {}  # filled as the model modules are imported


class Model(nn.Module):
    """The contract every model keeps: a function of its batches. `forward(batch)` gives one
    logit per row; `loss(batch, episode)` the training objective (binary cross-entropy unless
    the model has its own; `episode` holds the meta-learning tasks a model with
    `capabilities.episodes` trains on); `Config` is its hyper-parameters."""

    capabilities: ClassVar[Capabilities]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    name: ClassVar[str] = ""  # a registered model's name ("" for a base of others)

    def __init_subclass__(cls, name: str = "", **kwargs):
        """`class MMoE(Model, name="mmoe")` registers the model under its name: the one list
        of models is the registry's, in the order their modules are imported."""
        super().__init_subclass__(**kwargs)
        cls.name = name
        if name:
            if name in REGISTRY:
                raise ValueError(f"model {name!r} registered twice")
            REGISTRY[name] = cls

    def loss(self, batch: Batch, episode=None) -> torch.Tensor:
        return binary_cross_entropy_with_logits(self(batch), batch.labels)


# the tables' storage types: TorchRec's type for each name models.config accepts
TABLE_DTYPES = {"fp32": DataType.FP32, "fp16": DataType.FP16}


def table_lookup(ebc: nn.Module, batch: Batch, plans: dict, keys: list[str],
                 history_keys: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables' pooled rows of `keys` (B, len(keys), width) and of `history_keys`
    (R, len(history_keys), width), in those orders; R = 1 for one request's rows
    (Batch.one_history: its history is row 0's), else B. Exported tables (QuantTables) read the
    batch themselves and look the one request's history up once; the other collections answer
    `batch.sparse` (`plans` keeps each answer's key order's picks)."""
    if isinstance(ebc, QuantTables):
        values, clicks = ebc(batch)
        found, found_history = ebc.keys, ebc.history_keys
    else:
        pooled = _pooled(ebc, batch.sparse, plans)
        found = found_history = tuple(pooled.keys())
        values = pooled.values().view(-1, len(found), pooled.length_per_key()[0])
        clicks = values[:1] if batch.one_history else values
    return _pick(values, tuple(found), keys, plans), \
        _pick(clicks, tuple(found_history), history_keys, plans)


def _pick(values: torch.Tensor, found: tuple[str, ...], wanted: list[str],
          plans: dict) -> torch.Tensor:
    """values[:, the slots of `wanted` among `found`]: a view where they sit side by side in
    order, else one gather (a plain index costs less per step than TorchRec's regroup with a
    hundred history keys)."""
    plan = (found, tuple(wanted))
    if plan not in plans:
        at = [found.index(k) for k in wanted]
        start = at[0] if at else 0
        plans[plan] = slice(start, start + len(at)) if at == list(range(start, start + len(at))) \
            else torch.tensor(at)
    pick = plans[plan]
    return values[:, pick] if isinstance(pick, slice) else values.index_select(1, pick)


def _pooled(ebc: nn.Module, kjt, plans: dict) -> KeyedTensor:
    """`ebc(kjt)`. For a FusedEmbeddingBagCollection: its own forward less its split of the
    batch into a JaggedTensor per key, which costs most of a served request's lookup with a
    hundred history keys: one permute into the tables' order, then the same kernel call per
    group of tables on the same values (`plans` keeps each key order's permutation). Other
    collections (sharded) answer themselves."""
    if not isinstance(ebc, FusedEmbeddingBagCollection) or ebc.is_weighted():
        return ebc(kjt)
    keys = tuple(kjt.keys())
    if keys not in plans:
        where = {k: i for i, k in enumerate(keys)}
        groups = [[f for t in tables for f in t.feature_names]
                  for tables in ebc._key_to_tables.values()]
        plans[keys] = [where[f] for g in groups for f in g], [len(g) for g in groups]
    order, sizes = plans[keys]
    kjt = kjt.permute(order)
    batch, starts = kjt.stride(), [0, *torch.tensor(kjt.length_per_key()).cumsum(0).tolist()]
    lengths = kjt.lengths().split([n * batch for n in sizes])
    first = [sum(sizes[:g]) for g in range(len(sizes))]
    out = [op(kjt.values()[starts[f]:starts[f + n]].int(),
              torch.ops.fbgemm.asynchronous_complete_cumsum(length).int(), None)
           for op, f, n, length in zip(ebc._emb_modules, first, sizes, lengths)]
    return KeyedTensor(keys=ebc._embedding_names, values=torch.cat(out, dim=1),
                       length_per_key=ebc._length_per_key)


class SparseArch(nn.Module):
    """One embedding table per sparse feature, sizes from the Layout, one projection per
    vector group (text / image) of the Layout, and the user's history pooled into one slot when
    the Layout reads it (its clicks looked up in the item and scenario tables themselves).

    FusedEmbeddingBagCollection runs FBGEMM's table-batched kernel with row-wise Adagrad
    applied in the backward pass: only the rows a batch touches are updated, so a step's cost
    does not grow with table size. The dense optimizer must skip these weights
    (see `dense_parameters`)."""

    def __init__(self, layout: Layout, cfg: ModelConfig):
        super().__init__()
        check_fusion(cfg.fusion)
        # a multi-valued feature's values (genres) are pooled by their mean
        widths = layout.widths or (1,) * len(layout.sparse)
        self.history_keys = list(layout.history_keys)
        shared = {table: [k for k in self.history_keys if k.startswith(f"{column}_")]
                  for column, table in layout.history_tables}
        tables = [EmbeddingBagConfig(name=f"t_{name}", embedding_dim=cfg.embedding_dim,
                                     num_embeddings=size,
                                     feature_names=[name, *shared.get(name, ())],
                                     data_type=TABLE_DTYPES[cfg.table_dtype],
                                     pooling=PoolingType.MEAN if width > 1 else PoolingType.SUM)
                  for name, size, width in zip(layout.sparse, layout.num_embeddings, widths)]
        # the default device: "meta" when built to be sharded or planned (no memory used)
        self.ebc = FusedEmbeddingBagCollection(tables=tables, optimizer_type=RowWiseAdagrad,
                                               optimizer_kwargs={"lr": cfg.embedding_lr},
                                               device=torch.get_default_device())
        self.dim, self.n_sparse, self.keys = cfg.embedding_dim, len(layout.sparse), \
            list(layout.sparse)
        groups = layout.vectors
        self.spans = [(sum(g.width for g in groups[:i]), g.width) for i, g in enumerate(groups)]
        self.owner_slots = [layout.slot(g.owner) for g in groups]
        self.projections = nn.ModuleList(nn.Linear(g.width, cfg.embedding_dim) for g in groups)
        self.gates = nn.ModuleList(nn.Linear(2 * cfg.embedding_dim, cfg.embedding_dim)
                                   for _ in groups) if cfg.fusion == "gated" else None
        self.history = HistoryPool(layout, cfg.embedding_dim, cfg.history_truncation) \
            if layout.history_length else None
        self.dot = DotInteraction(layout, cfg) if cfg.interaction != "none" and \
            DotInteraction.applies(layout) else None
        # mf-first: the network's logit enters scaled by this, 0 (kept so by the Trainer)
        # while the MF trains alone; it learns once the network joins
        self.network_scale = nn.Parameter(torch.zeros(())) \
            if self.dot is not None and self.dot.biases else None
        self.n_slots = len(layout.sparse) + len(groups) + \
            (HistoryPool.SLOTS if self.history is not None else 0)
        self._groups: dict = {}  # table_lookup's plans
        self.out_dim = cfg.embedding_dim * self.n_slots + len(layout.dense)
        self.backbone = CrossNet(self.out_dim, cfg.cross_layers, cfg.cross_rank) \
            if cfg.backbone == "dcn" else nn.Identity()
        # the input columns that one request's rows share (all but the candidate item's) and
        # the candidate's: `networks` multiplies the shared ones once a request
        per_candidate = _candidate_columns(layout, cfg.embedding_dim) \
            if cfg.backbone != "dcn" else None  # cross layers mix them all
        per_candidate = per_candidate or [True] * self.out_dim
        self.shared_columns, self.candidate_columns = (
            torch.tensor([j for j, c in enumerate(per_candidate) if c == side], dtype=torch.long)
            for side in (False, True))

    def lookup(self, batch: Batch) -> torch.Tensor:
        """(B, F + G (+ slots), D): one embedding per sparse feature, in Layout order, then one
        per vector group, then the pooled history's slots when the Layout reads it."""
        emb, clicks = table_lookup(self.ebc, batch, self._groups, self.keys,
                                   self.history_keys)
        slots = []
        for i, (start, width) in enumerate(self.spans):
            value = self.projections[i](batch.vectors[:, start:start + width])
            if self.gates is not None:
                own = emb[:, self.owner_slots[i]]
                gate = torch.sigmoid(self.gates[i](torch.cat([own, value], dim=1)))
                value = gate * value + (1 - gate) * own
            slots.append(value)
        if self.history is not None:
            # one request's rows: the history was looked up for row 0 alone (its pooling
            # broadcasts it as it needs)
            rows = slice(0, 1) if batch.one_history else slice(None)
            slots.extend(self.history(clicks, batch.history_ids[rows], emb))
        return torch.cat([emb, torch.stack(slots, dim=1)], dim=1) if slots else emb

    def join(self, emb: torch.Tensor, batch: Batch,
             dense: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, D) embeddings + the batch's dense features (or `dense`, a model's own
        transform of them) -> the model's input row, through the backbone (cross layers with
        --backbone dcn)."""
        dense = batch.dense if dense is None else dense
        return self.rows(torch.cat([emb.flatten(1), dense], dim=1))

    def networks(self, x: torch.Tensor, batch: Batch | None,
                 nets: list[nn.Module]) -> list[torch.Tensor]:
        """Each of `nets` (a model's networks on its input rows x (B, out_dim)): an
        nn.Linear, an nn.Sequential or any module. One request's rows (Batch.one_history)
        differ only in the candidate item's columns: the first layers (the Linears, and those
        that begin a Sequential) then multiply the shared columns once (row 0) and broadcast
        the product, the same sums in another order, all of them in one matrix product."""
        firsts = [net if isinstance(net, nn.Linear) else
                  net[0] if isinstance(net, nn.Sequential) and len(net) and
                  isinstance(net[0], nn.Linear) else None for net in nets]
        layers = [f for f in firsts if f is not None]
        if batch is None or not batch.one_history or not len(self.shared_columns) or \
                not layers:
            return [net(x) for net in nets]
        weight = torch.cat([layer.weight for layer in layers])
        shared, candidate = self.shared_columns, self.candidate_columns  # index_select: a
        # column gather that advanced indexing does several times slower
        once = torch.addmm(torch.cat([layer.bias for layer in layers]),
                           x[:1].index_select(1, shared), weight.index_select(1, shared).t())
        both = torch.addmm(once, x.index_select(1, candidate),
                           weight.index_select(1, candidate).t())
        done = iter(both.split([layer.out_features for layer in layers], dim=1))
        return [net(x) if first is None else next(done) if first is net else
                net[1:](next(done)) for net, first in zip(nets, firsts)]

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone over input rows (..., out_dim): the one place it is applied."""
        return self.backbone(x)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.join(self.lookup(batch), batch)

    def combine(self, network: torch.Tensor, batch: Batch,
                cold: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """A model's logit (B,): its network's `network` plus the dot part's (scaled by
        `network_scale` under mf-first). `cold`: rows whose user / item takes a cold-start
        model's cold path (their dot terms are 0: one defined path for an ID the training
        never saw)."""
        if self.dot is None:
            return network
        if self.network_scale is not None:
            network = self.network_scale * network
        return network + self.dot(batch, cold)

    def table(self, name: str) -> torch.Tensor:
        """The embedding table of feature `name`, as a view: writes change the model."""
        return self.ebc.state_dict()[f"embedding_bags.t_{name}.weight"]


def _candidate_columns(layout: Layout, dim: int) -> list[bool] | None:
    """For each column of SparseArch's input rows: whether it holds the candidate item's
    side (its features, its vectors, the history's slots that weigh the candidate), which one
    request's rows do not share. None: the layout does not say its features' owners."""
    if not layout.owners or ITEM_ID not in layout.sparse:
        return None
    item = layout.owners[layout.slot(ITEM_ID)]
    slots = [o == item for o in layout.owners] + [g.owner == ITEM_ID for g in layout.vectors]
    if layout.history_length:  # pooled (by mean: the user's alone), its product with the item
        slots += [layout.history_pooling == "attention", True]
    return [c for c in slots for _ in range(dim)] + [o == item for o in layout.dense_owners]


class DotInteraction(nn.Module):
    """Logistic MF inside a model: <user, item> and, where the model reads the history,
    <mean of the history's items, item>, each from tables of its own (fused row-wise Adagrad,
    like the rest). A network on concatenated embeddings learns a dot product badly (Rendle
    et al., RecSys 2020), and the candidate's item table cannot also say "who clicked h clicks
    v"; a table apart for the history can, which is what carries a user the training never
    saw (his clicks do). The tables cost a user and two item tables more (`recsys plan` counts
    them)."""

    BIAS_WIDTH = 4  # mf-first: the columns that hold a user's / an item's bias

    def __init__(self, layout: Layout, cfg: ModelConfig):
        super().__init__()
        rows = dict(zip(layout.sparse, layout.num_embeddings))
        self.history_keys = [k for k in layout.history_keys
                             if k.startswith(f"{HISTORY_ITEMS}_")]
        # mf-first: logistic MF's user and item biases ride in BIAS_WIDTH more columns of the
        # user and item tables, summed (the fused tables take widths in fours; one width for
        # all three tables keeps one lookup, so the history table's are unused)
        self.biases = cfg.interaction == "mf-first"
        extra = self.BIAS_WIDTH if self.biases else 0
        features = {"dot_user": [USER_ID], "dot_item": [ITEM_ID]}
        if self.history_keys:
            features["dot_history"] = self.history_keys
        self.ebc = FusedEmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=name, embedding_dim=cfg.embedding_dim + extra,
                                       num_embeddings=rows[ITEM_ID if name != "dot_user"
                                                           else USER_ID],
                                       feature_names=names,
                                       data_type=TABLE_DTYPES[cfg.table_dtype],
                                       pooling=PoolingType.SUM)
                    for name, names in features.items()],
            optimizer_type=RowWiseAdagrad, optimizer_kwargs={"lr": cfg.embedding_lr},
            device=torch.get_default_device())
        self.dim, self._groups = cfg.embedding_dim, {}  # table_lookup's plans

    def table(self, name: str) -> torch.Tensor:
        """The dot table of ID feature `name` (user_id / item_id), as a view."""
        which = "dot_user" if name == USER_ID else "dot_item"
        return self.ebc.state_dict()[f"embedding_bags.{which}.weight"]

    @staticmethod
    def applies(layout: Layout) -> bool:
        return USER_ID in layout.sparse and ITEM_ID in layout.sparse

    def forward(self, batch: Batch, cold: dict[str, torch.Tensor] | None = None
                ) -> torch.Tensor:
        ids, clicks = table_lookup(self.ebc, batch, self._groups, [USER_ID, ITEM_ID],
                                   self.history_keys)
        user, item = ids[:, 0], ids[:, 1]
        if cold is not None:
            item = item * ~cold[ITEM_ID].unsqueeze(1)
            user = user * ~cold[USER_ID].unsqueeze(1)
        d = self.dim
        logit = (user[:, :d] * item[:, :d]).sum(1)
        if self.biases:
            logit = logit + user[:, d:].sum(1) + item[:, d:].sum(1)
        item = item[:, :d]
        if self.history_keys:
            # one request (Batch.one_history): row 0's history, pooled once and broadcast
            rows = slice(0, 1) if batch.one_history else slice(None)
            held = (batch.history_ids[rows, :len(self.history_keys)] >= 0).unsqueeze(-1)
            clicks = clicks[..., :d] * held.to(clicks.dtype)
            pooled = clicks.sum(1) / held.sum(1).clamp(min=1).to(clicks.dtype)
            logit = logit + (pooled * item).sum(1)
        return logit


class HistoryPool(nn.Module):
    """The user's last clicks -> two slots: their pooled embedding and its product with the
    candidate item's (so how near the history is to the candidate is one linear read away). A
    click is the sum of its lists' embeddings (its item's, its scenario's, its item's
    category's). "attention" is DIN's activation unit: an MLP of (candidate, click, their
    difference and product, and the click's position: 0 the latest, for tastes drift) weighs
    each click by its relevance to the candidate item, and the weights are not normalized, so
    how much of the history is relevant shows in the result; "mean" weighs all clicks alike. A
    user without clicks gets zeros."""

    SLOTS = 2

    def __init__(self, layout: Layout, dim: int, truncation: float = 0.0, hidden: int = 36):
        super().__init__()
        self.lists, self.length, self.dim = len(layout.history_tables), layout.history_length, dim
        self.truncation = truncation
        self.target = layout.slot(ITEM_ID)
        attention = layout.history_pooling == "attention"
        self.positions = nn.Parameter(torch.randn(layout.history_length, dim) * 0.01) \
            if attention else None
        self.unit = nn.Sequential(nn.Linear(5 * dim, hidden), nn.PReLU(),
                                  nn.Linear(hidden, 1)) if attention else None

    def forward(self, clicks: torch.Tensor, ids: torch.Tensor,
                emb: torch.Tensor) -> list[torch.Tensor]:
        """`clicks` (B, lists * N, D) the history's lookups, list by list; `ids` its
        (B, lists * N) table rows (-1: no click); `emb` the row's (B, F, D) embeddings. One
        request's rows may pass their shared history once (B = 1): the mean is then taken
        once, the attention still weighs it for each row's candidate."""
        h = clicks.reshape(clicks.shape[0], self.lists, self.length, self.dim).sum(1)  # (B, N, D)
        held = ids[:, :self.length] >= 0  # (B, N), the latest click first
        if self.training and self.truncation:
            held = held & (torch.arange(self.length, device=held.device) < self._kept(held))
        held = held.unsqueeze(-1).to(h.dtype)  # (B, N, 1)
        if self.unit is not None:  # one request's clicks, summed once, weighed for every row
            h, held = h.expand(emb.shape[0], -1, -1), held.expand(emb.shape[0], -1, -1)
        target = emb[:, self.target]
        if self.unit is None:
            pooled = ((h * held).sum(1) / held.sum(1).clamp(min=1)).expand_as(target)
        else:
            pooled = ((self.weights(target, h) * held) * h).sum(1)
        return [pooled, pooled * target]

    def _kept(self, held: torch.Tensor) -> torch.Tensor:
        """(B, 1) how many of each row's latest clicks training keeps: all of them, or for a
        `truncation` share of the rows a count drawn uniformly from 0 to their number."""
        n = held.sum(1, keepdim=True)
        cut = torch.rand_like(n, dtype=torch.float32) < self.truncation
        drawn = (torch.rand_like(n, dtype=torch.float32) * (n + 1)).floor().long()
        return torch.where(cut, drawn, n)

    def weights(self, q: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(B, N, 1) the activation unit on (q, h, q - h, q * h, position), its first layer
        split by part so that no (B, N, 5D) input is built: the candidate's part is computed
        once a row, the position's once a batch, and the click's with its product with the
        candidate is one batched matrix product (B, N, D) x (B, D, hidden)."""
        first, rest = self.unit[0], self.unit[1:]
        w_q, w_h, w_d, w_p, w_w = first.weight.split(self.dim, dim=1)  # (hidden, D) each
        per_row = q @ (w_q + w_d).t() + first.bias  # (B, hidden)
        per_position = self.positions @ w_w.t()  # (N, hidden)
        per_click = (w_h - w_d).t().unsqueeze(0) + q.unsqueeze(2) * w_p.t().unsqueeze(0)
        x = torch.bmm(h.contiguous(), per_click) + per_row.unsqueeze(1) + per_position.unsqueeze(0)
        return rest(x)


class ScenarioSide(nn.Module):
    """What describes a row's scenario, for the models that condition on it (star's auxiliary
    network, pepnet's embedding gate, m2m's scenario knowledge): the scenario's embedding and
    the scenario's own dense features (its statistics of the day before)."""

    def __init__(self, layout: Layout, dim: int):
        super().__init__()
        self.slot = layout.slot(SCENARIO) if SCENARIO in layout.sparse else None
        self.dense = [j for j, o in enumerate(layout.dense_owners)
                      if o == "scenario"]  # owned by the scenario entity
        self.width = (dim if self.slot is not None else 0) + len(self.dense)

    def forward(self, emb: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, width) from the looked-up embeddings (B, F, D) and the batch."""
        parts = [emb[:, self.slot]] if self.slot is not None else []
        return torch.cat(parts + [batch.dense[:, self.dense]], dim=1)


def mlp(in_dim: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = size
    return nn.Sequential(*layers)


def tower(in_dim: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """An MLP ending in one logit."""
    body = mlp(in_dim, sizes, dropout)
    return nn.Sequential(*body, nn.Linear(sizes[-1] if sizes else in_dim, 1))


def route(per_scenario: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
    """(B, S) logits of every scenario's tower -> (B,) the row's own scenario."""
    return per_scenario.gather(1, scenario.unsqueeze(1)).squeeze(1)


class TrainWrapper(nn.Module):
    """A model with its objective: `forward(batch, episode)` is the model's own `loss`. The
    training loop calls this, and DistributedModelParallel wraps this rather than the model,
    so the model's own objective is what trains, sharded or not (TorchEasyRec's
    TrainWrapper)."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, episode=None) -> torch.Tensor:
        return self.model.loss(batch, episode)


def sparse_optimizers(model: nn.Module) -> list:
    """The fused (in-backward) optimizers of the model's embedding tables (one for a model
    sharded by DistributedModelParallel)."""
    if isinstance(model, DistributedModelParallel):
        return [model.fused_optimizer]
    return [m.fused_optimizer() for m in model.modules()
            if isinstance(m, FusedEmbeddingBagCollection)]


def set_sparse_lr(model: nn.Module, lr: float) -> None:
    for opt in sparse_optimizers(model):
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()  # hands the new rate to the fused kernel


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters for the dense optimizer: everything but the fused embedding tables."""
    fused = {id(p) for m in model.modules()
             if isinstance(m, (FusedEmbeddingBagCollection, ShardedEmbeddingBagCollection))
             for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in fused]


def table_bytes(rows: int, dim: int, dtype: str = "fp32") -> int:
    """Bytes of `rows` embedding rows of width `dim`: the weights in `dtype` and their row-wise
    Adagrad state (one float32 per row)."""
    return rows * dim * TABLE_DTYPE_BYTES[dtype] + rows * 4


def dense_bytes_with_adam(model: nn.Module) -> int:
    """float32 bytes of the dense parameters with Adam's two moments."""
    return sum(p.numel() for p in dense_parameters(model)) * 4 * 3
