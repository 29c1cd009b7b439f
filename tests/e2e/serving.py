"""Real servers for the tests and benchmarks (so nothing here imports either's conftest):
`recsys serve` and `redis-server` as subprocesses on free loopback ports, stopped when the
block ends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pyarrow as pa

from recsys.features import feature_store
from recsys.features.feast_cli import command as feast_command
from recsys.serve.settings import free_port

BIN = Path(sys.executable).parent


@contextmanager
def recsys_server(run: Path | None, repo: Path, *args: str, timeout: float = 180):
    """`recsys serve` on a free port (of `run`, or as `args` say: --watch DIR); yields an httpx
    client bound to it, whose `log` is the server's output file."""
    port = free_port()
    log = (run or repo).parent / f"serve-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "recsys"), "serve", *(("--run", str(run)) if run
                                                                  else ()),
                                 "--repo", str(repo), "--port", str(port), *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"recsys serve exited: {log.read_text()}")
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"no /health: {log.read_text()}"
                time.sleep(0.2)
            client.log, client.proc = log, proc  # proc: its own process group (os.killpg)
            yield client
    finally:
        proc.terminate()  # a supervisor of --workers N stops its workers first
        proc.wait(timeout=60)


def redis_available() -> str | None:
    """Why no redis-server can run here, or None when one can."""
    return None if shutil.which("redis-server") else \
        "redis-server is not installed (Debian package redis-server; `make test` installs it)"


@contextmanager
def redis_server(folder: Path):
    """A throwaway redis-server on a free loopback port (no persistence); yields its port."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no redis-server"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def copy_applied(src: Path, dest: Path, redis_port: int | None = None) -> Path:
    """The library's copy_applied: a copy of a feature repo with a registry of its own, applied
    (on a Redis online store when a port is given)."""
    return feature_store.copy_applied(
        src, dest, configure=None if redis_port is None else lambda d: use_redis(d, redis_port))


def use_redis(repo: Path, port: int) -> None:
    """Point a repo's feature_store.yaml at a Redis online store."""
    import yaml

    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["online_store"] = {"type": "redis", "connection_string": f"127.0.0.1:{port}"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def materialize(repo, end: datetime | None = None, everything: bool = False) -> None:
    """Feast's incremental materialization up to `end` (now), or every row up to it."""
    end = (end or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S")
    args = ("materialize", "2000-01-01T00:00:00", end) if everything else \
        ("materialize-incremental", end)
    done = subprocess.run(feast_command(*args), cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, f"feast {' '.join(args)} failed:\n{done.stderr}"


def score_request(test: pa.Table, row: int) -> dict:
    """The /score body of test row `row`: its user, scenario, item and context."""
    context = [c for c in test.column_names if c.startswith("deep_features_")]
    value = {c: test[c][row].as_py() for c in ("user_id", "item_id", "scenario", *context)}
    return {"user_id": value["user_id"], "scenario": value["scenario"],
            "item_ids": [value["item_id"]], "context": {c: value[c] for c in context}}
