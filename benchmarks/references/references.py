"""Independent references on a recsys dataset's split files: what a practitioner's first script
gets, written in plain numpy / PyTorch, importing nothing of recsys.

    python benchmarks/references/references.py DATASET [--seeds 0,1,2] [--json OUT]

It reads `DATASET/{train,val,test}/*.parquet` (the columns user_id, item_id, label, scenario and
history_item_ids, the user's clicks before the row, latest first) and fits:

- popularity: the item's smoothed click rate in train;
- logistic MF: b + b_user + b_item + <U_user, V_item>;
- MF + history: the same plus <mean of a separate history-item table over the row's history,
  V_item> (the user factors learn returning users, the history reaches new ones);
- history only: b + b_item + <mean of the history table, V_item> (no user factors);
- item-kNN: the mean cosine similarity (item-item, over the training users' clicks) of the
  candidate to the history's items, plus a small popularity term for ties.

The trained ones use Adam 5e-3, batch 512, L2 1e-6 on the factors' rows read, up to 25 epochs,
keeping the epoch of best validation AUC (patience 3). Test AUC overall and per scenario, and
the validation AUC (of the kept epoch) beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from sklearn.metrics import roc_auc_score

DIM, LR, BATCH, EPOCHS, PATIENCE, L2, HISTORY = 16, 5e-3, 512, 25, 3, 1e-6, 50


def read_split(dataset: Path, split: str) -> dict:
    cols = ["user_id", "item_id", "label", "scenario", "history_item_ids"]
    table = pq.ParquetDataset(sorted((dataset / split).glob("*.parquet"))).read(columns=cols)
    hist = table.column("history_item_ids").to_pylist()
    padded = np.full((len(hist), HISTORY), -1, dtype=np.int64)
    for r, h in enumerate(hist):  # latest first; at most HISTORY kept
        if h:
            h = h[:HISTORY]
            padded[r, :len(h)] = h
    return {"user": table.column("user_id").to_numpy(), "item": table.column("item_id").to_numpy(),
            "label": table.column("label").to_numpy().astype(np.float32),
            "scenario": table.column("scenario").to_numpy(), "history": padded}


def aucs(split: dict, scores: np.ndarray) -> dict:
    out = {"overall": float(roc_auc_score(split["label"], scores))}
    for s in np.unique(split["scenario"]):
        m = split["scenario"] == s
        if 0 < split["label"][m].sum() < m.sum():
            out[f"scenario_{int(s)}"] = float(roc_auc_score(split["label"][m], scores[m]))
    return out


def popularity(train: dict, n_items: int) -> np.ndarray:
    clicks = np.bincount(train["item"], weights=train["label"], minlength=n_items)
    shown = np.bincount(train["item"], minlength=n_items)
    prior = train["label"].mean()
    return (clicks + 10 * prior) / (shown + 10)  # unseen items: the prior


def item_knn(train: dict, split: dict, n_users: int, n_items: int, pop: np.ndarray) -> np.ndarray:
    from scipy.sparse import csr_matrix

    pos = train["label"] > 0
    m = csr_matrix((np.ones(pos.sum()), (train["user"][pos], train["item"][pos])),
                   shape=(n_users, n_items))
    m.data[:] = 1.0
    co = (m.T @ m).toarray()
    norm = np.sqrt(np.diag(co)) + 1e-9
    sim = co / norm[:, None] / norm[None, :]
    np.fill_diagonal(sim, 0.0)
    h = split["history"]
    valid = h >= 0
    s = sim[split["item"][:, None], np.where(valid, h, 0)] * valid
    mean = s.sum(1) / np.maximum(valid.sum(1), 1)
    return mean + 1e-3 * pop[split["item"]]


class MF(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, users: bool, history: bool):
        super().__init__()
        self.use_users, self.use_history = users, history
        self.bias = torch.nn.Parameter(torch.zeros(1))
        self.item_bias = torch.nn.Embedding(n_items, 1)
        self.user_bias = torch.nn.Embedding(n_users, 1)
        self.U = torch.nn.Embedding(n_users, DIM)
        self.V = torch.nn.Embedding(n_items, DIM)
        self.H = torch.nn.Embedding(n_items + 1, DIM, padding_idx=n_items)  # last: padding
        for e in (self.item_bias, self.user_bias):
            torch.nn.init.zeros_(e.weight)
        for e in (self.U, self.V, self.H):
            torch.nn.init.normal_(e.weight, std=0.01)
        self.n_items = n_items

    def forward(self, user, item, history):
        v = self.V(item)
        logit = self.bias + self.item_bias(item).squeeze(1)
        reg = v.pow(2).sum()
        if self.use_users:
            u = self.U(user)
            logit = logit + self.user_bias(user).squeeze(1) + (u * v).sum(1)
            reg = reg + u.pow(2).sum()
        if self.use_history:
            valid = history >= 0
            h = self.H(torch.where(valid, history, self.n_items))
            pooled = h.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
            logit = logit + (pooled * v).sum(1)
            reg = reg + pooled.pow(2).sum()
        return logit, reg


def fit(train: dict, val: dict, test: dict, n_users: int, n_items: int, seed: int,
        users: bool, history: bool) -> tuple[np.ndarray, int, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MF(n_users, n_items, users, history)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    t = {k: torch.as_tensor(v) for k, v in train.items()}

    def predict(split: dict) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(split["user"]), torch.as_tensor(split["item"]),
                         torch.as_tensor(split["history"]))[0].numpy()

    best, best_state, best_epoch, n = -1.0, None, 0, len(train["label"])
    for epoch in range(EPOCHS):
        order = torch.as_tensor(rng.permutation(n))
        for start in range(0, n, BATCH):
            b = order[start:start + BATCH]
            logit, reg = model(t["user"][b], t["item"][b], t["history"][b])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, t["label"][b])
            opt.zero_grad()
            (loss + L2 * reg / len(b)).backward()
            opt.step()
        auc = roc_auc_score(val["label"], predict(val))
        if auc > best:
            best, best_epoch = auc, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= PATIENCE:
            break
    model.load_state_dict(best_state)
    return predict(test), best_epoch + 1, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, val, test = (read_split(args.dataset, s) for s in ("train", "val", "test"))
    n_users = int(max(s["user"].max() for s in (train, val, test))) + 1
    n_items = int(max(max(s["item"].max(), s["history"].max()) for s in (train, val, test))) + 1
    pop = popularity(train, n_items)
    results = {"popularity": [{**aucs(test, pop[test["item"]]),
                               "val": aucs(val, pop[val["item"]])["overall"]}],
               "item_knn": [{**aucs(test, item_knn(train, test, n_users, n_items, pop)),
                             "val": aucs(val, item_knn(train, val, n_users, n_items,
                                                       pop))["overall"]}]}
    arms = {"logistic_mf": (True, False), "mf_history": (True, True),
            "history_only": (False, True)}
    for name, (users, history) in arms.items():
        results[name] = []
        for seed in (int(s) for s in args.seeds.split(",")):
            start = time.perf_counter()
            scores, epochs, val_auc = fit(train, val, test, n_users, n_items, seed, users,
                                          history)
            results[name].append({**aucs(test, scores), "val": val_auc, "seed": seed,
                                  "epochs": epochs,
                                  "seconds": round(time.perf_counter() - start, 1)})
    for name, runs in results.items():
        overall = [r["overall"] for r in runs]
        print(f"{name:14s} test AUC {np.mean(overall):.4f} ± {np.std(overall):.4f} "
              f"({len(runs)} run(s))", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
