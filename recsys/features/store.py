"""Feast glue: open the repo's FeatureStore and resolve a feature service, with errors that say
what to run."""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.errors import RepoError, UsageError
from recsys.schema import FEATURE_SERVICES


def open_store(repo: Path):
    from feast import FeatureStore  # heavy import: only where Feast is used

    logging.getLogger("feast").setLevel(logging.ERROR)
    return FeatureStore(repo_path=str(repo))


def feature_service(store, repo: Path, name: str):
    """The named feature service from the registry (`feast apply` puts it there)."""
    from feast.errors import FeastObjectNotFoundException

    if name not in FEATURE_SERVICES:
        raise UsageError(f"unknown feature service '{name}': choose one of "
                         f"{', '.join(FEATURE_SERVICES)} (--feature-service)")
    try:
        return store.get_feature_service(name)
    except FeastObjectNotFoundException:
        raise RepoError(f"feature service '{name}' is not registered in {repo}: "
                        f"run `cd {repo} && feast apply` first") from None
