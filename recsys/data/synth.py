"""The synthetic AntM2C world: a generative model whose effects come from structure.

Every user / item attribute is a pure function of (seed, id) through a counter-based hash, so any
chunk of impressions can be generated anywhere, in any order, with no shared state; a chunk of
impressions is a pure function of (seed, day, chunk).

Generative model (see DESIGN.md §5):
- 20 topics with unit centroids in a 16-d latent space. A user likes two topics; an item has one.
- user latent (scenario s) = shared part (topic centroids + ID noise) + a per-scenario part;
  item latent = its topic centroid + an offset within the topic, half of it spelled out by the
  item's words (each topic word has its own direction) and half ID noise; item quality is
  ID-only. So an item's text tells more than its category: where it sits inside its topic.
- click logit = scenario bias + gain * <user, item> + user propensity + item quality + profile
  effects
  (age x scenario, price level x scenario) + context effects (deep features, some of them
  scenario-specific) + unobserved noise. User taste and propensity are shared by all
  scenarios: what a user does in a busy scenario tells about the sparse ones.
- profile features and text are drawn from the latent (age from the favourite topic, brand and
  category from the item topic, words from topic vocabularies): cold users and items carry
  learnable signal. The synthetic image vector of an item is a fixed random projection of its
  latent plus noise.
- a feed world (`Preset.feed`, `recsys generate --feed`) is the log of a personalized feed: each
  user has a current interest, one of his two topics drawn anew every INTEREST_DAYS days (phase
  per user); it adds to his taste, and from the day after he arrives (a feed knows nobody on
  his first day) the feed shows FEED_SHARE of his impressions from the current interest's items
  of the scenario (uniformly), the rest by popularity. So his recent clicks tell what he is
  shown and clicks next, which his ID and profile cannot: the history and retrieval have
  something to find, as in real logs.
- the scenario bias is solved on a pilot sample so each scenario's positive rate is 1/3 (the
  release's down-sampled negatives are a per-scenario logit shift).
- `p_true` is the click probability given everything observable (the noise integrated out), so
  its AUC against the labels is the Bayes AUC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit, ndtri

from recsys.data import vocab
from recsys.data.presets import Preset
from recsys.antm2c import DEEP_CATEGORICAL_CARDINALITIES, FEATURE_BY_NAME, N_BRANDS, \
    N_DEEP_FEATURES, N_TOPICS, SCENARIOS

ENTITY_CHUNK = 1_000_000  # ids per pass over an entity table (weights, rows written)

LATENT_DIM = 16
N_SCENARIOS = len(SCENARIOS)
SCENARIO_SHARES = np.array([s.share for s in SCENARIOS]) / sum(s.share for s in SCENARIOS)
TARGET_POSITIVE_RATE = 1 / 3
NOISE_STD = 0.5  # unobserved per-impression noise on the logit
AFFINITY_GAIN = 2.2
SCENARIO_SPECIFIC_STD = 0.3  # size of the per-scenario part of user taste
USER_BIAS_STD = 0.7  # a user's click propensity, the same in every scenario, known only by ID
# the profile features' value counts, as the schema declares them
AGES, GENDERS, CITY_LEVELS, MEMBER_LEVELS, PRICE_LEVELS = (
    FEATURE_BY_NAME[n].cardinality for n in ("user_age_bucket", "user_gender", "user_city_level",
                                              "user_member_level", "item_price_level"))
BRANDS_PER_TOPIC = N_BRANDS // N_TOPICS
W = len(vocab.TOPIC_WORDS[0])  # words per topic
ITEM_WORDS = 3  # an item's entity names; its title shows the first two
WORD_SHARE = 0.5  # share of the variance of an item's within-topic offset set by its words
ITEM_OFFSET_STD = 0.6  # size of an item's offset from its topic centroid
IMAGE_DIM = 32
IMAGE_NOISE_STD = 0.5
# A feed world's current interest: how long it lasts, how often it is the user's favourite of
# his two topics, how much it adds to his taste, and the share of impressions the feed picks by it.
INTEREST_DAYS = 4
FAVOURITE_INTEREST_SHARE = 0.75
INTEREST_WEIGHT = 0.8
FEED_SHARE = 0.7

# Hash streams: one per attribute, so attributes are independent functions of the id.
(S_USER_TOPIC, S_USER_LATENT, S_USER_SCEN, S_USER_ACTIVITY, S_USER_PROFILE, S_USER_TEXT,
 S_USER_REFRESH, S_ITEM_SCEN, S_ITEM_TOPIC, S_ITEM_LATENT, S_ITEM_QUALITY, S_ITEM_POP,
 S_ITEM_PROFILE, S_ITEM_TEXT, S_USER_BIAS, S_ITEM_IMAGE, S_USER_INTEREST,
 S_USER_PHASE) = range(1, 19)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised over uint64 (wrap-around is intended)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, ids: np.ndarray, k: int = 1) -> np.ndarray:
    """(len(ids), k) uniforms in (0, 1), a pure function of (seed, stream, id, column)."""
    key = _mix(np.array([seed * 1_000_003 + stream], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64)[:, None] * np.uint64(k) + np.arange(k, dtype=np.uint64)
        x = _mix(_mix(x ^ key) + key)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def hash_normal(seed: int, stream: int, ids: np.ndarray, k: int = 1) -> np.ndarray:
    return ndtri(hash_uniform(seed, stream, ids, k))


def _cohort_bounds(n: int, new_frac: float, n_days: int) -> np.ndarray:
    """Id boundaries of arrival cohorts: ids [b[d], b[d+1]) arrive on day d (ids grow with
    arrival, so 'arrived by day d' is a prefix of the id range)."""
    first = int(round(n * (1 - new_frac))) if n_days > 1 else n
    later = np.linspace(first, n, n_days, dtype=np.int64)  # days 1..n_days-1 share the rest
    return np.concatenate([[0], later])


def _cumulative(weights_of, n: int) -> np.ndarray:
    """np.cumsum(weights_of(ids 0..n-1)), computed ENTITY_CHUNK ids at a time: only the sums
    span all ids (200M users: 1.6 GB, not the 6 GB of the whole weight and id arrays). Each
    chunk's first sum adds the running total, so the sums are exactly one cumsum's."""
    cum = np.empty(n, dtype=np.float64)
    total = 0.0
    for lo in range(0, n, ENTITY_CHUNK):
        weights = weights_of(np.arange(lo, min(lo + ENTITY_CHUNK, n), dtype=np.int64))
        weights[0] += total
        np.cumsum(weights, out=cum[lo:lo + len(weights)])
        total = cum[lo + len(weights) - 1]
    return cum


def _sample_weighted(rng: np.random.Generator, cum: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray) -> np.ndarray:
    """Index in [lo, hi) drawn with probability proportional to weights (cum = their cumsum)."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    top = cum[hi - 1]
    picks = np.searchsorted(cum, base + rng.random(len(lo)) * (top - base), side="right")
    return np.clip(picks, lo, hi - 1)


