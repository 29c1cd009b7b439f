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
from recsys.data.synth import SCENARIO_SHARES, TARGET_POSITIVE_RATE, World
from recsys.metrics import auc
from recsys.antm2c import SCENARIOS, TABLES

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


