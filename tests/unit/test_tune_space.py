"""recsys tune's first trial is the defaults, held to its search space."""

from recsys.train.tune import SPACE, default_params, trial_config


def test_the_defaults_are_a_trial_of_the_space():
    params = default_params({"model": "mmoe"})
    assert set(params) == set(SPACE)
    for key, (kind, *args) in SPACE.items():
        if kind == "choice":
            assert params[key] in args[0]
        else:
            assert args[0] <= params[key] <= args[1]
    cfg = trial_config({"model": "mmoe"}, params)  # the trial's config is a valid run config
    assert cfg.batch_size == params["batch_size"]
    assert cfg.model_config.embedding_lr == params["embedding_lr"]
    assert params["weight_decay"] == SPACE["weight_decay"][1]  # 0 held to the low end