@dataclass
class Rows:
    """One chunk of impressions, as numpy columns."""

    request_id: np.ndarray
    seconds: np.ndarray  # seconds since the preset's start
    user_id: np.ndarray
    item_id: np.ndarray
    scenario: np.ndarray
    deep: list[np.ndarray]
    label: np.ndarray
    p_true: np.ndarray


class World:
    """Global parameters of one seed: topics, effect tables, arrival cohorts, scenario biases."""

    def __init__(self, preset: Preset, seed: int):
        self.preset, self.seed = preset, seed
        rng = np.random.default_rng([seed, 0])
        topics = rng.normal(size=(N_TOPICS, LATENT_DIM))
        self.topics = topics / np.linalg.norm(topics, axis=1, keepdims=True)
        # Effect tables: shared across scenarios plus a scenario-specific part for a few.
        self.deep_effects = []
        for i, card in enumerate(DEEP_CATEGORICAL_CARDINALITIES):
            shared_std = 0.35 if i < 4 else 0.2 if i < 10 else 0.0  # 10..21 carry no signal
            specific_std = 0.3 if i < 3 else 0.0
            table = rng.normal(0, shared_std, size=card) + \
                rng.normal(0, specific_std, size=(N_SCENARIOS, card))
            self.deep_effects.append(table)
        self.position_bias = -0.12 * np.arange(DEEP_CATEGORICAL_CARDINALITIES[1])
        n_numeric = N_DEEP_FEATURES - len(DEEP_CATEGORICAL_CARDINALITIES)
        self.numeric_beta = np.array([0.3, -0.2] + [0.0] * (n_numeric - 2))
        self.age_effect = rng.normal(0, 0.3, size=(N_SCENARIOS, AGES))
        self.price_effect = rng.normal(0, 0.3, size=(N_SCENARIOS, PRICE_LEVELS))
        # each topic word's direction inside its topic, and the image projection
        self.word_offsets = rng.normal(size=(N_TOPICS * W, LATENT_DIM)) / np.sqrt(LATENT_DIM)
        self.image_projection = rng.normal(size=(LATENT_DIM, IMAGE_DIM))
        # Items per scenario follow the traffic shares; each scenario's item list stays sorted
        # by id, hence by launch day.
        self.user_bounds = _cohort_bounds(preset.n_users, preset.new_user_frac, preset.n_days)
        self.item_bounds = _cohort_bounds(preset.n_items, preset.new_item_frac, preset.n_days)
        self.user_cum = _cumulative(self.user_activity, preset.n_users)
        items = np.arange(preset.n_items, dtype=np.int64)
        item_scen = self.item_scenario(items)
        pop = self.item_popularity(items)
        self.scen_items = [items[item_scen == s] for s in range(N_SCENARIOS)]
        self.scen_item_cum = [np.cumsum(pop[item_scen == s]) for s in range(N_SCENARIOS)]
        self.scen_item_bounds = [np.searchsorted(ids, self.item_bounds) for ids in self.scen_items]
        if preset.feed:  # each (scenario, topic)'s items, sorted by id: the feed's shelves
            topic = self.item_topic(items)
            self.feed_items = [[items[(item_scen == s) & (topic == t)] for t in range(N_TOPICS)]
                               for s in range(N_SCENARIOS)]
        self.bias = np.zeros(N_SCENARIOS)
        self.bias = self._calibrate_bias()

    # ---- users -----------------------------------------------------------------------------
    def user_topics(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = hash_uniform(self.seed, S_USER_TOPIC, ids, 2)
        first = (u[:, 0] * N_TOPICS).astype(np.int64)
        second = (first + 1 + (u[:, 1] * (N_TOPICS - 1)).astype(np.int64)) % N_TOPICS
        return first, second

    def user_latent(self, ids: np.ndarray, scenario: np.ndarray) -> np.ndarray:
        first, second = self.user_topics(ids)
        shared = self.topics[first] + 0.5 * self.topics[second] + \
            0.6 * hash_normal(self.seed, S_USER_LATENT, ids, LATENT_DIM) / np.sqrt(LATENT_DIM)
        # per-scenario taste: hashed on (user, scenario)
        key = ids * N_SCENARIOS + scenario
        specific = SCENARIO_SPECIFIC_STD * hash_normal(self.seed, S_USER_SCEN, key, LATENT_DIM) \
            / np.sqrt(LATENT_DIM)
        return shared + specific

    def user_interest(self, ids: np.ndarray, day: np.ndarray | int) -> np.ndarray:
        """A feed world's current interest of each user on `day`: one of his two topics (the
        favourite more often), drawn anew every INTEREST_DAYS days, the periods' phase drawn
        per user."""
        phase = hash_uniform(self.seed, S_USER_PHASE, ids)[:, 0]
        period = (day + (phase * INTEREST_DAYS).astype(np.int64)) // INTEREST_DAYS
        v = hash_uniform(self.seed, S_USER_INTEREST, ids * 4096 + period)[:, 0]
        first, second = self.user_topics(ids)
        return np.where(v < FAVOURITE_INTEREST_SHARE, first, second)

    def current_latent(self, ids: np.ndarray, scenario: np.ndarray,
                       day: np.ndarray | int) -> np.ndarray:
        """The taste that decides a click on `day`: a feed world adds the current interest."""
        latent = self.user_latent(ids, scenario)
        if self.preset.feed:
            latent = latent + INTEREST_WEIGHT * self.topics[self.user_interest(ids, day)]
        return latent

    def user_bias(self, ids: np.ndarray) -> np.ndarray:
        return USER_BIAS_STD * hash_normal(self.seed, S_USER_BIAS, ids)[:, 0]

    def user_activity(self, ids: np.ndarray) -> np.ndarray:
        """Pareto(1.5) activity weights: a heavy tail of busy users, many few-shot ones."""
        u = hash_uniform(self.seed, S_USER_ACTIVITY, ids)[:, 0]
        return np.minimum(u ** (-1 / 1.5), 500.0)

    def user_arrival_day(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.user_bounds, ids, side="right") - 1

    def user_profile(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        first, _ = self.user_topics(ids)
        u = hash_uniform(self.seed, S_USER_PROFILE, ids, 3)
        age = (first * 3 + (u[:, 0] * 3).astype(np.int64)) % AGES  # taste follows age
        gender = np.where(u[:, 1] < 0.05, GENDERS - 1,
                          (u[:, 1] < np.where(first % 2 == 0, 0.35, 0.7)).astype(np.int64))
        city = (u[:, 2] * CITY_LEVELS).astype(np.int64)
        member = np.minimum(np.log2(self.user_activity(ids)).astype(np.int64),
                            MEMBER_LEVELS - 1)
        return {"user_age_bucket": age, "user_gender": gender, "user_city_level": city,
                "user_member_level": member}

    def user_text(self, ids: np.ndarray, version: int) -> dict[str, pa.Array]:
        """Bill / service / query entities drawn from the user's two topics; `version` > 0 is
        a later refresh of the same tastes with new words."""
        first, second = self.user_topics(ids)
        u = hash_uniform(self.seed, S_USER_TEXT, ids * 4 + version, 2 * W + 2)
        query = _topic_words([(first, 3), (second, 2)], u)
        bill = _topic_words([(first, 2)], u[:, W:], vocab.BILL_WORDS, u[:, -2])
        service = _topic_words([(second, 2)], u, vocab.SERVICE_WORDS, u[:, -1])
        return {"bill_entity_seq": bill, "service_entity_seq": service,
                "query_entity_seq": query}

    def user_refresh_day(self, ids: np.ndarray) -> np.ndarray:
        """Day of a user's text refresh (may fall after the last day: then there is none)."""
        u = hash_uniform(self.seed, S_USER_REFRESH, ids)[:, 0]
        return self.user_arrival_day(ids) + 1 + (u * self.preset.n_days).astype(np.int64)

    # ---- items -----------------------------------------------------------------------------
    def item_scenario(self, ids: np.ndarray) -> np.ndarray:
        u = hash_uniform(self.seed, S_ITEM_SCEN, ids)[:, 0]
        return np.searchsorted(np.cumsum(SCENARIO_SHARES)[:-1], u, side="right")

    def item_topic(self, ids: np.ndarray) -> np.ndarray:
        return (hash_uniform(self.seed, S_ITEM_TOPIC, ids)[:, 0] * N_TOPICS).astype(np.int64)

    def item_words(self, ids: np.ndarray) -> np.ndarray:
        """(N, ITEM_WORDS) indices into the flattened topic vocabulary: the item's entity names,
        distinct words of its topic (the title uses the first two)."""
        u = hash_uniform(self.seed, S_ITEM_TEXT, ids, W + 2)[:, 2:]
        return self.item_topic(ids)[:, None] * W + np.argsort(u, axis=1)[:, :ITEM_WORDS]

    def item_latent(self, ids: np.ndarray) -> np.ndarray:
        words = self.word_offsets[self.item_words(ids)].sum(1) / np.sqrt(ITEM_WORDS)
        own = hash_normal(self.seed, S_ITEM_LATENT, ids, LATENT_DIM) / np.sqrt(LATENT_DIM)
        offset = np.sqrt(WORD_SHARE) * words + np.sqrt(1 - WORD_SHARE) * own
        return self.topics[self.item_topic(ids)] + ITEM_OFFSET_STD * offset

    def item_image(self, ids: np.ndarray) -> np.ndarray:
        """(N, IMAGE_DIM) float32: what a picture of the item shows, its latent, seen noisily."""
        noise = IMAGE_NOISE_STD * hash_normal(self.seed, S_ITEM_IMAGE, ids, IMAGE_DIM)
        return (self.item_latent(ids) @ self.image_projection / np.sqrt(LATENT_DIM)
                + noise).astype(np.float32)

    def item_quality(self, ids: np.ndarray) -> np.ndarray:
        return 0.4 * hash_normal(self.seed, S_ITEM_QUALITY, ids)[:, 0]

    def item_popularity(self, ids: np.ndarray) -> np.ndarray:
        """Power-law popularity: Pareto(1) weights, a long tail of rarely shown items."""
        u = hash_uniform(self.seed, S_ITEM_POP, ids)[:, 0]
        return np.minimum(1 / u, 5000.0)

    def item_launch_day(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.item_bounds, ids, side="right") - 1

    def item_profile(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        topic = self.item_topic(ids)
        u = hash_uniform(self.seed, S_ITEM_PROFILE, ids, 2)
        brand = topic * BRANDS_PER_TOPIC + (u[:, 0] * BRANDS_PER_TOPIC).astype(np.int64)
        return {"item_category": topic, "item_brand": brand,
                "item_price_level": (u[:, 1] * PRICE_LEVELS).astype(np.int64)}

    def item_text(self, ids: np.ndarray) -> dict[str, pa.Array]:
        scen = self.item_scenario(ids)
        u = hash_uniform(self.seed, S_ITEM_TEXT, ids, W + 2)  # [:, 2:] pick the words
        adjective = np.array(vocab.ADJECTIVES)[(u[:, 0] * len(vocab.ADJECTIVES)).astype(int)]
        nouns = np.array([w for ws in vocab.SCENARIO_NOUNS for w in ws])
        per = len(vocab.SCENARIO_NOUNS[0])
        noun = nouns[scen * per + (u[:, 1] * per).astype(np.int64)]
        words = self.item_words(ids)
        title = pc.binary_join_element_wise(pa.array(adjective), _join(words[:, :2], " "),
                                            pa.array(noun), " ")
        return {"item_title": title, "item_entity_names": _join(words, ", ")}

    # ---- impressions -----------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, day: int, n: int) -> tuple[np.ndarray, ...]:
        """Who sees what on `day`: scenario, user, item and context for n impressions."""
        p = self.preset
        scenario = rng.choice(N_SCENARIOS, size=n, p=SCENARIO_SHARES)
        user_id = self._sample_arrivals(rng, self.user_cum, self.user_bounds, day, n,
                                        p.new_user_traffic)
        item_id = np.empty(n, dtype=np.int64)
        for s in range(N_SCENARIOS):
            rows = np.flatnonzero(scenario == s)
            if rows.size == 0:
                continue
            if self.scen_items[s].size == 0:
                raise ValueError(f"scenario {s} has no items: raise the preset's n_items")
            pos = self._sample_arrivals(rng, self.scen_item_cum[s], self.scen_item_bounds[s],
                                        day, rows.size, p.new_item_traffic)
            item_id[rows] = self.scen_items[s][pos]
            if p.feed:
                self._feed_picks(rng, s, day, rows, user_id, item_id)
        deep = []
        for card in DEEP_CATEGORICAL_CARDINALITIES:  # skewed toward low codes, like real logs
            deep.append(np.minimum((rng.random(n) ** 2 * card).astype(np.int64), card - 1))
        for _ in range(N_DEEP_FEATURES - len(DEEP_CATEGORICAL_CARDINALITIES)):
            deep.append(rng.normal(size=n).astype(np.float32))
        return scenario, user_id, item_id, deep

    def _feed_picks(self, rng, s, day, rows, user_id, item_id) -> None:
        """FEED_SHARE of scenario `s`'s `rows` shown one of the items of the user's current
        interest that have arrived by `day`, uniformly (none arrived: popularity's pick stays),
        unless the user arrived that day."""
        fed = rows[(rng.random(rows.size) < FEED_SHARE)
                   & (self.user_arrival_day(user_id[rows]) < day)]
        interest = self.user_interest(user_id[fed], day)
        draw = rng.random(fed.size)
        for t in np.unique(interest):
            shelf = self.feed_items[s][t]
            arrived = np.searchsorted(shelf, self.item_bounds[day + 1])
            if arrived:
                mine = interest == t
                item_id[fed[mine]] = shelf[(draw[mine] * arrived).astype(np.int64)]

    def log_exposure(self, s: int, members: np.ndarray, user_id: np.ndarray,
                     day: np.ndarray) -> np.ndarray:
        """(users, members) log of the weight with which `sample` shows each item of scenario
        `s` (`members`, its items) to each user on his day, up to a constant per user."""
        weight = self.item_popularity(members)
        if not self.preset.feed:
            return np.broadcast_to(np.log(weight)[None], (len(user_id), len(members)))
        shelf = (self.item_topic(members)[None] == self.user_interest(user_id, day)[:, None]) \
            & (members[None] < self.item_bounds[day + 1][:, None])
        fed = FEED_SHARE * (self.user_arrival_day(user_id) < day)[:, None]
        chance = (1 - fed) * weight[None] / weight.sum() + \
            fed * shelf / np.maximum(shelf.sum(1, keepdims=True), 1)
        return np.log(chance)

    def _sample_arrivals(self, rng, cum, bounds, day, n, new_traffic) -> np.ndarray:
        """Activity-weighted draws: a `new_traffic` share from the cohort arriving on `day`,
        the rest from earlier cohorts (day 0: its own cohort only)."""
        new = rng.random(n) < (new_traffic if day > 0 else 1.0)
        lo = np.where(new, bounds[day], 0)
        hi = np.where(new, bounds[day + 1], bounds[max(day, 1)])
        empty = hi <= lo  # a cohort with no members: fall back to everyone arrived so far
        lo, hi = np.where(empty, 0, lo), np.where(empty, bounds[day + 1], hi)
        return _sample_weighted(rng, cum, lo, hi)

    def observable_logit(self, scenario, user_id, item_id, deep, day) -> np.ndarray:
        """Click logit from everything observable, without the scenario bias. What depends on
        an ID alone (hashes: most of a draw's work) is computed once per distinct ID of the
        rows and gathered: the same values, a fraction of the work where IDs repeat."""
        items, at_item = np.unique(item_id, return_inverse=True)
        users, at_user = np.unique(user_id, return_inverse=True)
        if np.ndim(day) == 0:  # a user's latent: once per (user, scenario)
            pairs, at_pair = np.unique(user_id * N_SCENARIOS + scenario, return_inverse=True)
            latent = self.current_latent(pairs // N_SCENARIOS, pairs % N_SCENARIOS,
                                         day)[at_pair]
        else:
            latent = self.current_latent(user_id, scenario, day)
        affinity = np.einsum("nd,nd->n", latent, self.item_latent(items)[at_item])
        logit = AFFINITY_GAIN * affinity + self.user_bias(users)[at_user] + \
            self.item_quality(items)[at_item]
        logit += self.age_effect[scenario, self.user_profile(users)["user_age_bucket"][at_user]]
        logit += self.price_effect[scenario,
                                   self.item_profile(items)["item_price_level"][at_item]]
        for i, table in enumerate(self.deep_effects):
            logit += table[scenario, deep[i]]
        logit += self.position_bias[deep[1]]
        n_cat = len(DEEP_CATEGORICAL_CARDINALITIES)
        for j, beta in enumerate(self.numeric_beta):
            logit += beta * deep[n_cat + j]
        return logit

    def click_probability(self, logit_with_bias: np.ndarray) -> np.ndarray:
        """P(click | observables): the logistic-normal integral over the unobserved noise,
        by the probit approximation."""
        return expit(logit_with_bias / np.sqrt(1 + np.pi * NOISE_STD ** 2 / 8))

    def _calibrate_bias(self) -> np.ndarray:
        """Per-scenario bias giving TARGET_POSITIVE_RATE, solved on a pilot sample."""
        rng = np.random.default_rng([self.seed, 0, 1])
        n = min(max(self.preset.rows_per_day, 20_000), 200_000)
        day = self.preset.n_days - 1
        scenario, user_id, item_id, deep = self.sample(rng, day, n)
        logit = self.observable_logit(scenario, user_id, item_id, deep, day)
        lo, hi = np.full(N_SCENARIOS, -20.0), np.full(N_SCENARIOS, 20.0)
        for _ in range(60):  # bisection, all scenarios at once
            mid = (lo + hi) / 2
            rate = np.array([self.click_probability(mid[s] + logit[scenario == s]).mean()
                             for s in range(N_SCENARIOS)])
            lo, hi = np.where(rate < TARGET_POSITIVE_RATE, mid, lo), \
                np.where(rate < TARGET_POSITIVE_RATE, hi, mid)
        return (lo + hi) / 2

    def impressions(self, day: int, chunk: int, n: int) -> Rows:
        """Chunk `chunk` of `day`: a pure function of (seed, day, chunk)."""
        rng = np.random.default_rng([self.seed, 1, day, chunk])
        scenario, user_id, item_id, deep = self.sample(rng, day, n)
        logit = self.bias[scenario] + self.observable_logit(scenario, user_id, item_id, deep,
                                                            day)
        noise = rng.normal(0, NOISE_STD, size=n)
        label = (rng.random(n) < expit(logit + noise)).astype(np.int8)
        seconds = day * 86_400 + np.sort(rng.integers(1, 86_400, size=n))
        first = day * self.preset.rows_per_day + chunk * self.preset.rows_per_chunk
        return Rows(request_id=first + np.arange(n, dtype=np.int64), seconds=seconds,
                    user_id=user_id, item_id=item_id, scenario=scenario.astype(np.int64),
                    deep=deep, label=label,
                    p_true=self.click_probability(logit).astype(np.float32))


def _topic_words(groups: list[tuple[np.ndarray, int]], u: np.ndarray,
                 extra: tuple[str, ...] = (), u_extra: np.ndarray | None = None,
                 sep: str = ", ") -> pa.Array:
    """Join words: for each (topics, count) group, `count` distinct words of each row's topic,
    chosen by ranking that row's uniforms u[:, g*W:(g+1)*W] (W words per topic); optionally one
    more word from `extra` by u_extra. Words are gathered by index from one Arrow vocabulary
    and joined through Arrow lists: vectorised, no per-row Python."""
    width = len(vocab.TOPIC_WORDS[0])
    words = pa.array([w for ws in vocab.TOPIC_WORDS for w in ws] + list(extra))
    cols = []
    for g, (topics, count) in enumerate(groups):
        picks = np.argsort(u[:, g * width:(g + 1) * width], axis=1)[:, :count]
        cols.append(topics[:, None] * width + picks)
    if extra:
        first_extra = width * len(vocab.TOPIC_WORDS)
        cols.append(first_extra + (u_extra * len(extra)).astype(np.int64)[:, None])
    return _join(np.concatenate(cols, axis=1), sep, words)


def _join(index: np.ndarray, sep: str, words: pa.Array | None = None) -> pa.Array:
    """Per row, the words at `index` (N, k) of the vocabulary (default: the topic words)."""
    if words is None:
        words = pa.array([w for ws in vocab.TOPIC_WORDS for w in ws])
    n, k = index.shape
    offsets = np.arange(0, n * k + 1, k, dtype=np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(offsets, words.take(pa.array(index.ravel()))),
                          sep)
