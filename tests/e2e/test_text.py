"""Text as features: the encoder is deterministic and cached, the vectors round-trip exactly
through Feast (offline join and online store), bad models fail clearly, and every model trains
with text (and image) vectors."""

from __future__ import annotations

from dataclasses import replace

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch
from feast import FeatureStore

from conftest import fails, fingerprint, run
from recsys.dataset.layout import Layout
from recsys.dataset.loader import load_split, rows_batch
from recsys.dataset.meta import DatasetMeta
from recsys.errors import DataError
from recsys.models.registry import MODELS, build_model
from recsys.dataset.episodes import EpisodeSampler
from recsys.models.base import SparseArch
from recsys.text.cache import TextCache, text_keys
from recsys.text.encode import ENCODING, default_model, encode_missing, load_encoder


def vectors_of(offline, view: str) -> dict:
    table = pads.dataset(str(offline / view)).to_table()
    return {name: table[name].to_pylist() for name in table.column_names}


def test_second_run_encodes_nothing_and_writes_the_same_vectors(tiny):
    first = json.loads((tiny["offline"] / ENCODING).read_text())
    assert first["encoded"] == first["distinct"] > 1000 and first["cached"] == 0
    assert first["dim"] == 32 and 0 < first["explained_variance"] < 1
    before = {v: vectors_of(tiny["offline"], v) for v in ("user_text_vec", "item_text_vec")}
    fails("encode-text", "--repo", str(tiny["repo"]), says="pass --force")
    out = run("recsys", "encode-text", "--repo", str(tiny["repo"]), "--force", "--model",
              str(tiny["encoder"])).stdout
    again = json.loads((tiny["offline"] / ENCODING).read_text())
    assert again["encoded"] == 0 and again["cached"] == first["distinct"], out
    assert "encoded 0 new texts" in out
    after = {v: vectors_of(tiny["offline"], v) for v in ("user_text_vec", "item_text_vec")}
    assert after == before


def test_encoding_is_deterministic_from_an_empty_cache(tmp_path):
    texts = [f"{w} and {v}" for w in ("coffee", "flight", "loan", "guitar", "sofa")
             for v in ("tea", "hotel", "fund", "piano", "lamp", "drone")]
    keys = text_keys(texts)
    encoder = load_encoder(default_model(), "cpu")
    runs = []
    for name in ("a", "b"):
        cache = TextCache(tmp_path / name, 384)
        encode_missing(encoder, texts, keys, cache, batch_size=7)
        runs.append(TextCache(tmp_path / name, 384).get(keys))  # read back from disk
    assert runs[0].shape == (30, 384)
    np.testing.assert_array_equal(runs[0], runs[1])
    # related texts are closer than unrelated ones: the vectors carry meaning
    sim = runs[0] @ runs[0].T
    assert sim[texts.index("coffee and tea"), texts.index("coffee and hotel")] > \
        sim[texts.index("coffee and tea"), texts.index("loan and drone")]


def test_vectors_served_by_the_offline_join_equal_the_store(tiny):
    """Feast's point-in-time join hands back the exact float32 values of the snapshot."""
    item_vec = pads.dataset(str(tiny["offline"] / "item_text_vec")).to_table().to_pandas()
    item_vec = item_vec.set_index("item_id")  # one snapshot per item
    image = pads.dataset(str(tiny["offline"] / "item_image")).to_table().to_pandas() \
        .set_index("item_id")
    test = pads.dataset(str(tiny["dataset"] / "test")).to_table(
        columns=["item_id", "item_title_vec", "item_image_vec"]).slice(0, 300).to_pylist()
    for row in test:
        served = np.array(row["item_title_vec"], dtype=np.float32)
        np.testing.assert_array_equal(served, item_vec.loc[row["item_id"], "item_title_vec"])
        np.testing.assert_array_equal(np.array(row["item_image_vec"], dtype=np.float32),
                                      image.loc[row["item_id"], "item_image_vec"])
    assert DatasetMeta.read(tiny["dataset"]).vector_dims["query_entity_seq_vec"] == 32


