"""Experiments as specs (`spec.Experiment`): each module declares one experiment's arms, pairs,
columns, options and report; `runner` runs any of them; `catalog.EXPERIMENTS` lists them."""
