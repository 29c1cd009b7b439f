"""Users as tasks (shared by maml and melu): an inner loop adapts some parameters to one user's
support rows, the outer loop trains the starting point on the rows that follow them.

Meta-training treats every task user as new (its ID slot takes the cold path) so the learned
starting point is the one a new user needs. At test time a few-shot user (1..FEW_SHOT_MAX
training rows) is adapted on that history before scoring; zero-shot users take the cold path
and warm users their own embeddings, as in every cold-start model."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from recsys.dataset.episodes import Episode, Histories
from recsys.dataset.batch import Batch
from recsys.dataset.layout import Layout
from recsys.dataset.loader import rows_batch, SplitData
from recsys.models.cold import ColdStartModel, EpisodeConfig, linear_layers, masked_bce, \
    replace_slot, task_forward
from recsys.schema import FEW_SHOT_MAX, USER_ID

USER = USER_ID


@dataclass
class UserTaskConfig(EpisodeConfig):
    """maml's and melu's: the per-user inner loop."""

    # the weight of the meta loss beside the usual loss: it moves the shared network with the
    # noisy gradient of a few dozen tasks, which at weight 1 swamps the usual loss
    meta_weight: float = 0.1
    inner_lr: float = 0.01  # step size of the per-task (inner) update
    inner_steps: int = 1
    interaction: str = "none"  # the adapted scores (task_forward) are the network's alone


class UserTaskLearner(ColdStartModel):
    capabilities = replace(ColdStartModel.capabilities, episodes=(USER,), adapts=True,
                           interaction=False)
    Config = UserTaskConfig
    adapt_user_embedding = False  # maml: the user's own embedding adapts too
    first_adapted_layer = 0  # layers from this one on adapt per task (negative: from the end)

    def __init__(self, layout, cfg):
        super().__init__(layout, cfg)
        self.layers = linear_layers(self.net)

    # ---- the inner loop ----------------------------------------------------------------------
    def inputs(self, emb: torch.Tensor, dense: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """(T, K, F, D) embeddings, (T, K, Dd) dense, (T, D) per-task user embedding."""
        emb = replace_slot(emb, self.slots[USER], user[:, None, :].expand(-1, emb.shape[1], -1))
        return self.sparse.rows(torch.cat([emb.flatten(2), dense], dim=-1))

    def adapt(self, emb, dense, labels, raw, mask, create_graph: bool):
        """Per-task parameters after the inner loop on the support rows (T, K, ...) (`raw`: their
        looked-up rows, `mask`: the real ones). Returns ({layer: (weight, bias)}, user
        embedding (T, D)). The user starts from the cold path, the content prior."""
        n_tasks = emb.shape[0]
        first = self.first_adapted_layer % len(self.layers)
        own = {i: (layer.weight.expand(n_tasks, -1, -1), layer.bias.expand(n_tasks, -1))
               for i, layer in enumerate(self.layers) if i >= first}
        user = self.cold_embedding(raw[:, 0], USER)
        for _ in range(self.cfg.inner_steps):
            logits = task_forward(self.layers, self.inputs(emb, dense, user), own)
            tensors = [t for pair in own.values() for t in pair]
            if self.adapt_user_embedding:
                tensors.append(user)
            grads = torch.autograd.grad(masked_bce(logits, labels, mask), tensors,
                                        create_graph=create_graph)
            lr = self.cfg.inner_lr
            own = {i: (w - lr * grads[2 * j], b - lr * grads[2 * j + 1])
                   for j, (i, (w, b)) in enumerate(own.items())}
            if self.adapt_user_embedding:
                user = user - lr * grads[-1]
        return own, user

    def task_rows(self, batch: Batch, n_tasks: int, k: int):
        """Embeddings (as the base serves them), dense features, labels and looked-up rows of
        a batch of `n_tasks` tasks of `k` rows each, as (T, K, ...). The tables are constants
        here: only the usual loss moves them."""
        with torch.no_grad():
            raw = self.sparse.lookup(batch)
            emb = self.compose(raw, self.cold_masks(batch, dropout=False))
        shape = (n_tasks, k, *raw.shape[1:])
        return (emb.view(shape), batch.dense.view(n_tasks, k, -1),
                batch.labels.view(n_tasks, k), raw.view(shape))

    # ---- training ----------------------------------------------------------------------------
    def loss(self, batch, episode=None):
        return super().loss(batch) + self.cfg.meta_weight * self.meta_loss(episode[USER])

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        s_emb, s_dense, s_labels, s_raw = self.task_rows(episode.support, episode.tasks,
                                                         episode.k)
        own, user = self.adapt(s_emb, s_dense, s_labels, s_raw, torch.ones_like(s_labels),
                               create_graph=True)
        q_emb, q_dense, q_labels, _ = self.task_rows(episode.query, episode.tasks, episode.k)
        return bce(task_forward(self.layers, self.inputs(q_emb, q_dense, user), own), q_labels)

    # ---- test time: adapt few-shot users on their history ------------------------------------
    @torch.no_grad()
    def predict_split(self, data: SplitData, layout: Layout, history: SplitData,
                      probs: np.ndarray, chunk: int = 128) -> np.ndarray:
        """`probs` (the plain predictions) with the rows of few-shot users re-scored after
        adapting to each user's training history."""
        self.eval()
        users = data.ids[:, self.slots[USER]]
        counts = self.user_id_counts[torch.from_numpy(users)].numpy()
        rows = np.flatnonzero((counts >= 1) & (counts <= FEW_SHOT_MAX))
        if rows.size == 0:
            return probs
        probs = probs.copy()
        histories = Histories(history, self.slots[USER])
        uniq, task = np.unique(users[rows], return_inverse=True)
        order = np.argsort(task, kind="stable")
        rows, task = rows[order], task[order]
        position = np.arange(len(task)) - np.searchsorted(task, task)  # row's rank in its task
        for first in range(0, len(uniq), chunk):
            sel = (task >= first) & (task < first + chunk)
            t, p, r = task[sel] - first, position[sel], rows[sel]
            n_tasks = min(chunk, len(uniq) - first)
            support, mask = histories.of(uniq[first:first + n_tasks], FEW_SHOT_MAX)
            with torch.enable_grad():
                own, user = self.adapt(*self._task_rows(history, support),
                                       torch.from_numpy(mask).float(), create_graph=False)
            query = np.full((n_tasks, p.max() + 1), r[0])
            query[t, p] = r
            q_emb, q_dense, _, _ = self._task_rows(data, query)
            logits = task_forward(self.layers, self.inputs(q_emb, q_dense, user), own)
            probs[r] = torch.sigmoid(logits[t, p]).numpy()
        return probs

    def _task_rows(self, data: SplitData, index: np.ndarray):
        """`task_rows` of rows `index` (T, K) of `data`."""
        return self.task_rows(rows_batch(data, self.layout, index.ravel()), *index.shape)
