"""Hostile input, command by command: absurd flags, missing, empty, corrupt and truncated files,
bad mappings, and interruptions (kill -9, Ctrl-C) mid-run. Each refusal must exit 2 with exactly
one line on stderr, no traceback, and leave the repo and the dataset byte for byte as they were
(in process, on the real tiny repo and dataset); each interruption, of a real process, must
leave the old state or none, and a rerun must succeed."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BIN, copy_repo, error_lines, fingerprint, in_process, run

# name -> what to write there; `{tmp}/<name>` in a case's arguments is made before it runs
FILES = {
    "empty.csv": b"",
    "header_only.csv": b"u,i,t,y\n",
    "garbage.csv": bytes(range(256)) * 8,
    "not_utf8.csv": b"u,i,t,y\n\xff\xfe,1,1714521600,1\n",
    "list.yaml": b"- user_col\n- item_col\n",
    "unknown_key.yaml": b"user_col: u\nitem_col: i\ntime_col: t\nlabel_col: y\ncolour: red\n",
    "wrong_type.yaml": b"user_col: [1, 2]\nitem_col: i\ntime_col: t\nlabel_col: y\n",
    "corrupt.json": b'{"models": {"mmoe": ',
    "zero_epochs.yaml": b"model: dnn\nepochs: 0\n",
    "garbage.parquet": b"PAR1" + b"\x00" * 100,
}
LOG = ["--user-col", "u", "--item-col", "i", "--time-col", "t", "--label-col", "y"]


def _write_inputs(tmp: Path) -> None:
    for name, data in FILES.items():
        (tmp / name).write_bytes(data)
    n = 200
    log = pa.table({"u": [f"u{k % 13}" for k in range(n)], "i": [k % 7 for k in range(n)],
                    "t": [1714521600 + 3600 * k for k in range(n)], "y": [k % 2 for k in range(n)],
                    "s": [k % 9 for k in range(n)]})
    pq.write_table(log, tmp / "log.parquet")
    pq.write_table(log.slice(0, 0), tmp / "zero_rows.parquet")
    data = (tmp / "log.parquet").read_bytes()
    (tmp / "truncated.parquet").write_bytes(data[: len(data) // 2])
    pq.write_table(log.set_column(3, "y", pa.array([None] * n, pa.int64())),
                   tmp / "null_labels.parquet")
    pq.write_table(log.set_column(2, "t", pa.array(["soon"] * n)), tmp / "bad_times.parquet")
    pq.write_table(pa.table({"uid": ["u1"], "bio": ["hello"]}), tmp / "users.parquet")
    (tmp / "a_folder").mkdir()
    (tmp / "a_file").write_text("mine")


@pytest.fixture(scope="module")
def world(tiny, tmp_path_factory) -> dict:
    """The tiny repo and dataset (never to change), damaged copies of both, and input files."""
    tmp = tmp_path_factory.mktemp("hostile")
    _write_inputs(tmp)
    broken_repo = tmp / "broken_repo"  # an applied repo whose offline meta.json is cut short
    shutil.copytree(tiny["repo"], broken_repo)
    meta = broken_repo / "data" / "offline" / "meta.json"
    meta.write_text(meta.read_text()[:40])
    torn_repo = tmp / "torn_repo"  # an applied repo with one interactions file cut in half
    shutil.copytree(tiny["repo"], torn_repo)
    part = sorted((torn_repo / "data" / "offline" / "interactions").rglob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:200])
    broken_ds = tmp / "broken_ds"  # a dataset whose meta.json is not JSON
    shutil.copytree(tiny["dataset"], broken_ds)
    (broken_ds / "meta.json").write_text("{not json")
    torn_ds = tmp / "torn_ds"  # a dataset with its training rows cut in half
    shutil.copytree(tiny["dataset"], torn_ds)
    for f in (torn_ds / "train").rglob("*.parquet"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return {"tmp": tmp, "repo": tiny["repo"], "ds": tiny["dataset"], "broken_repo": broken_repo,
            "torn_repo": torn_repo, "broken_ds": broken_ds, "torn_ds": torn_ds}


# (command, arguments, what the one line must name); {x} is world[x]
CASES = [
    # generate
    ("generate", "--rows 0 --repo {empty}", "--rows"),
    ("generate", "--rows many --repo {empty}", "'--rows'"),
    ("generate", "--seed -1 --repo {empty}", "--seed"),
    ("generate", "--workers -3 --repo {empty}", "--workers"),
    ("generate", "--chunks 5:2 --repo {empty}", "--chunks"),
    ("generate", "--chunks a:b --repo {empty}", "--chunks"),
    ("generate", "--preset '' --repo {empty}", "preset"),
    ("generate", "--preset tiny --repo {tmp}/a_file", "a_file"),
    ("generate", "--preset tiny --repo {repo}", "--force"),
    ("generate", "--colour red", "--colour"),
    # import antm2c
    ("import antm2c", "--repo {empty}", "Missing argument 'files'"),
    ("import antm2c", "{tmp}/missing.csv --repo {empty}", "missing.csv"),
    ("import antm2c", "{tmp}/empty.csv --repo {empty}", "empty.csv"),
    ("import antm2c", "{tmp}/garbage.csv --repo {empty}", "garbage.csv"),
    ("import antm2c", "{tmp}/a_folder --repo {empty}", "a_folder"),
    ("import antm2c", "{tmp}/header_only.csv --repo {empty}", "header_only.csv"),
    # import interactions
    ("import interactions", "--interactions {tmp}/log.parquet --item-col i --time-col t "
                            "--label-col y --repo {empty}", "--user-col"),
    ("import interactions", "--interactions {tmp}/log.parquet " + " ".join(LOG)
     + " --label-threshold high --repo {empty}", "'--label-threshold'"),
    ("import interactions", "--mapping {tmp}/missing.yaml --repo {empty}", "missing.yaml"),
    ("import interactions", "--mapping {tmp}/list.yaml --repo {empty}", "list.yaml"),
    ("import interactions", "--mapping {tmp}/unknown_key.yaml --interactions {tmp}/log.parquet"
                            " --repo {empty}", "colour"),
    ("import interactions", "--mapping {tmp}/wrong_type.yaml --interactions {tmp}/log.parquet"
                            " --repo {empty}", "user_col"),
    ("import interactions", "--interactions {tmp}/empty.csv " + " ".join(LOG)
     + " --repo {empty}", "empty.csv"),
    ("import interactions", "--interactions {tmp}/header_only.csv " + " ".join(LOG)
     + " --repo {empty}", "header_only.csv"),
    ("import interactions", "--interactions {tmp}/not_utf8.csv " + " ".join(LOG)
     + " --repo {empty}", "not_utf8.csv"),
    ("import interactions", "--interactions {tmp}/truncated.parquet " + " ".join(LOG)
     + " --repo {empty}", "truncated.parquet"),
    ("import interactions", "--interactions {tmp}/garbage.parquet " + " ".join(LOG)
     + " --repo {empty}", "garbage.parquet"),
    ("import interactions", "--interactions {tmp}/zero_rows.parquet " + " ".join(LOG)
     + " --repo {empty}", "zero_rows.parquet"),
    ("import interactions", "--interactions {tmp}/null_labels.parquet " + " ".join(LOG)
     + " --repo {empty}", "null_labels.parquet"),
    ("import interactions", "--interactions {tmp}/bad_times.parquet " + " ".join(LOG)
     + " --repo {empty}", "bad_times.parquet"),
    ("import interactions", "--interactions {tmp}/log.parquet " + " ".join(LOG)
     + " --scenario-col surface --repo {empty}", "'surface' (--scenario-col)"),
    ("import interactions", "--interactions {tmp}/log.parquet " + " ".join(LOG)
     + " --users {tmp}/users.parquet --repo {empty}", "users.parquet"),
    ("import interactions", "--interactions {tmp}/log.parquet " + " ".join(LOG)
     + " --items {tmp}/log.parquet --text-cols title --repo {empty}", "title"),
    ("import interactions", "--interactions {tmp}/log.parquet " + " ".join(LOG)
     + " --repo {repo}", "--force"),
    # encode-text
    ("encode-text", "--repo {repo} --dim -1 --force", "--dim"),
    ("encode-text", "--repo {repo} --batch-size 0 --force", "--batch-size"),
    ("encode-text", "--repo {repo} --device tpu --force", "--device"),
    ("encode-text", "--repo {repo} --model {tmp}/missing_model --force", "missing_model"),
    ("encode-text", "--repo {repo} --model {tmp}/a_folder --force", "a_folder"),
    ("encode-text", "--repo {empty}", "no data"),
    ("encode-text", "--repo {repo}", "--force"),
    ("encode-text", "--repo {broken_repo} --force", "meta.json"),
    # build-dataset
    ("build-dataset", "--repo {repo} --out {out} --memory-gb 0", "--memory-gb"),
    ("build-dataset", "--repo {repo} --out {out} --memory-gb -2", "--memory-gb"),
    ("build-dataset", "--repo {repo} --out {out} --partition-rows 0", "--partition-rows"),
    ("build-dataset", "--repo {repo} --out {out} --engine hadoop", "--engine"),
    ("build-dataset", "--repo {repo} --out {out} --features logged", "no served log"),
    ("build-dataset", "--repo {repo} --out {out} --features seen", "--features"),
    ("build-dataset", "--repo {repo} --out {out} --feature-service ''", "feature service"),
    ("build-dataset", "--repo {repo} --out {ds}", "--force"),
    ("build-dataset", "--repo {broken_repo} --out {out}", "meta.json"),
    ("build-dataset", "--repo {torn_repo} --out {out}", ".parquet"),
    # train
    ("train", "--model dnn --dataset {ds} --out {out} --epochs 0", "--epochs"),
    ("train", "--model dnn --dataset {ds} --out {out} --batch-size 0", "--batch-size"),
    ("train", "--model dnn --dataset {ds} --out {out} --batch-size -5", "--batch-size"),
    ("train", "--model nope --dataset {ds} --out {out}", "nope"),
    ("train", "--model dnn --dataset {ds} --out {out} --fusion nope", "--fusion"),
    ("train", "--model dnn --dataset {ds} --out {out} --nproc 0", "--nproc"),
    ("train", "--model dnn --dataset {ds} --out {out} --device tpu", "--device"),
    ("train", "--model dnn --dataset {ds} --out {out} --checkpoint-every -1", "--checkpoint-every"),
    ("train", "--model dnn --dataset {ds} --out {out} --user-rows 0", "--user-rows"),
    ("train", "--model dnn --dataset {ds} --out {out} --item-rows -1", "--item-rows"),
    ("train", "--model dnn --dataset {ds} --out {out} --seed -1", "--seed"),
    ("train", "--model dnn --dataset {ds} --out {out} --seed 18446744073709551616", "--seed"),
    ("train", "--config {tmp}/zero_epochs.yaml --dataset {ds} --out {out}",
     "zero_epochs.yaml: epochs 0"),  # the library's own check, for a key of a file
    ("train", "--model dnn --dataset {tmp}/missing --out {out}", "missing"),
    ("train", "--model dnn --dataset {repo} --out {out}", "dataset"),
    ("train", "--model dnn --dataset {broken_ds} --out {out}", "meta.json"),
    ("train", "--model dnn --dataset {torn_ds} --out {out} --epochs 1", ".parquet"),
    # summary
    ("summary", "--repo {broken_repo}", "meta.json"),
    ("summary", "--repo {repo} --dataset {broken_ds}", "meta.json"),
    # plan
    ("plan", "--world-size 0", "--world-size"),
    ("plan", "--dtype int3", "--dtype"),
    ("plan", "--preset nope", "nope"),
    ("plan", "--memory-gb 0", "--memory-gb"),
    ("plan", "--dim 0", "--dim"),
    ("plan", "--device tpu", "--device"),
    ("plan", "--batch-size 0", "--batch-size"),
    ("plan", "--model nope", "nope"),
    # experiments
    ("experiment multi-scenario", "--dataset {ds} --seeds 0 --out {out}", "--seeds"),
    ("experiment multi-scenario", "--dataset {tmp}/missing --out {out}", "missing"),
    ("experiment cold-start", "--dataset {ds} --multi-scenario-results {tmp}/corrupt.json "
                              "--out {out}", "corrupt.json"),
    ("experiment multi-modal", "--dataset {ds} --epochs 0 --out {out}", "--epochs"),
]


def _case_id(case) -> str:
    """The command and what is hostile in it: the arguments without the places."""
    command, args, _ = case
    args = re.sub(r"--(out|user-col|item-col|time-col|label-col) \S+ ?", "", args)
    return f"{command.replace(' ', '-')}: {args.replace('{tmp}/', '').strip()}"


def _argv(args: str, world: dict) -> list[str]:
    import shlex

    return [a.format(**{k: str(v) for k, v in world.items()}) for a in shlex.split(args)]


@pytest.fixture(scope="module")
def untouched(world):
    """Fingerprints of everything no refused command may change."""
    return {k: fingerprint(v) for k, v in world.items() if k != "tmp"}


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_hostile_input_is_refused_in_one_line(world, untouched, case, tmp_path):
    """In process (Typer's CliRunner): a refusal needs no process of its own, and the CLI's
    imports are paid once, not once per case (80 processes took four minutes of CPU)."""
    command, args, says = case
    empty = copy_repo(tmp_path / "empty_repo")  # a fresh repo without data, per case
    pristine = fingerprint(empty)
    out = tmp_path / "out"  # where a command that should have been refused would write
    code, stderr = in_process(*command.split(),
                              *_argv(args, {**world, "empty": empty, "out": out}))
    assert code == 2, stderr[-2000:]  # an exception escaping fails the test with its traceback
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    for name, before in untouched.items():
        assert fingerprint(world[name]) == before, f"{name} changed"
    assert fingerprint(empty) == pristine, "the empty repo changed"
    assert not out.exists(), "output written by a refused command"


# --- interruptions: kill -9 and Ctrl-C mid-run ---------------------------------------------

def _hidden_work(name: str) -> bool:
    """A killed writer's hidden folder (`.NAME.tmp-PID`, a resumable `.NAME.partial`): not part
    of what a reader sees."""
    return ".tmp-" in name or name.endswith(".partial")


def _interrupt(args: list[str], sig: int, marker: str, log: Path) -> tuple[int, str]:
    """Run `recsys ARGS`, send `sig` once `marker` shows on its stderr (its progress bar: the
    work is under way), and return its exit code and stderr."""
    with open(log, "w") as err:
        # a shell's background job inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the child the default disposition a terminal would
        proc = subprocess.Popen([str(BIN / "recsys"), *args], stdout=subprocess.DEVNULL,
                                stderr=err, preexec_fn=lambda: signal.signal(
                                    signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 180
        while marker not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, f"no '{marker}' on stderr: {log.read_text()}"
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before it could be interrupted: {log.read_text()}"
        proc.send_signal(sig)
        proc.wait(timeout=60)
    return proc.returncode, log.read_text()


def _no_process_left(repo: Path, seconds: float = 10) -> None:
    """Nothing started for `repo` (a generator's workers, say) outlives the killed command."""
    deadline = time.monotonic() + seconds
    while True:
        left = subprocess.run(["pgrep", "-f", f"--repo {repo}"], capture_output=True,
                              text=True).stdout.split()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes of the killed command still run: {left}"


def _big_log(path: Path, n: int = 400_000) -> Path:
    """A log large enough that its import is still running when interrupted."""
    import numpy as np

    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"u": rng.integers(0, 5000, n), "i": rng.integers(0, 800, n),
                             "t": 1714521600 + rng.integers(0, 4 * 86400, n),
                             "y": rng.integers(0, 2, n)}), path, row_group_size=20_000)
    return path


