"""Online ranking: a trained run scores candidates over HTTP with the features of the repo's
Feast online store (see app.py, scorer.py, features.py)."""