def test_vectors_served_online_equal_the_store(tiny):
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    run("feast", "materialize-incremental", now, cwd=tiny["repo"])
    table = pads.dataset(str(tiny["offline"] / "user_text_vec")).to_table().to_pandas()
    latest = table.sort_values("event_timestamp").groupby("user_id").last().head(25)
    store = FeatureStore(repo_path=str(tiny["repo"]))
    online = store.get_online_features(
        features=["user_text_vec:query_entity_seq_vec", "user_text_vec:bill_entity_seq_vec"],
        entity_rows=[{"user_id": int(u)} for u in latest.index]).to_dict()
    for i, (_, row) in enumerate(latest.iterrows()):
        for name in ("query_entity_seq_vec", "bill_entity_seq_vec"):
            np.testing.assert_array_equal(np.array(online[name][i], dtype=np.float32), row[name])


def test_missing_model_folder_fails_clearly(tiny, tmp_path):
    before = fingerprint(tiny["offline"])
    fails("encode-text", "--repo", str(tiny["repo"]), "--force", "--model",
          str(tmp_path / "nowhere"), says="no such folder")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    fails("encode-text", "--repo", str(tiny["repo"]), "--force", "--model",
          str(tmp_path / "notes"), says="not a sentence-transformers folder")
    (tmp_path / "half").mkdir()  # a config that names no weights: loading would need the hub
    (tmp_path / "half" / "config.json").write_text('{"model_type": "bert"}')
    fails("encode-text", "--repo", str(tiny["repo"]), "--force", "--model",
          str(tmp_path / "half"), says="cannot load it offline")
    assert fingerprint(tiny["offline"]) == before  # --force, yet nothing was replaced


def test_text_asked_of_a_dataset_without_vectors_fails_clearly(tiny):
    meta = replace(DatasetMeta.read(tiny["dataset"]), vector_dims={})
    with pytest.raises(DataError, match="recsys encode-text"):
        Layout.from_meta(meta, ("text",))


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_every_model_trains_with_text_and_image(tiny, fusion):
    layout = Layout.from_meta(DatasetMeta.read(tiny["dataset"]), ("text", "image"))
    assert [g.width for g in layout.vectors] == [96, 64, 32]
    train = load_split(tiny["dataset"], "train", layout)
    assert train.vectors.shape == (len(train), 192) and np.abs(train.vectors).sum() > 0
    batch = rows_batch(train, layout, np.arange(256))
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name, layout, MODELS[name].Config(fusion=fusion))
        can = model.capabilities
        episode = EpisodeSampler(train, layout, can.episodes, 8, 0).next() \
            if can.episodes else None
        model.train()
        loss = model.loss(batch, episode)
        loss.backward()
        # the vectors reach the loss (dnn: through each scenario's own network)
        grads = [p.grad for m in model.modules() if isinstance(m, SparseArch)
                 for p in m.projections.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
        model.eval()
        with torch.no_grad():
            assert model(batch).shape == (256,)


def test_train_cli_with_text_and_the_multi_modal_experiment(tiny, tmp_path):
    out = tmp_path / "exp"
    run("recsys", "experiment", "multi-modal", "--dataset", str(tiny["dataset"]), "--seeds",
        "1", "--epochs", "1", "--out", str(out))
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"dnn_mixed", "dnn_mixed+text", "mmoe", "mmoe+text"}
    assert set(results["gains"]) == {"dnn_mixed+text − dnn_mixed", "mmoe+text − mmoe"}
    assert "zero_shot_item" in results["columns"]
    gain = results["gains"]["mmoe+text − mmoe"]["auc"]["overall"]["mean"]
    assert gain == pytest.approx(results["models"]["mmoe+text"]["auc"]["overall"]["mean"]
                                 - results["models"]["mmoe"]["auc"]["overall"]["mean"])
    metrics = json.loads((out / "runs" / "mmoe+text-seed0" / "metrics.json").read_text())
    assert metrics["modalities"] == ["text"]
    assert (out / "multi_modal.png").stat().st_size > 10_000 and (out / "report.md").exists()
    fails("train", "--model", "dnn_mixed", "--dataset", str(tiny["dataset"]), "--text",
          "--fusion", "sum", "--out", str(tmp_path / "bad"), says="--fusion sum")
