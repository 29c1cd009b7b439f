"""metaemb (Meta-Embedding): a generator makes the initial ID embedding of a new user or item
from its profile features, trained with the two-phase meta objective on training entities
treated as new: the cold loss of the generated embedding on k support rows, one simulated
warm-up step on it, then the warm loss on the k rows that follow. The generated embedding is
the base's content prior plus the generator's correction (zero at the start); the base network
trains as usual, and the meta objective moves only the generators (the base is frozen inside
it)."""

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from recsys.dataset.episodes import Episode
from recsys.models.cold import COLD_ENTITIES, ColdStartModel, EpisodeConfig, content_mlp, \
    replace_slot


@dataclass
class MetaEmbConfig(EpisodeConfig):
    metaemb_weight: float = 1.0  # its meta loss moves only the generators
    metaemb_alpha: float = 0.1  # weight of the cold loss against the warm-up loss
    metaemb_lr: float = 0.1  # step size of the simulated warm-up


class MetaEmb(ColdStartModel, name="metaemb"):
    capabilities = replace(ColdStartModel.capabilities, episodes=COLD_ENTITIES)
    Config = MetaEmbConfig

    def __init__(self, layout, cfg):
        super().__init__(layout, cfg)
        self.generators = nn.ModuleDict({
            name: content_mlp(len(self.content_slots[name]), cfg.embedding_dim)
            for name in COLD_ENTITIES})
        for generator in self.generators.values():  # start from the prior itself
            nn.init.zeros_(generator[-1].weight)
            nn.init.zeros_(generator[-1].bias)

    def correction(self, emb, name):
        # the base model's content embeddings feed the generator, which must not move them
        return self.generators[name](emb[:, self.content_slots[name]].detach().flatten(1))

    def loss(self, batch, episode=None):
        meta = sum(self.meta_loss(name, episode[name]) for name in COLD_ENTITIES)
        return super().loss(batch) + self.cfg.metaemb_weight * meta

    def meta_loss(self, name: str, episode: Episode) -> torch.Tensor:
        n_tasks, k = episode.tasks, episode.k
        task = torch.arange(n_tasks).repeat_interleave(k)
        frozen = {key: p.detach() for key, p in self.net.named_parameters()}
        bottom = {key: p.detach() for key, p in self.sparse.backbone.named_parameters()}
        slot = self.slots[name]

        def loss_with(batch, emb, vectors):  # per-row BCE with the tasks' embeddings in place
            x = torch.cat([replace_slot(emb, slot, vectors[task]).flatten(1), batch.dense], 1)
            x = functional_call(self.sparse.backbone, bottom, (x,))  # frozen too, with dcn
            logits = functional_call(self.net, frozen, (x,)).squeeze(1)
            return bce(logits, batch.labels, reduction="none").view(n_tasks, k).mean(1)

        s_batch, q_batch = episode.support, episode.query
        with torch.no_grad():  # the other entity's slot as the base serves it
            s_raw, q_raw = self.sparse.lookup(s_batch), self.sparse.lookup(q_batch)
            s_emb = self.compose(s_raw, self.cold_masks(s_batch, dropout=False))
            q_emb = self.compose(q_raw, self.cold_masks(q_batch, dropout=False))
            prior = self.prior(s_raw[::k], name)
        generated = prior + self.correction(s_raw[::k], name)  # one per task: (T, D)
        cold = loss_with(s_batch, s_emb, generated)
        grad, = torch.autograd.grad(cold.sum(), generated, create_graph=True)
        warm = loss_with(q_batch, q_emb, generated - self.cfg.metaemb_lr * grad)
        alpha = self.cfg.metaemb_alpha
        return alpha * cold.mean() + (1 - alpha) * warm.mean()
