"""Shared fixtures: a copy of the real feature repo holding the tiny preset, applied with the
real Feast CLI, and its training set built with the real recsys CLI."""

from __future__ import annotations

import os

# One OpenMP thread per process: the tests run on two workers, each starting CLI processes,
# and torch's idle OpenMP threads spin, so two threads a process on two cores made a training
# run ten times slower (40-57 s against 3-5 s a model in test_models); one thread also makes
# every float sum's order fixed. Set before anything imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import hashlib  # noqa: E402
import re  # noqa: E402
import shutil
import subprocess  # noqa: E402
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from recsys.features.feast_cli import command as feast_command
from recsys.features.feature_store import copy_definitions

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts: recsys, feast


# The longest modules first, so that two workers taking whole modules (make test: --dist
# loadscope) end together rather than one waiting on the other's last long module; the first
# needs no tiny fixture, so one worker runs it while the other builds the fixture.
LONGEST_FIRST = ("test_online_experiment", "test_serve", "test_build", "test_scale",
                 "test_daily_cycle", "test_hostile", "test_models", "test_cold_start",
                 "test_import", "test_errors", "test_retrieval", "test_text", "test_own_data",
                 "test_training", "test_hot_swap", "test_append")


def pytest_collection_modifyitems(items) -> None:
    first = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.stem, len(first)))  # stable: else as found


def run(*args: str, cwd: Path | None = None, check: bool = True,
        threads: int | None = None, plain: bool = False) -> subprocess.CompletedProcess:
    """Run a console script of this environment, capturing its output (`threads`: its
    OpenMP threads, where nothing else runs beside it). `feast` is Feast's CLI as recsys runs
    it (recsys.features.feast_cli: 3-4 s sooner) unless `plain`: the `feast` script itself."""
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    argv = feast_command(*args[1:]) if args[0] == "feast" and not plain \
        else [str(BIN / args[0]), *args[1:]]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def in_process(*args: str) -> tuple[int, str]:
    """`recsys ARGS` as its console script runs it (usage errors made one line too), in this
    process, its output captured: the exit code and what it wrote to stderr. For refusals,
    which need no process of their own."""
    from click.testing import CliRunner

    from recsys.cli import main

    argv = sys.argv
    with CliRunner().isolation() as (_, err, _all):
        sys.argv = ["recsys", *args]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.argv = argv
        return code, err.getvalue().decode()


PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar


def error_lines(stderr: str) -> list[str]:
    """What a refused command said, without the progress bars of the work it did before it
    found the fault (a bar is drawn only once its work has run a moment: under load, a read
    of a small file shows one)."""
    return [ln for ln in stderr.strip().splitlines() if ln.strip() and not PROGRESS.search(ln)]


def copy_repo(dest: Path) -> Path:
    """A fresh copy of feature_repo/ (definitions only, no data)."""
    return copy_definitions(ROOT / "feature_repo", dest)


def one_layer_encoder(dest: Path) -> Path:
    """The bundled sentence encoder cut to its first transformer layer (its tokenizer,
    embeddings and pooling kept): the tests check the text path, not the vectors' quality,
    and one layer encodes tiny's 10,688 texts in seconds where six took 38 s."""
    from recsys.text.encode import default_model, load_encoder

    encoder = load_encoder(default_model(), "cpu")
    bert = encoder[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:1]
    bert.config.num_hidden_layers = 1
    encoder.save(str(dest))
    return dest


def build_tiny(base: Path) -> None:
    """Tiny preset generated, its text encoded (by `one_layer_encoder`, in base/encoder),
    `feast apply`-ed and built into a dataset under `base`."""
    repo = copy_repo(base / "feature_repo")
    run("recsys", "generate", "--preset", "tiny", "--seed", "7", "--repo", str(repo),
        "--workers", "2")
    encoder = one_layer_encoder(base / "encoder")
    # the other worker waits for this build: the text encoder may take both cores
    run("recsys", "encode-text", "--repo", str(repo), "--model", str(encoder), threads=2)
    run("feast", "apply", cwd=repo)
    run("recsys", "build-dataset", "--repo", str(repo), "--out", str(base / "datasets" / "tiny"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """The tiny preset's repo and dataset (see build_tiny), a copy of its own for each
    worker, whose tests may change it. Built once a run: the first xdist worker builds it in
    the run's shared folder under a file lock, the other waits and copies it."""
    base = tmp_path_factory.mktemp("tiny")
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        build_tiny(base)
    else:
        shared = tmp_path_factory.getbasetemp().parent / "tiny-shared"  # this run's, not a worker's
        with FileLock(f"{shared}.lock"):
            if not (shared / "built").exists():
                shutil.rmtree(shared, ignore_errors=True)  # a worker that failed half-way
                build_tiny(shared)
                (shared / "built").touch()
        shutil.rmtree(base)
        shutil.copytree(shared, base, ignore=shutil.ignore_patterns("built"))
    repo = base / "feature_repo"
    return {"base": base, "repo": repo, "offline": repo / "data" / "offline",
            "dataset": base / "datasets" / "tiny", "encoder": base / "encoder"}


def fingerprint(folder: Path, skip=lambda name: False) -> str:
    """Hash of every file's path and bytes under a folder, but those with a path part (a file
    or folder name) that `skip` names."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder)
        if any(skip(part) for part in rel.parts):
            continue
        h.update(str(rel).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def fails(*args: str, says: str) -> str:
    """`recsys ARGS` refused: exit 2 and one line (in process: a refusal needs no process)."""
    code, stderr = in_process(*args)
    assert code == 2, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    return lines[0]
