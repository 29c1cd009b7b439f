"""Feast definitions for recsys, derived from recsys/schema.py (the single source of truth).

Entities user / item / scenario; one feature view per schema.VIEWS entry over the Parquet parts
that `recsys generate` writes under data/offline/; one feature service per task.
"""

from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, Int32, Int64, String

from recsys.schema import ENTITIES, ENTITY_BY_NAME, EVENT_TIMESTAMP, FEATURE_SERVICES, \
    OFFLINE_DIR, VIEWS, view_features

# The DuckDB offline store opens source paths as given, so anchor them to this folder.
OFFLINE = Path(__file__).resolve().parent / OFFLINE_DIR
FEAST_TYPES = {"int64": Int64, "int32": Int32, "float32": Float32, "string": String,
               "list<float32>": Array(Float32)}

entities = {e.name: Entity(name=e.name, join_keys=[e.join_key], value_type=ValueType.INT64,
                           description=e.description)
            for e in ENTITIES}

feature_views = {
    v.name: FeatureView(
        name=v.name,
        entities=[entities[v.entity]],
        ttl=v.ttl,
        schema=[Field(name=f.name, dtype=FEAST_TYPES[f.dtype], description=f.description)
                for f in view_features(v.name)],
        source=FileSource(name=f"{v.name}_source", path=str(OFFLINE / v.name),
                          file_format=ParquetFormat(), timestamp_field=EVENT_TIMESTAMP),
        online=True,
        description=v.description,
        tags={"join_key": ENTITY_BY_NAME[v.entity].join_key},
    )
    for v in VIEWS
}

feature_services = {
    name: FeatureService(name=name, features=[feature_views[v] for v in views])
    for name, views in FEATURE_SERVICES.items()
}

# Feast discovers definitions as module-level objects.
globals().update({f"entity_{k}": v for k, v in entities.items()})
globals().update({f"view_{k}": v for k, v in feature_views.items()})
globals().update({f"service_{k}": v for k, v in feature_services.items()})
