"""`POST /recommend`: retrieve, then rank. The retrieval run's user tower turns the user's
online features (and the scenario, and the context) into a vector; its FAISS index
(`recsys index`) gives the `candidates` nearest items of the scenario, the excluded ones
dropped; the ranking run scores those in one model call, and the best `k` are returned with
both scores. A user the store does not know has no vector: he gets the scenario's most
clicked items, ranked the same way, and the answer says so."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.retrieval.index import HNSW_SEARCH_DEPTH, load_catalogue, load_index
from recsys.run import Run
from recsys.serve.scorer import Request, RequestError, Scorer, Seen

CANDIDATES = 500  # items retrieved for the ranker, unless a request says otherwise


@dataclass
class Recommendation:
    item_ids: list
    rank_scores: np.ndarray
    retrieval_scores: np.ndarray | None  # None: the popular fallback
    source: str  # "retrieval" | "popular"
    seconds: dict  # each stage's
    seen: Seen | None = None  # what the ranked items' rows were made of (none shown: None)


class Recommender:
    def __init__(self, ranker: Scorer, retrieval_run: Path, repo: Path,
                 refresh_seconds: float = 10.0):
        import faiss

        self.ranker = ranker
        self.retriever = Scorer(retrieval_run, repo, refresh_seconds)
        if not self.retriever.model.capabilities.retrieval:
            raise RequestError(f"{retrieval_run}: not a retrieval run (its model "
                               f"{self.retriever.info['model']} has no user vectors)")
        self.index, self.index_info = load_index(retrieval_run)
        scenario, clicks = load_catalogue(retrieval_run)
        self.members = {s: np.flatnonzero(scenario == s) for s in range(
            len(self.ranker.schema.scenarios))}
        # a scenario's items, most clicked first (ties: lower ID first): the cold user's
        self.popular = {s: m[np.lexsort((m, -clicks[m]))] for s, m in self.members.items()}
        self.selectors = {s: faiss.IDSelectorBatch(m) for s, m in self.members.items()}
        self.hnsw = self.index_info["kind"] == "hnsw"
        self.n_users = Run(retrieval_run).dataset_meta().n_users  # store IDs 0..n-1
        self.info = {"run": str(retrieval_run), "model": self.retriever.info["model"],
                     "model_fingerprint": self.retriever.info["model_fingerprint"],
                     "index": {k: v for k, v in self.index_info.items() if k != "run"}}

    def ranked_by(self, ranker: Scorer) -> "Recommender":
        """This retriever and index, ranking with another run (a watching server's new one)."""
        other = copy.copy(self)
        other.ranker = ranker
        return other

    @torch.no_grad()
    def recommend(self, user_id, scenario, k: int, exclude: list, candidates: int = CANDIDATES,
                  context: dict | None = None) -> Recommendation:
        import faiss

        start = time.perf_counter()
        code = self.ranker.scenario_code(scenario)
        user, excluded = self.ranker.store_ids(user_id, exclude, items_key="exclude")
        excluded = set(excluded[excluded >= 0].tolist())
        context = context or {}
        wanted = candidates + len(excluded)
        if not 0 <= user < self.n_users:  # not in the store, no vector to search with: the
            # scenario's most clicked items
            found = [i for i in self.popular[code][:wanted].tolist() if i not in excluded]
            near, source = None, "popular"
        else:
            batch = self.retriever.batch(user, code, np.zeros(1, dtype=np.int64),
                                         self.retriever.context_values(context))
            vector = self.retriever.model.vectors(batch)[0].numpy()
            depth = max(wanted, HNSW_SEARCH_DEPTH)  # HNSW finds at most its depth
            params = faiss.SearchParametersHNSW(sel=self.selectors[code], efSearch=depth) \
                if self.hnsw else faiss.SearchParameters(sel=self.selectors[code])
            scores, ids = self.index.search(vector, wanted, params=params)
            keep = [j for j, i in enumerate(ids[0]) if i >= 0 and i not in excluded]
            found, near, source = ids[0][keep].tolist(), scores[0][keep], "retrieval"
        found, near = found[:candidates], None if near is None else near[:candidates]
        retrieved = time.perf_counter()
        if not found:
            return Recommendation([], np.zeros(0), near, source,
                                  {"retrieval": retrieved - start, "ranking": 0.0})
        raw = self.ranker.features.items.raw_ids(np.array(found))
        ranked = self.ranker.score(Request(user_id, scenario, raw, context))
        order = (-ranked.scores).argsort(kind="stable")[:k]
        return Recommendation([raw[i] for i in order], ranked.scores[order],
                              None if near is None else near[order], source,
                              {"retrieval": retrieved - start,
                               "ranking": time.perf_counter() - retrieved},
                              ranked.seen.take(order))
