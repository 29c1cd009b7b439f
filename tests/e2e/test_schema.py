"""A repo's schema.yaml: the built-in AntM2C schema round-trips, `generate` writes it, an edit of
it plus `feast apply` changes what Feast registers, and a bad file is one clear error."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from feast import FeatureStore

from conftest import ROOT, copy_repo, run
from recsys.dataset.layout import Layout
from recsys.dataset.meta import DatasetMeta
from recsys.errors import DataError
from recsys.schema import SCHEMA_FILE, Schema
from recsys.antm2c import ANTM2C


def test_committed_schema_is_the_builtin_one(tmp_path):
    committed = ROOT / "feature_repo" / SCHEMA_FILE
    assert Schema.load(committed) == ANTM2C
    ANTM2C.save(tmp_path / SCHEMA_FILE)  # byte for byte: what `generate` writes
    assert (tmp_path / SCHEMA_FILE).read_text() == committed.read_text()


def test_generate_writes_the_schema(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / SCHEMA_FILE).unlink()
    run("recsys", "generate", "--preset", "tiny", "--repo", str(repo), "--workers", "1")
    assert Schema.load(repo / SCHEMA_FILE) == ANTM2C
    summary = json.loads((repo / "data" / "offline" / "meta.json").read_text())["summary"]
    assert [s["name"] for s in summary["scenarios"].values()] == list(ANTM2C.scenario_names)


def test_an_edited_schema_is_what_feast_registers(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    data = yaml.safe_load((repo / SCHEMA_FILE).read_text())
    data["features"] = [f for f in data["features"] if f["name"] != "item_price_level"]
    data["services"]["profiles"] = ["user_profile", "item_profile"]
    (repo / SCHEMA_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    run("feast", "apply", cwd=repo)
    store = FeatureStore(repo_path=str(repo))
    fields = {f.name for f in store.get_feature_view("item_profile").features}
    assert fields == {"item_category", "item_brand"}
    service = store.get_feature_service("profiles")
    assert [p.name for p in service.feature_view_projections] == ["user_profile",
                                                                  "item_profile"]


def _edit(tmp_path, change) -> str:
    """The one-line error of loading the built-in schema after `change(data)`."""
    data = yaml.safe_load((ROOT / "feature_repo" / SCHEMA_FILE).read_text())
    change(data)
    path = tmp_path / SCHEMA_FILE
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(DataError) as error:
        Schema.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def _feature(data: dict, name: str) -> dict:
    return next(f for f in data["features"] if f["name"] == name)


@pytest.mark.parametrize("change, says", [
    (lambda d: _feature(d, "user_gender").update(kind="colour"),
     f"features[{[f.name for f in ANTM2C.features].index('user_gender')}] (user_gender).kind: "
     "Input should be"),
    (lambda d: _feature(d, "user_gender").update(dtype="int16"),
     "(user_gender).dtype: Input should be"),
    (lambda d: _feature(d, "user_gender").update(cardinality="three"),
     "(user_gender).cardinality: Input should be a valid integer"),
    (lambda d: _feature(d, "user_gender").update(colour="red"),
     "(user_gender).colour: not a known key"),
    (lambda d: _feature(d, "user_gender").update(cardinality=None),
     "feature 'user_gender': a categorical feature needs a cardinality"),
    (lambda d: _feature(d, "user_gender").update(view="user_profiles"),
     "feature 'user_gender': view 'user_profiles' is not declared"),
    (lambda d: d["views"][0].update(entity="customer"),
     "view 'user_profile': entity 'customer' is not declared"),
    (lambda d: d["features"].append(dict(_feature(d, "user_gender"))),
     "feature 'user_gender' is declared twice"),
    (lambda d: d["services"].update(extra=["nope"]), "service 'extra': view 'nope'"),
    (lambda d: d.update(default_service="ranking"),
     "default_service 'ranking' is not a declared service"),
    (lambda d: d.pop("scenarios"), "scenarios: missing (it is required)"),
])
def test_a_bad_schema_is_one_clear_line(tmp_path, change, says):
    assert says in _edit(tmp_path, change)


def test_a_missing_or_broken_schema_file(tmp_path):
    with pytest.raises(DataError, match="no schema file"):
        Schema.load(tmp_path / SCHEMA_FILE)
    (tmp_path / SCHEMA_FILE).write_text("features: [\n")
    with pytest.raises(DataError, match="is not valid YAML"):
        Schema.load(tmp_path / SCHEMA_FILE)
    (tmp_path / SCHEMA_FILE).write_text("- just\n- a list\n")
    with pytest.raises(DataError, match="schema.yaml: the file: Input should be"):
        Schema.load(tmp_path / SCHEMA_FILE)


def test_build_and_train_follow_the_edited_schema(tmp_path):
    """A feature dropped from the repo's schema and another default service: the training set,
    its layout and a training run go by the edit, not by the built-in schema."""
    repo = copy_repo(tmp_path / "repo")
    run("recsys", "generate", "--preset", "tiny", "--repo", str(repo), "--workers", "1")
    data = yaml.safe_load((repo / SCHEMA_FILE).read_text())
    data["features"] = [f for f in data["features"] if f["name"] != "item_price_level"]
    data["default_service"] = "multi_scenario"
    (repo / SCHEMA_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    run("feast", "apply", cwd=repo)
    dataset = tmp_path / "ds"
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(dataset))
    meta = DatasetMeta.read(dataset)
    assert meta.feature_service == "multi_scenario"
    columns = pq.read_schema(next((dataset / "train").glob("*.parquet"))).names
    assert "item_price_level" not in columns and "item_brand" in columns
    assert "item_title" not in columns  # the text views are not in multi_scenario
    layout = Layout.from_meta(meta)
    assert "item_price_level" not in layout.sparse and "item_brand" in layout.sparse
    assert set(layout.sparse + layout.dense) <= set(columns)
    run("recsys", "train", "--model", "mmoe", "--dataset", str(dataset), "--epochs", "1",
        "--out", str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["overall"]["auc"] > 0.5
    # a broken schema file stops the build in one line, before anything is written
    data["features"][0]["kind"] = "colour"
    (repo / SCHEMA_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run("recsys", "build-dataset", "--repo", str(repo), "--out", str(tmp_path / "ds2"),
               check=False)
    assert proc.returncode == 2 and not (tmp_path / "ds2").exists()
    assert proc.stderr.strip().count("\n") == 0 and "features[0] (user_id).kind" in proc.stderr
