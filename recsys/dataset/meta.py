"""A built dataset's meta.json: its schema, sizes, splits and how it was built. Light to
import, so a command refuses a missing or broken dataset before it imports torch or Feast."""

from __future__ import annotations

from pathlib import Path

from recsys.errors import DataError
from recsys.files import read_json
from recsys.provenance import dataset_fingerprint

DATASET_META = "meta.json"


def read_dataset_meta(dataset: Path) -> dict:
    path = dataset / DATASET_META
    if not path.is_file():
        raise DataError(f"{dataset}: no training set there (meta.json is missing): run "
                        f"`recsys build-dataset`, or pass its folder as dataset",
                        fields="dataset")
    return read_json(path, "build the dataset again with `recsys build-dataset --force`")


def dataset_provenance(dataset: Path) -> dict:
    """A dataset as results record it: its folder, the preset and data seed it was built from
    and its fingerprint."""
    meta = read_dataset_meta(dataset)
    return {"dataset": str(dataset), "preset": meta.get("preset"), "seed": meta.get("seed"),
            "fingerprint": dataset_fingerprint(dataset)}
