"""The synthetic generator: deterministic per seed, distributions as specified, p_true honest."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import copy_repo, run
from recsys.data import vocab
from recsys.data.generate import chunk_plan, generate
from recsys.data.presets import PRESETS, get_preset
from recsys.data.offline import connect, table_files
from recsys.data.synth import FAVOURITE_INTEREST_SHARE, FEED_SHARE, INTEREST_DAYS, \
    SCENARIO_SHARES, TARGET_POSITIVE_RATE, World
from recsys.metrics import auc
from recsys.schema import SCENARIOS, TABLES

TINY = PRESETS["tiny"]


def _tables(offline):
    return {t: pq.ParquetDataset([str(f) for f in table_files(offline, t)],
                                 partitioning=None).read()
            for t in TABLES}


@pytest.fixture(scope="module")
def tiny_offline(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("gen") / "repo")
    meta = generate(repo, TINY, seed=3, workers=1, progress=False)
    return repo / "data" / "offline", meta


def test_same_seed_same_data_whatever_the_worker_count(tiny_offline, tmp_path):
    offline, _ = tiny_offline
    repo = copy_repo(tmp_path / "again")
    generate(repo, TINY, seed=3, workers=2, progress=False)
    first, second = _tables(offline), _tables(repo / "data" / "offline")
    for name in TABLES:
        assert first[name].equals(second[name]), name


def test_another_seed_other_data(tiny_offline, tmp_path):
    offline, _ = tiny_offline
    repo = copy_repo(tmp_path / "other")
    generate(repo, TINY, seed=4, workers=1, progress=False)
    a = _tables(offline)["interactions"]
    b = _tables(repo / "data" / "offline")["interactions"]
    assert not a["user_id"].equals(b["user_id"])
    assert not a["label"].equals(b["label"])


def test_tables_match_the_schema(tiny_offline):
    offline, _ = tiny_offline
    for name, table in _tables(offline).items():
        assert table.schema.equals(TABLES[name]), name
        # the text vectors are empty until `recsys encode-text` fills them, the item vectors
        # of a retrieval run until `recsys index` does
        assert (table.num_rows == 0) == (name in ("user_text_vec", "item_text_vec",
                                                  "item_retrieval")), name


def test_scenario_shares_and_positive_rate(tiny_offline):
    offline, meta = tiny_offline
    con = connect(offline, meta["start_epoch"])
    rows = dict(con.execute("SELECT scenario, count(*) FROM interactions GROUP BY 1").fetchall())
    rates = dict(con.execute("SELECT scenario, avg(label) FROM interactions GROUP BY 1")
                 .fetchall())
    total = sum(rows.values())
    assert total == TINY.n_rows
    for s in SCENARIOS:
        # tolerance: about 4 binomial standard deviations at the tiny preset
        assert abs(rows[s.code] / total - SCENARIO_SHARES[s.code]) < 0.015, s
        assert abs(rates[s.code] - TARGET_POSITIVE_RATE) < 0.05, s


def test_new_users_and_items_get_their_traffic_share(tiny_offline):
    """On each day after the first, `new_*_traffic` of impressions go to that day's arrivals:
    the zero-shot traffic of the test day."""
    offline, meta = tiny_offline
    world = World(TINY, meta["seed"])
    con = connect(offline, meta["start_epoch"])
    cols = con.execute("SELECT day_index, user_id, item_id FROM interactions").fetchnumpy()
    for day in range(1, TINY.n_days):
        on_day = cols["day_index"] == day
        new_users = world.user_arrival_day(cols["user_id"][on_day]) == day
        new_items = world.item_launch_day(cols["item_id"][on_day]) == day
        assert abs(new_users.mean() - TINY.new_user_traffic) < 0.02, day
        assert abs(new_items.mean() - TINY.new_item_traffic) < 0.02, day
        # nobody is seen before arriving
        assert (world.user_arrival_day(cols["user_id"][on_day]) <= day).all()
        assert (world.item_launch_day(cols["item_id"][on_day]) <= day).all()


def test_cold_start_subsets_are_populated(tiny_offline):
    _, meta = tiny_offline
    test = meta["summary"]["cold_start"]["test"]
    # at least the test day's own arrivals are zero-shot, minus sampling noise
    assert test["zero_shot_user"]["rows"] / test["rows"] >= TINY.new_user_traffic - 0.02
    assert test["zero_shot_item"]["rows"] / test["rows"] >= TINY.new_item_traffic - 0.02
    assert test["few_shot_user"]["rows"] > 0.05 * test["rows"]
    assert test["few_shot_item"]["rows"] > 0


def test_p_true_is_the_click_probability(tiny_offline):
    """Bayes AUC clearly between chance and perfection, and p_true calibrated per decile."""
    offline, meta = tiny_offline
    con = connect(offline, meta["start_epoch"])
    cols = con.execute("SELECT label, p_true FROM interactions").fetchnumpy()
    bayes = auc(cols["label"], cols["p_true"])
    assert 0.65 < bayes < 0.95
    assert meta["summary"]["bayes_auc"] == pytest.approx(bayes)
    edges = np.quantile(cols["p_true"], np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, cols["p_true"], side="right") - 1, 0, 9)
    for b in range(10):
        sel = bins == b
        assert abs(cols["label"][sel].mean() - cols["p_true"][sel].mean()) < 0.05, b


def test_text_follows_the_topics(tiny_offline):
    """Item titles use words of the item's category (its topic): text carries signal."""
    offline, meta = tiny_offline
    con = connect(offline, meta["start_epoch"])
    rows = con.execute("""SELECT p.item_category, t.item_title, t.item_entity_names
                          FROM item_profile p JOIN item_text t USING (item_id)""").fetchall()
    for category, title, names in rows:
        topic = set(vocab.TOPIC_WORDS[category])
        assert len(topic & set(title.split())) == 2, title
        assert set(names.split(", ")) <= topic and len(set(names.split(", "))) == 3, names


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


