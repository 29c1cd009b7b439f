"""Text features:
- encoder throughput (texts/s) on a fixed sample of the store's distinct texts, empty cache;
- a whole `encode-text` run (on a world of a tenth of the preset's users, items and rows):
  texts/s and the share of text values that de-duplication saved (against the snapshots, and
  against encoding every impression's texts);
- training examples/s of dnn_mixed and mmoe with and without text vectors, on the same batches
  in the same run."""

from __future__ import annotations

import itertools

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from conftest import RESULTS, generated_repo, tenth
from bench_training import BATCH, ROUNDS, STEPS, _batches, _train_steps
from recsys.data.offline import offline_dir, read_repo_meta
from recsys.dataset.layout import Layout
from recsys.dataset.loader import load_split
from recsys.dataset.meta import DatasetMeta
from recsys.models.registry import build_model
from recsys.antm2c import TEXT_FIELDS
from recsys.text.cache import TextCache, text_keys
from recsys.text.encode import default_model, encode_missing, encode_text, load_encoder

SAMPLE = 2000


@pytest.fixture(scope="module")
def text_dataset(tmp_path_factory):
    """A world of a tenth of the preset's users, items and rows (encoding the whole preset's
    texts takes minutes here), its texts encoded by a whole `encode-text` run, built."""
    from recsys.dataset.build import build_dataset

    repo = generated_repo(tmp_path_factory.mktemp("text") / "feature_repo",
                          tenth(users_and_items=True))
    stats = encode_text(repo, progress=False, log=lambda *a: None)
    RESULTS["encode-text run texts/s (a tenth of the users, items and rows)"] = \
        stats["texts_per_s"]
    RESULTS["encode-text distinct / snapshot text values"] = 1 - stats["saved_by_dedup"]
    RESULTS["encode-text distinct / impression text values"] = \
        stats["distinct"] / (read_repo_meta(repo).n_rows * len(TEXT_FIELDS))
    out = tmp_path_factory.mktemp("text") / "ds"
    build_dataset(repo, out, progress=False)
    return out


def test_encoder_texts_per_second(benchmark, applied_repo, tmp_path):
    table = pads.dataset(str(offline_dir(applied_repo) / "item_text")).to_table()
    texts = pc.unique(table["item_title"]).to_pylist()[:SAMPLE]
    keys = text_keys(texts)
    encoder = load_encoder(default_model(), "cpu")
    rounds = itertools.count()
    benchmark.group = "text encoder"
    benchmark.pedantic(lambda: encode_missing(encoder, texts, keys,
                                              TextCache(tmp_path / str(next(rounds)), 384),
                                              batch_size=256),
                       rounds=2, iterations=1)
    RESULTS["encoder texts/s"] = len(texts) / benchmark.stats.stats.mean


@pytest.mark.parametrize("model", ["dnn_mixed", "mmoe"])
@pytest.mark.parametrize("modalities", [(), ("text",)], ids=["ids", "text"])
def test_training_with_and_without_text(benchmark, text_dataset, model, modalities):
    layout = Layout.from_meta(DatasetMeta.read(text_dataset), modalities)
    data = load_split(text_dataset, "train", layout)
    batches = _batches(layout, data)
    net = build_model(model, layout)
    benchmark.group = f"{model} with / without text"
    benchmark.pedantic(lambda: _train_steps(net, batches), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    name = "+".join((model, *modalities))
    RESULTS[f"{name} examples/s (text bench)"] = STEPS * BATCH / benchmark.stats.stats.mean
