"""Feast definitions for recsys, read from this repo's schema.yaml (the single source of truth,
written by `recsys generate` and `recsys import`; edit it, then `feast apply`).

One entity per schema entity; one feature view per schema view over the Parquet parts under
data/offline/; one feature service per task.
"""

from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, Int32, Int64, String

from recsys.schema import EVENT_TIMESTAMP, OFFLINE_DIR, SCHEMA_FILE, Schema

HERE = Path(__file__).resolve().parent
SCHEMA = Schema.load(HERE / SCHEMA_FILE)
# The DuckDB offline store opens source paths as given, so anchor them to this folder.
OFFLINE = HERE / OFFLINE_DIR
FEAST_TYPES = {"int64": Int64, "int32": Int32, "float32": Float32, "string": String,
               "list<int64>": Array(Int64), "list<float32>": Array(Float32)}

entities = {e.name: Entity(name=e.name, join_keys=[e.join_key], value_type=ValueType.INT64,
                           description=e.description)
            for e in SCHEMA.entities}

feature_views = {
    v.name: FeatureView(
        name=v.name,
        entities=[entities[v.entity]],
        ttl=v.ttl,
        schema=[Field(name=f.name, dtype=FEAST_TYPES[f.dtype], description=f.description)
                for f in SCHEMA.view_features(v.name)],
        source=FileSource(name=f"{v.name}_source", path=str(OFFLINE / v.name),
                          file_format=ParquetFormat(), timestamp_field=EVENT_TIMESTAMP),
        online=True,
        description=v.description,
        tags={"join_key": SCHEMA.join_key(v.name)},
    )
    for v in SCHEMA.views
}

feature_services = {
    name: FeatureService(name=name, features=[feature_views[v] for v in views])
    for name, views in SCHEMA.services.items()
}

# Feast discovers definitions as module-level objects.
globals().update({f"entity_{k}": v for k, v in entities.items()})
globals().update({f"view_{k}": v for k, v in feature_views.items()})
globals().update({f"service_{k}": v for k, v in feature_services.items()})