def test_chunk_slices_fanned_out_then_assembled_equal_one_run(tiny_offline, tmp_path):
    """`generate --chunks` in overlapping slices (a rerun skips what is there), then a plain
    `generate` assembles: the same store as one run, and the staging folder is gone."""
    offline, _ = tiny_offline
    repo = copy_repo(tmp_path / "fanned")
    common = ["--preset", "tiny", "--seed", "3", "--repo", str(repo)]
    run("recsys", "generate", *common, "--chunks", "0:7", "--workers", "2")
    again = run("recsys", "generate", *common, "--chunks", "5:12", "--workers", "1")
    assert "wrote 5 of 7" in again.stdout
    assert len(list((repo / "data" / "staging").rglob("*.parquet"))) == len(chunk_plan(TINY))
    run("recsys", "generate", *common)
    assert not (repo / "data" / "staging").exists()
    first, second = _tables(offline), _tables(repo / "data" / "offline")
    for name in TABLES:
        assert first[name].equals(second[name]), name


@pytest.mark.parametrize("chunks, says", [("4", "write it as FIRST:END"),
                                          ("3:13", "is cut into 12"), ("5:5", "FIRST < END")])
def test_bad_chunk_slice(tmp_path, chunks, says):
    repo = copy_repo(tmp_path / "repo")
    proc = run("recsys", "generate", "--preset", "tiny", "--repo", str(repo), "--chunks", chunks,
               check=False)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert not (repo / "data").exists()


def test_user_weights_summed_in_chunks_equal_one_cumsum():
    """The generator sums user activity a chunk of ids at a time (bounded memory at `full`);
    the sums are bit for bit those of one cumsum over every id."""
    from recsys.data.synth import ENTITY_CHUNK, _cumulative

    world, n = World(TINY, 0), 2 * ENTITY_CHUNK + 12_345
    whole = np.cumsum(world.user_activity(np.arange(n, dtype=np.int64)))
    assert np.array_equal(_cumulative(world.user_activity, n), whole)


def test_a_longer_world_has_its_days(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    meta = generate(repo, get_preset("tiny", rows=8_000, days=8), seed=3, workers=2,
                    progress=False)
    con = connect(repo / "data" / "offline", meta["start_epoch"])
    days = con.execute("SELECT count(DISTINCT event_timestamp::DATE), count(*) FROM "
                       "interactions").fetchone()
    assert meta["n_days"] == 8 and days == (8, 8_000)


def test_a_world_grown_day_by_day_is_the_whole_world(tiny_offline, tmp_path):
    """`--until 4`, then `--append --until 6`: the same store as the six days at once (the
    users and items of the first four days only, before the append); another world or a day
    the repo holds is one line that writes nothing."""
    offline, meta = tiny_offline
    repo = copy_repo(tmp_path / "grown")
    common = ["--preset", "tiny", "--seed", "3", "--repo", str(repo), "--workers", "2"]
    run("recsys", "generate", *common, "--until", "4")
    early = _tables(repo / "data" / "offline")
    world = World(TINY, 3)
    assert max(world.user_arrival_day(early["user_profile"]["user_id"].to_numpy())) < 4
    days = early["interactions"]["event_timestamp"].cast("int64").to_numpy() // 86_400_000_000
    assert len(early["user_profile"]) < TINY.n_users and len(set(days)) == 4
    for args, says in ((["--until", "4", "--append"], "holds days 0..3 already"),
                       (["--until", "6", "--append", "--seed", "4"], "seed 3 (not 4)"),
                       (["--until", "6", "--append", "--feed"], "feed False (not True)")):
        proc = run("recsys", "generate", *common, *args, check=False)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    run("recsys", "generate", *common, "--until", "6", "--append")
    first, grown = _tables(offline), _tables(repo / "data" / "offline")
    for name in TABLES:
        assert first[name].equals(grown[name]), name


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
    at = rows.scenario == scenario
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
