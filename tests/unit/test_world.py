"""The synthetic world's statistics, in process (no files, no commands): presets, text and
images that carry the latent, chunked user weights, a feed world's interests."""

from __future__ import annotations

import numpy as np

from recsys.data.presets import PRESETS, get_preset
from recsys.data.synth import FAVOURITE_INTEREST_SHARE, FEED_SHARE, INTEREST_DAYS, \
    TARGET_POSITIVE_RATE, World

TINY = PRESETS["tiny"]


def test_presets_and_rows_override():
    assert get_preset("small", rows=5000).n_rows == 5000
    longer = get_preset("small", days=14)  # the same users, more days at the same daily rows
    assert (longer.n_days, longer.rows_per_day, longer.n_users) == \
        (14, PRESETS["small"].rows_per_day, PRESETS["small"].n_users)
    assert get_preset("tiny", rows=7000, days=7).n_rows == 7000
    assert [p.n_rows for p in PRESETS.values()] == sorted(p.n_rows for p in PRESETS.values())
    assert PRESETS["full"].n_users == 200_000_000


def test_text_for_a_full_entity_chunk():
    """Text for ENTITY_CHUNK ids at once (the medium / full presets write chunks that large)."""
    from recsys.data.generate import ENTITY_CHUNK

    text = World(TINY, 0).user_text(np.arange(ENTITY_CHUNK, dtype=np.int64), 0)
    assert all(len(column) == ENTITY_CHUNK for column in text.values())


def test_item_words_and_image_carry_the_latent():
    """An item's words spell out part of its offset inside the topic (more than its category
    tells), and its image vector is a noisy view of its latent: both are learnable signal."""
    world = World(TINY, 3)
    ids = np.arange(TINY.n_items, dtype=np.int64)
    offset = world.item_latent(ids) - world.topics[world.item_topic(ids)]
    words = world.word_offsets[world.item_words(ids)].sum(1)
    assert np.corrcoef(offset.ravel(), words.ravel())[0, 1] > 0.5
    image = world.item_image(ids)
    assert image.shape == (len(ids), 32) and image.dtype == np.float32
    latent = world.item_latent(ids)
    fit, *_ = np.linalg.lstsq(np.c_[image, np.ones(len(ids))], latent, rcond=None)
    residual = latent - np.c_[image, np.ones(len(ids))] @ fit
    assert 1 - residual.var() / latent.var() > 0.3  # pure noise would explain about 0.08


def test_user_weights_summed_in_chunks_equal_one_cumsum():
    """The generator sums user activity a chunk of ids at a time (bounded memory at `full`);
    the sums are bit for bit those of one cumsum over every id."""
    from recsys.data.synth import ENTITY_CHUNK, _cumulative

    world, n = World(TINY, 0), 2 * ENTITY_CHUNK + 12_345
    whole = np.cumsum(world.user_activity(np.arange(n, dtype=np.int64)))
    assert np.array_equal(_cumulative(world.user_activity, n), whole)


def test_a_feed_world_shows_each_user_his_current_interest():
    """`--feed`: a user's current interest is one of his two topics, the favourite about
    FAVOURITE_INTEREST_SHARE of the time, drawn anew every INTEREST_DAYS days, and picks
    FEED_SHARE of his impressions from the day after he arrives; clicks favour it; the
    generator's own exposure weights (the retrieval ceiling's) rank the shown items first; the
    click rate is still calibrated. Without --feed nothing of it shows."""
    small = get_preset("small")  # every scenario has items of every topic
    feed, plain = World(get_preset("small", feed=True), 0), World(small, 0)
    users = np.arange(small.n_users, dtype=np.int64)
    days = np.stack([feed.user_interest(users, d) for d in range(9)])
    first, second = feed.user_topics(users)
    assert ((days == first) | (days == second)).all()
    favourite = (days == first).mean()
    assert abs(favourite - FAVOURITE_INTEREST_SHARE) < 0.03, favourite
    # the same interest on the next day: the same period, or the same draw in the next
    redrawn_same = FAVOURITE_INTEREST_SHARE ** 2 + (1 - FAVOURITE_INTEREST_SHARE) ** 2
    kept = (days[1:] == days[:-1]).mean()
    expected = (INTEREST_DAYS - 1 + redrawn_same) / INTEREST_DAYS
    assert abs(kept - expected) < 0.03, (kept, expected)
    for world, share in ((feed, (FEED_SHARE, FEED_SHARE + 0.15)), (plain, (0.0, 0.2))):
        rows = world.impressions(4, 0, 20_000)
        mine = world.item_topic(rows.item_id) == feed.user_interest(rows.user_id, 4)
        new = world.user_arrival_day(rows.user_id) == 4  # the feed knows them from tomorrow
        assert share[0] < mine[~new].mean() < share[1], mine[~new].mean()
        assert new.sum() > 500 and mine[new].mean() < 0.2, mine[new].mean()
        assert abs(rows.label.mean() - TARGET_POSITIVE_RATE) < 0.03
    rows = feed.impressions(4, 0, 20_000)
    topic, interest = feed.item_topic(rows.item_id), feed.user_interest(rows.user_id, 4)
    first, second = feed.user_topics(rows.user_id)
    resting = topic == np.where(interest == first, second, first)  # his other topic's items
    assert rows.label[topic == interest].mean() > rows.label[resting].mean() + 0.1
    scenario = int(np.bincount(rows.scenario).argmax())
    members = np.flatnonzero(feed.item_scenario(np.arange(small.n_items)) == scenario)
    # 1,500 of its rows: the (rows, items) exposure matrices of all of them take a minute
    at = (rows.scenario == scenario) & (np.cumsum(rows.scenario == scenario) <= 1_500)
    shown = np.searchsorted(members, rows.item_id[at])

    def log_likelihood(day: int) -> float:
        """Mean log chance of the shown items under the exposure of `day`, normalized."""
        weight = feed.log_exposure(scenario, members, rows.user_id[at], np.full(at.sum(), day))
        weight = weight - np.log(np.exp(weight).sum(1, keepdims=True))
        return weight[np.arange(at.sum()), shown].mean()

    # the distribution the items were drawn from explains them best: not another day's
    assert log_likelihood(4) > max(log_likelihood(d) for d in (1, 2, 3, 5, 6, 7))
    newcomers = rows.user_id[at][feed.user_arrival_day(rows.user_id[at]) == 4]
    by_popularity = feed.log_exposure(scenario, members, newcomers, np.full(newcomers.size, 4)) \
        - np.log(feed.item_popularity(members))[None]
    assert newcomers.size and np.ptp(by_popularity, axis=1).max() < 1e-9  # no feed for them
