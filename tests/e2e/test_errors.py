"""Bad input: one line on stderr naming the problem, exit code 2, and existing data untouched."""

from __future__ import annotations

import os
import signal
import time
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import copy_repo, fails, fingerprint, run


@pytest.fixture
def empty_repo(tmp_path) -> Path:
    return copy_repo(tmp_path / "repo")


def test_unknown_preset(empty_repo):
    fails("generate", "--preset", "huge", "--repo", str(empty_repo),
          says="--preset 'huge': unknown")
    assert not (empty_repo / "data").exists()


def test_negative_row_count(empty_repo):
    fails("generate", "--preset", "tiny", "--rows", "-5", "--repo", str(empty_repo),
          says="--rows -5")
    assert not (empty_repo / "data").exists()


def test_zero_workers(empty_repo):
    fails("generate", "--preset", "tiny", "--workers", "0", "--repo", str(empty_repo),
          says="--workers 0")


@pytest.mark.parametrize("command", ["generate", "build-dataset", "summary"])
def test_missing_repo(tmp_path, command):
    fails(command, "--repo", str(tmp_path / "nowhere"), says="not found")


def test_folder_that_is_not_a_feast_repo(tmp_path):
    fails("generate", "--preset", "tiny", "--repo", str(tmp_path), says="no feature_store.yaml")
    assert list(tmp_path.iterdir()) == []


def test_foreign_feast_repo(tmp_path):
    (tmp_path / "feature_store.yaml").write_text("project: shop\nprovider: local\n")
    fails("build-dataset", "--repo", str(tmp_path), says="project 'shop'")
    fails("generate", "--preset", "tiny", "--repo", str(tmp_path), says="project 'shop'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feature_store.yaml"]


def test_repo_without_data(empty_repo):
    fails("build-dataset", "--repo", str(empty_repo), says="run `recsys generate")


def test_existing_offline_store_needs_force(tiny):
    before = fingerprint(tiny["offline"])
    fails("generate", "--preset", "tiny", "--repo", str(tiny["repo"]), says="pass --force")
    assert fingerprint(tiny["offline"]) == before


def test_existing_dataset_needs_force(tiny):
    before = fingerprint(tiny["dataset"])
    fails("build-dataset", "--repo", str(tiny["repo"]), "--out", str(tiny["dataset"]),
          says="pass --force")
    assert fingerprint(tiny["dataset"]) == before


def test_unknown_feature_service(tiny, tmp_path):
    fails("build-dataset", "--repo", str(tiny["repo"]), "--out", str(tmp_path / "ds"),
          "--feature-service", "nope", says="unknown feature service 'nope'")
    assert not (tmp_path / "ds").exists()


