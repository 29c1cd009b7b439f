"""The point-in-time join on Feast's Spark offline store (`build-dataset --engine spark`).

The repo's feature views and feature service are the ones `feast apply` registered; only the
engine changes: each view's Parquet source is read by Spark (a SparkSource over the same
path), and the session's master and settings come from the repo's `spark.yaml`, so the same
command runs in local mode here and on a cluster unchanged.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import pyarrow as pa
import yaml

from recsys.errors import RepoError, UsageError

CONFIG = "spark.yaml"


def spark_config(repo: Path):
    """The repo's Spark offline store settings (Feast's SparkOfflineStoreConfig)."""
    try:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark import \
            SparkOfflineStoreConfig
    except ImportError:
        raise UsageError("engine spark needs pyspark: `pip install -e '.[spark]'` (make test "
                         "installs it)", fields="engine") from None
    path = repo / CONFIG
    if not path.is_file():
        raise RepoError(f"{path} not found: engine spark reads the Spark session's settings "
                        f"from it (copy it from the project's feature_repo/)", fields="engine")
    try:
        block = (yaml.safe_load(path.read_text()) or {}).get("offline_store") or {}
        return SparkOfflineStoreConfig(**block)
    except (yaml.YAMLError, ValueError, TypeError) as e:
        first = str(e).splitlines()[0]
        raise RepoError(f"{path}: not a valid Spark offline store block ({first}); fix it "
                        f"or copy it from the project's feature_repo/") from None


def spark_joiner(repo: Path, store, projections: list):
    """entity rows (Arrow) -> the same rows with the features of the feature views'
    `projections` (of a feature service), joined by Spark."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStore
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import \
        SparkSource

    config = store.config.model_copy(update={"offline_config": spark_config(repo)})
    views, refs = [], []
    for projection in projections:
        view = copy.copy(store.get_feature_view(projection.name))
        source = view.batch_source
        view.batch_source = SparkSource(name=source.name, path=source.path,
                                        file_format="parquet",
                                        timestamp_field=source.timestamp_field)
        views.append(view)
        refs += [f"{projection.name}:{f.name}" for f in projection.features]
    logging.getLogger("py4j").setLevel(logging.ERROR)

    def join(entity: pa.Table) -> pa.Table:
        with warnings.catch_warnings():  # "experimental feature in alpha development"
            warnings.simplefilter("ignore", RuntimeWarning)
            job = SparkOfflineStore.get_historical_features(
                config=config, feature_views=views, feature_refs=refs,
                entity_df=entity.to_pandas(), registry=store.registry, project=store.project)
            return job.to_arrow()

    return join
