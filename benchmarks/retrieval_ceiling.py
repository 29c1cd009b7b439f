"""What retrieval can reach in a generated world: every test click of a dataset ranked among its
scenario's items by the generator's own chance of that click, as Recall@K, beside the
generator's exposure weights alone and the training split's popularity (the baseline that
`recsys index` reports). The chance of a click on item i for a user u in scenario s is the
chance u is shown i (the item's popularity weight: the generator draws impressions by it,
whoever the user is) times the chance u clicks it once shown (the click model's observable
logit, the impression's context left out: retrieval does not know it).

    python benchmarks/retrieval_ceiling.py DATASET     # a dataset of a `recsys generate` repo
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
from scipy.special import expit

from recsys.data.offline import read_repo_meta
from recsys.data.presets import get_preset
from recsys.data.synth import AFFINITY_GAIN, World
from recsys.dataset.meta import read_dataset_meta
from recsys.eval.retrieval import KS
from recsys.schema import ITEM_ID, LABEL, SCENARIO, USER_ID

CHUNK = 2_000  # test clicks scored at a time


def ceiling(dataset: Path) -> dict[str, list[float]]:
    meta = read_repo_meta(Path(read_dataset_meta(dataset)["repo"]))  # the generator's facts
    world = World(replace(get_preset(meta["preset"], meta["n_rows"]), n_users=meta["n_users"],
                          n_items=meta["n_items"]), meta["seed"])
    n = int(meta["n_items"])
    items = np.arange(n)
    scenario_of, weight = world.item_scenario(items), world.item_popularity(items)
    latent, quality = world.item_latent(items), world.item_quality(items)
    price = world.item_profile(items)["item_price_level"]
    con = duckdb.connect()
    train = con.execute(f"SELECT {ITEM_ID}, sum({LABEL}) FROM read_parquet('{dataset}/train/*."
                        f"parquet') GROUP BY 1").fetchnumpy()
    clicks = np.zeros(n)
    clicks[train[ITEM_ID]] = next(v for k, v in train.items() if k != ITEM_ID)
    test = con.execute(f"SELECT {USER_ID}, {ITEM_ID}, {SCENARIO} FROM read_parquet("
                       f"'{dataset}/test/*.parquet') WHERE {LABEL} = 1").fetchnumpy()
    ranks: dict[str, list] = {"generator's chance": [], "exposure weight": [],
                              "training popularity": []}
    for s in range(len(world.bias)):
        members = np.flatnonzero(scenario_of == s)
        rows = test[SCENARIO] == s
        users, clicked = test[USER_ID][rows], test[ITEM_ID][rows]
        # popularity as recsys index ranks it: more training clicks, then the lower ID
        popular = -clicks[members] * (n + 1) + members
        for lo in range(0, len(users), CHUNK):
            u, at = users[lo:lo + CHUNK], np.searchsorted(members, clicked[lo:lo + CHUNK])
            logit = world.bias[s] + AFFINITY_GAIN * world.user_latent(u, np.full(len(u), s)) \
                @ latent[members].T + world.user_bias(u)[:, None] + quality[members][None] \
                + world.age_effect[s, world.user_profile(u)["user_age_bucket"]][:, None] \
                + world.price_effect[s, price[members]][None]
            for name, score in (("generator's chance",
                                 np.log(weight[members])[None] + np.log(expit(logit))),
                                ("exposure weight", np.log(weight[members])[None]),
                                ("training popularity", -popular[None].astype(float))):
                score = np.broadcast_to(score, (len(u), len(members)))
                own = score[np.arange(len(u)), at]
                ranks[name].append((score > own[:, None]).sum(1))
    return {name: [float(np.mean(np.concatenate(r) < k)) for k in KS]
            for name, r in ranks.items()}


if __name__ == "__main__":
    found = ceiling(Path(sys.argv[1]))
    print("| ranking | " + " | ".join(f"Recall@{k}" for k in KS) + " |")
    print("| --- |" + " ---: |" * len(KS))
    for name, recall in found.items():
        print(f"| {name} | " + " | ".join(f"{r:.4f}" for r in recall) + " |")