def test_build_before_feast_apply(tiny, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    shutil.copytree(tiny["offline"], repo / "data" / "offline")
    before = fingerprint(repo)
    fails("build-dataset", "--repo", str(repo), "--out", str(tmp_path / "ds"),
          says="feast apply")
    assert not (tmp_path / "ds").exists()
    assert fingerprint(repo) == before  # no empty registry left behind


def test_parquet_with_a_wrong_column_type(tiny, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    shutil.copytree(tiny["offline"], repo / "data" / "offline")
    part = repo / "data" / "offline" / "user_profile" / "part-00000.parquet"
    table = pq.read_table(part)
    i = table.schema.get_field_index("user_age_bucket")
    pq.write_table(table.set_column(i, "user_age_bucket",
                                    table["user_age_bucket"].cast(pa.string())), part)
    before = fingerprint(repo)
    line = fails("build-dataset", "--repo", str(repo), "--out", str(tmp_path / "ds"),
                 says="column 'user_age_bucket' is string, expected int64")
    assert str(part) in line
    assert fingerprint(repo) == before
    assert not (tmp_path / "ds").exists()


def test_force_replaces_and_resets_feast_state(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    run("recsys", "generate", "--preset", "tiny", "--rows", "600", "--repo", str(repo))
    run("feast", "apply", cwd=repo)
    assert (repo / "data" / "registry.db").exists()
    proc = run("recsys", "generate", "--preset", "tiny", "--rows", "1200", "--seed", "1",
               "--repo", str(repo), "--force")
    assert "feast apply" in proc.stdout
    assert not (repo / "data" / "registry.db").exists()
    meta = (repo / "data" / "offline" / "meta.json").read_text()
    assert '"n_rows": 1200' in meta and '"seed": 1' in meta
    assert [p.name for p in (repo / "data").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("command", ["train", "build-dataset"])
def test_out_naming_a_file(tiny, tmp_path, command):
    (tmp_path / "a_file").write_text("mine")
    args = (["train", "--model", "dnn", "--dataset", str(tiny["dataset"]), "--epochs", "1"]
            if command == "train" else ["build-dataset", "--repo", str(tiny["repo"])])
    fails(*args, "--out", str(tmp_path / "a_file"), says="a_file")
    assert (tmp_path / "a_file").read_text() == "mine"


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A 2 MB file system: writes to it fail with ENOSPC, as on a full disk."""
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def ends_with_one_error(proc, says: str) -> None:
    """Exit 2, no traceback, and the last line on stderr (after any progress) the error."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and says in last, last


def test_full_disk(tiny, full_disk):
    build = run("recsys", "build-dataset", "--repo", str(tiny["repo"]), "--out",
                str(full_disk / "ds"), check=False)
    ends_with_one_error(build, says="no space left on the device")
    assert not (full_disk / "ds").exists()
    for leftover in full_disk.rglob("*.tmp"):  # a half-written file would pass as whole
        pytest.fail(f"{leftover} left behind")
    shutil.rmtree(full_disk / ".ds.partial")
    train = run("recsys", "train", "--model", "dnn", "--dataset", str(tiny["dataset"]),
                "--epochs", "1", "--out", str(full_disk / "run"), check=False)
    ends_with_one_error(train, says="no space left on the device")
    assert not list(full_disk.rglob("*.pt")) and not list(full_disk.rglob("*.tmp"))


@pytest.mark.parametrize("args, says", [
    (["train", "--model", "dnn", "--epochs", "x"], "Invalid value for '--epochs'"),
    (["build-dataset", "--no-such-flag"], "No such option: --no-such-flag"),
    (["no-such-command"], "No such command 'no-such-command'"),
])
def test_usage_errors_are_one_line(args, says):
    fails(*args, says=says)


def test_invalid_yaml_mapping(empty_repo, tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("user_col: [uid\n  item_col: iid\n")
    fails("import", "interactions", "--mapping", str(mapping), "--repo", str(empty_repo),
          says=f"{mapping} is not valid YAML (line 2")
    assert fingerprint(empty_repo) == fingerprint(copy_repo(tmp_path / "pristine"))


@pytest.mark.parametrize("damaged", ["checkpoint.pt", "config.json"])
def test_corrupt_run_file_is_reported_not_trained_over(tiny, tmp_path, damaged):
    out = tmp_path / "run"
    train = ("train", "--model", "dnn", "--dataset", str(tiny["dataset"]), "--epochs", "1",
             "--out", str(out))
    run("recsys", *train)
    (out / "metrics.json").unlink()  # as if killed before the end: the next call resumes
    path = out / damaged
    path.write_bytes(path.read_bytes()[:100])
    before = fingerprint(out)
    fails(*train, says=f"{path} is corrupt or truncated")
    assert fingerprint(out) == before
    run("recsys", *train, "--force")  # the way out the message names
    assert (out / "metrics.json").exists()


def test_sizes_beyond_the_machine_are_refused_before_any_work(tiny, empty_repo, tmp_path):
    """Flags implying more disk or memory than there is: refused at once with the numbers,
    nothing written (generate used to run until killed; train died in an allocation)."""
    before = fingerprint(empty_repo)
    fails("generate", "--preset", "tiny", "--rows", str(10 ** 15), "--repo", str(empty_repo),
          says="GiB of disk")
    assert fingerprint(empty_repo) == before and not (empty_repo / "data").exists()
    fails("train", "--model", "dnn", "--dataset", str(tiny["dataset"]), "--user-rows",
          str(10 ** 12), "--out", str(tmp_path / "run"), says="GiB of memory")
    assert not (tmp_path / "run").exists()
    fails("build-dataset", "--repo", str(tiny["repo"]), "--out", str(tmp_path / "ds"),
          "--memory-gb", "1000000", says="pass a smaller --memory-gb")
    assert not (tmp_path / "ds").exists()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_killed_generator_worker_ends_the_command(empty_repo):
    """kill -9 of one worker process: the command ends promptly with one line, exit 2, and
    leaves no offline store (it used to wait forever for the dead worker's chunks)."""
    from conftest import BIN

    proc = subprocess.Popen([str(BIN / "recsys"), "generate", "--preset", "tiny", "--rows",
                             "3000000", "--workers", "2", "--repo", str(empty_repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert len(workers) >= 2, "the generator never started its workers"
    time.sleep(1)  # mid-run
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: a generator worker died")
    assert not (empty_repo / "data" / "offline").exists()


def test_ctrl_c_mid_training_then_a_rerun_resumes(tiny, tmp_path):
    from conftest import BIN

    out = tmp_path / "run"
    train = [str(BIN / "recsys"), "train", "--model", "dnn", "--dataset", str(tiny["dataset"]),
             "--epochs", "4", "--out", str(out)]
    # a shell's background job inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default disposition a terminal would
    proc = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # at least one epoch done
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert not list(out.glob("*.tmp")) and not (out / "metrics.json").exists()
    again = run("recsys", "train", "--model", "dnn", "--dataset", str(tiny["dataset"]),
                "--epochs", "4", "--out", str(out))
    assert "resuming" in again.stdout + again.stderr


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A read-only view of an empty feature repo (a read-only bind mount: root ignores file
    permissions)."""
    repo, view = copy_repo(tmp_path / "repo"), tmp_path / "read_only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(repo), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root) to make a read-only folder")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
    yield view
    subprocess.run(["umount", str(view)], check=True)


def test_read_only_destinations(tiny, read_only):
    before = fingerprint(read_only)
    for args in (["generate", "--preset", "tiny", "--repo", str(read_only)],
                 ["build-dataset", "--repo", str(tiny["repo"]), "--out", str(read_only / "ds")],
                 ["train", "--model", "dnn", "--dataset", str(tiny["dataset"]), "--epochs", "1",
                  "--out", str(read_only / "run")]):
        fails(*args, says="the file system is read-only")
    assert fingerprint(read_only) == before


def test_a_damaged_row_group_ends_training_with_one_line(tiny, tmp_path):
    """Bytes of a data page overwritten after the build (the footer still reads): the loader's
    thread meets it mid-epoch, and the command ends with the file named, not a traceback."""
    dataset = tmp_path / "ds"
    shutil.copytree(tiny["dataset"], dataset)
    part = sorted((dataset / "train").glob("*.parquet"))[0]
    data, meta = bytearray(part.read_bytes()), pq.ParquetFile(part).metadata
    for g in range(meta.num_row_groups):
        at = meta.row_group(g).column(3).data_page_offset
        data[at + 10:at + 400] = b"\xff" * 390
    part.write_bytes(bytes(data))
    proc = run("recsys", "train", "--model", "dnn", "--dataset", str(dataset), "--epochs", "1",
               "--out", str(tmp_path / "run"), check=False)
    ends_with_one_error(proc, says=f"{part}: row group 0 cannot be read")


def test_running_out_of_memory_is_one_line():
    """DuckDB's own out-of-memory error is several lines of tuning advice; ours is one."""
    import duckdb

    from recsys.errors import out_of_memory_message

    con = duckdb.connect()
    con.execute("SET memory_limit = '20MB'")
    with pytest.raises(duckdb.OutOfMemoryException) as caught:
        con.execute("SELECT list(range) FROM range(20000000)").fetchall()
    message = out_of_memory_message(caught.value)
    assert "\n" not in message and message.startswith("out of memory (Out of Memory Error")
    assert out_of_memory_message(MemoryError()).startswith("out of memory (MemoryError)")
