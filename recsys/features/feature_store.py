"""Feast glue: open the repo's FeatureStore and resolve a feature service, with errors that say
what to run."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from recsys.errors import RepoError, UsageError
from recsys.features.feast_cli import command as feast_command
from recsys.schema import SCHEMA_FILE, Schema
from recsys.files import read_yaml


def open_store(repo: Path):
    """The repo's FeatureStore, once `feast apply` has written its registry (opening a store
    without one would create an empty registry: a refused command must leave the repo as it
    was)."""
    from feast import FeatureStore  # heavy import: only where Feast is used

    registry = state_paths(repo)[0]
    if registry is not None and not registry.is_file():
        raise RepoError(f"{repo} has no Feast registry ({registry}): run `cd {repo} && feast "
                        f"apply` first")
    logging.getLogger("feast").setLevel(logging.ERROR)
    return FeatureStore(repo_path=str(repo))


def state_paths(repo: Path) -> tuple[Path | None, Path | None]:
    """The repo's file registry and SQLite online store, where the config names files."""
    config = read_yaml(repo / "feature_store.yaml", "fix or restore it") or {}
    registry = config.get("registry", "data/registry.db")
    if isinstance(registry, dict):
        registry = registry.get("path") if registry.get("registry_type", "file") == "file" \
            else None
    online = config.get("online_store") or {}
    paths = [registry, online.get("path") if online.get("type", "sqlite") == "sqlite" else None]
    return tuple(None if p is None or "://" in str(p) else
                 (Path(p) if Path(p).is_absolute() else repo / p) for p in paths)


def copy_applied(src: Path, dest: Path, ignore: tuple[str, ...] = (),
                 configure: Callable[[Path], None] | None = None) -> Path:
    """A copy of a feature repo with its data and online store (but the folders named in
    `ignore`), `feast apply`-ed with a registry of its own, after `configure(dest)` where given
    (another online store, say): Feast's registry names the online tables by absolute path, so
    a copied registry would point the copy's applies at the original's tables."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*ignore))
    registry = state_paths(dest)[0]
    if registry is not None:
        registry.unlink(missing_ok=True)
    if configure is not None:
        configure(dest)
    done = subprocess.run(feast_command("apply"), cwd=dest, capture_output=True, text=True)
    if done.returncode != 0:
        raise RepoError(f"{dest}: feast apply failed: {done.stderr.strip().splitlines()[-1]}")
    return dest


@contextmanager
def feast_duckdb(memory_bytes: int, spill: Path):
    """Feast's DuckDB offline store (ibis' default backend) on a fresh connection under a
    memory budget, spilling to `spill` beyond it, closed on exit. ibis keeps every entity frame
    it is given registered until its connection closes, so one connection per join keeps the
    process flat over any number of joins."""
    import ibis

    from recsys.memory import duckdb_limit

    backend = ibis.duckdb.connect(memory_limit=duckdb_limit(memory_bytes),
                                  temp_directory=str(spill))
    backend.raw_sql("SET enable_progress_bar = false")  # the build shows its own progress
    before = ibis.options.default_backend
    ibis.set_backend(backend)
    try:
        yield backend
    finally:
        ibis.options.default_backend = before
        backend.disconnect()


def feature_service(store, repo: Path, name: str, schema: Schema):
    """The named feature service of the repo's schema, from the registry (`feast apply` puts
    it there)."""
    from feast.errors import FeastObjectNotFoundException

    if name not in schema.services:
        raise UsageError(f"unknown feature service '{name}': choose one of "
                         f"{', '.join(schema.services)} (feature_service)",
                         fields="feature_service")
    try:
        return store.get_feature_service(name)
    except FeastObjectNotFoundException:
        raise RepoError(f"feature service '{name}' is not registered in {repo}: "
                        f"run `cd {repo} && feast apply` first") from None


MATERIALIZED = "data/materialized.json"  # the log's days as `recsys materialize` last saw them


def reset_state(repo: Path) -> list[Path]:
    """Remove the repo's file registry, SQLite online store and what `recsys materialize`
    remembers (they describe offline data that was just replaced); return what was removed.
    `feast apply` and materialize rebuild them."""
    removed = []
    for path in [*filter(None, state_paths(repo)), repo / MATERIALIZED]:
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


DEFINITIONS = ("feature_store.yaml", "features.py", "spark.yaml", SCHEMA_FILE)


def copy_definitions(repo: Path, dest: Path) -> Path:
    """A new feature repo at `dest` with `repo`'s definitions and none of its data or state:
    a sandbox for tests, benchmarks and experiments."""
    import shutil

    dest.mkdir(parents=True)
    for name in DEFINITIONS:
        shutil.copy(repo / name, dest / name)
    return dest
