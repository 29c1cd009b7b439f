"""The simulated online A/B test's pieces, in process: the world's requests and candidates, its
click probability against the generator's own, the clicks a ranking earns and the agreement of
two orders of the arms."""

from __future__ import annotations

import numpy as np

from recsys.data.presets import get_preset
from recsys.data.synth import World
from recsys.eval.gates import online_criteria
from recsys.experiments.online import _agreement, _shown_clicks
from recsys.experiments.traffic import Audience, Requests

HELD = 4  # the repo would hold the world's days before this one


def _audience(feed: bool = False) -> Audience:
    return Audience(World(get_preset("tiny", feed=feed), 0), HELD)


def test_requests_bring_distinct_candidates_of_their_scenario_that_the_repo_holds():
    audience = _audience(feed=True)
    world = audience.world
    requests = audience.requests(HELD, 300, 12, np.random.default_rng(0))
    assert len(requests) == 300 and requests.candidates.shape == (300, 12)
    assert (world.user_arrival_day(requests.user_id) < HELD).all()
    items = requests.candidates
    assert (world.item_launch_day(items.ravel()) < HELD).all()
    assert (world.item_scenario(items) == requests.scenario[:, None]).all()
    assert all(len(set(row)) == 12 for row in items.tolist())
    assert audience.days == world.preset.n_days - HELD


def test_the_click_probability_is_the_generators():
    """The chance of a shown candidate equals the p_true the generator gives the same user,
    item, scenario, context and day."""
    audience = _audience()
    rows = audience.world.impressions(HELD, 0, 500)
    requests = Requests(HELD, rows.user_id, rows.scenario, rows.deep, rows.item_id[:, None])
    p = audience.click_probability(requests)[:, 0]
    assert np.allclose(p, rows.p_true, atol=1e-6)


def test_a_ranking_earns_the_clicks_of_its_best_shown_candidates():
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.2, 0.2, 0.2, 0.1]])  # ties: the first
    assert _shown_clicks(scores, labels, 2).tolist() == [1.0, 0.0]
    assert _shown_clicks(scores, labels, 4).tolist() == [2.0, 1.0]


def test_agreement_counts_pairs_ordered_alike_and_ranks_each_arm():
    day = {"arms": {"a": {"auc": 0.7, "ctr": 0.4}, "b": {"auc": 0.6, "ctr": 0.5},
                    "c": {"auc": 0.5, "ctr": 0.1}}}
    agreed = _agreement([day], ["a", "b", "c"])
    assert agreed["pairs"] == 3 and agreed["pairs_agreeing"] == 2  # a-b disagree
    assert agreed["ranks"] == {"a": ["1/2"], "b": ["2/1"], "c": ["3/3"]}
    checks = online_criteria({"per_day": [day]}, {"at_least": [["a", "b"]],
                                                  "above": [["a", "c"]]})
    assert [c.passed for c in checks] == [False, True]
