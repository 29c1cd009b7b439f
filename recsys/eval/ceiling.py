"""What retrieval can reach in a generated world: every test click of a dataset ranked among its
scenario's items by the generator's own chance of that click, as Recall@K overall and per
scenario, beside the generator's exposure weights alone. The chance of a click on item i for a
user u in scenario s is the chance u is shown i (the item's popularity weight: the generator
draws impressions by it, whoever the user is; in a feed world, mostly his current interest's
items) times the chance u clicks it once shown (the
click model's observable logit, the impression's context left out: retrieval does not know
it). No model does better on average; imported data has no such ceiling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
from scipy.special import expit

from recsys.data.offline import read_repo_meta
from recsys.data.presets import get_preset
from recsys.data.synth import AFFINITY_GAIN, World
from recsys.dataset.meta import DatasetMeta
from recsys.schema import EVENT_TIMESTAMP, ITEM_ID, LABEL, SCENARIO, USER_ID

CHUNK = 2_000  # test clicks scored at a time
RANKINGS = ("generator's chance", "exposure weight")


def retrieval_ceiling(dataset: Path, ks: tuple[int, ...]) -> dict | None:
    """{ranking: {column: {"recall@K": share}}} (columns: each scenario code, "overall"), or
    None for data the generator did not write."""
    meta = read_repo_meta(Path(DatasetMeta.read(dataset).repo))  # the generator's facts
    if meta.world is None:  # imported data: no generator to ask
        return None
    whole = meta.world  # the world's days, of which the repo may hold the first
    world = World(replace(get_preset(meta.preset, whole["n_rows"], whole["n_days"],
                                     whole["feed"]),
                          n_rows=whole["n_rows"], n_users=meta.n_users,
                          n_items=meta.n_items), meta.seed)
    items = np.arange(meta.n_items)
    scenario_of = world.item_scenario(items)
    latent, quality = world.item_latent(items), world.item_quality(items)
    price = world.item_profile(items)["item_price_level"]
    test = duckdb.sql(f"SELECT {USER_ID}, {ITEM_ID}, {SCENARIO}, (epoch({EVENT_TIMESTAMP}) - "
                      f"{meta.start_epoch}) // 86400 AS day FROM read_parquet("
                      f"'{dataset}/test/*.parquet') WHERE {LABEL} = 1").fetchnumpy()
    ranks: dict[str, dict[str, np.ndarray]] = {r: {} for r in RANKINGS}
    for s in range(len(world.bias)):
        members = np.flatnonzero(scenario_of == s)
        rows = test[SCENARIO] == s
        users, clicked, days = test[USER_ID][rows], test[ITEM_ID][rows], \
            test["day"][rows].astype(np.int64)
        found: dict[str, list] = {r: [] for r in RANKINGS}
        for lo in range(0, len(users), CHUNK):
            u, at = users[lo:lo + CHUNK], np.searchsorted(members, clicked[lo:lo + CHUNK])
            day = days[lo:lo + CHUNK]
            logit = world.bias[s] + AFFINITY_GAIN * \
                world.current_latent(u, np.full(len(u), s), day) @ latent[members].T \
                + world.user_bias(u)[:, None] + quality[members][None] \
                + world.age_effect[s, world.user_profile(u)["user_age_bucket"]][:, None] \
                + world.price_effect[s, price[members]][None]
            shown = world.log_exposure(s, members, u, day)
            for name, score in zip(RANKINGS, (shown + np.log(expit(logit)), shown)):
                own = score[np.arange(len(u)), at]
                found[name].append((score > own[:, None]).sum(1))
        for name in RANKINGS:
            if found[name]:
                ranks[name][str(s)] = np.concatenate(found[name])
    return {name: {**{col: _recall(r, ks) for col, r in by.items()},
                   "overall": _recall(np.concatenate(list(by.values())), ks)}
            for name, by in ranks.items()}


def _recall(ranks: np.ndarray, ks: tuple[int, ...]) -> dict:
    return {f"recall@{k}": float(np.mean(ranks < k)) for k in ks}