# (command, its arguments, the stderr marker of work under way, what it writes)
INTERRUPTED = {
    "generate": (["generate", "--preset", "tiny", "--force", "--repo", "{repo}"],
                 "impressions:", "repo"),
    "import": (["import", "interactions", "--interactions", "{log}", *LOG, "--force", "--repo",
                "{repo}"], "import interactions:", "repo"),
    "encode-text": (["encode-text", "--force", "--repo", "{repo}", "--model", "{encoder}"],
                    "encode-text:", "repo"),
    "build-dataset": (["build-dataset", "--repo", "{repo}", "--out", "{ds}", "--force"],
                      "point-in-time join:", "ds"),
    "train": (["train", "--model", "dnn", "--dataset", "{ds}", "--epochs", "2", "--out",
               "{run}", "--checkpoint-every", "1"], "epoch 1/2", "run"),
}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
@pytest.mark.parametrize("command", list(INTERRUPTED))
def test_interrupted_mid_run_keeps_the_old_state_and_a_rerun_succeeds(tiny, tmp_path, command,
                                                                      sig):
    """The repo, dataset or run a command writes is, after a kill, byte for byte what it was
    before (the old data stays until the new is complete); the rerun then succeeds and leaves
    no half-written leftovers behind."""
    places = {"repo": tmp_path / "repo", "ds": tmp_path / "ds", "run": tmp_path / "run",
              "log": tmp_path / "log.parquet", "encoder": tiny["encoder"]}
    shutil.copytree(tiny["repo"], places["repo"])
    shutil.copytree(tiny["dataset"], places["ds"])
    if command == "import":
        _big_log(places["log"])
    if command == "encode-text":  # one cached part lost: its texts are encoded again
        sorted((places["repo"] / "data" / "text_cache").rglob("part-*.parquet"))[-1].unlink()
    args, marker, writes = INTERRUPTED[command]
    args = [a.format(**places) for a in args]
    before = fingerprint(places[writes], skip=_hidden_work) if places[writes].exists() else None
    code, stderr = _interrupt(args, sig, marker, tmp_path / "stderr.txt")
    assert "Traceback" not in stderr, stderr
    if sig == signal.SIGINT:
        assert code == 130, stderr
        assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
    else:
        assert code == -signal.SIGKILL
        _no_process_left(places["repo"])
    if command != "train":  # a run keeps its checkpoints: a rerun resumes from them
        assert fingerprint(places[writes], skip=_hidden_work) == before, \
            f"{writes} changed by an interrupted {command}"
    run("recsys", *args)
    leftovers = [p for p in places[writes].parent.rglob("*")
                 if _hidden_work(p.name) or p.name.endswith(".tmp")]
    assert not leftovers, leftovers
