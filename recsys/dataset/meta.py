"""A built dataset's meta.json, read through one type (`DatasetMeta`): its schema, sizes,
splits and how it was built. Light to import, so a command refuses a missing or broken dataset
before it imports torch or Feast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recsys.errors import DataError
from recsys.files import read_json
from recsys.provenance import dataset_fingerprint
from recsys.schema import Schema

DATASET_META = "meta.json"
REBUILD = "build the dataset again with `recsys build-dataset --force`"


@dataclass(frozen=True)
class DatasetMeta:
    """What a model's inputs and a report need of a dataset (build_dataset writes the file)."""

    schema: Schema
    n_users: int
    n_items: int
    feature_service: str | None = None  # None: the schema's default
    vector_dims: dict[str, int] = field(default_factory=dict)  # vector feature -> its width
    preset: str | None = None
    seed: int | None = None
    repo: str | None = None  # the feature repo it was built from
    splits: dict[str, dict] = field(default_factory=dict)  # split -> {"rows", "parts"}
    window: dict | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the file as written

    @classmethod
    def read(cls, dataset: Path) -> "DatasetMeta":
        path = dataset / DATASET_META
        if not path.is_file():
            raise DataError(f"{dataset}: no training set there (meta.json is missing): run "
                            f"`recsys build-dataset`, or pass its folder as dataset",
                            fields="dataset")
        return cls.from_json(read_json(path, REBUILD), str(path))

    @classmethod
    def from_json(cls, data: dict, where: str = "the dataset's meta.json") -> "DatasetMeta":
        if "schema" not in data:
            raise DataError(f"{where}: written by an older recsys (no schema in it): {REBUILD}, "
                            f"and train its runs again")
        try:
            return cls(Schema.from_json(data["schema"]), int(data["n_users"]),
                       int(data["n_items"]), data.get("feature_service"),
                       dict(data.get("vector_dims") or {}), data.get("preset"), data.get("seed"),
                       data.get("repo"), dict(data.get("splits") or {}), data.get("window"),
                       data)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: unreadable ({type(e).__name__}: {e}): {REBUILD}") \
                from None

    def rows(self, split: str) -> int:
        return int(self.splits[split]["rows"])


def dataset_provenance(dataset: Path) -> dict:
    """A dataset as results record it: its folder, the preset and data seed it was built from
    and its fingerprint."""
    meta = DatasetMeta.read(dataset)
    return {"dataset": str(dataset), "preset": meta.preset, "seed": meta.seed,
            "fingerprint": dataset_fingerprint(dataset)}
