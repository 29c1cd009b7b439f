"""`make bench-quality`: the multi-scenario, cold-start, multi-modal and history experiments over
K seeds on one preset, checked against the expected AUC in benchmarks/quality_gates.json,
rendered into benchmarks/RESULTS.md. Every step is the real CLI; a killed run continues where it
stopped (finished data steps and training runs are reused).

    python benchmarks/quality.py --preset small --seeds 1 [--record] [--work DIR]
    python benchmarks/quality.py --preset small --seeds 3 --spread   # `make bench-spread`
    python benchmarks/quality.py --rolling                          # `make bench-rolling`
    python benchmarks/quality.py --feed                             # `make bench-feed`
    python benchmarks/quality.py --online                           # `make bench-online`

Exits 1 when a gated cell moved beyond its tolerance (the cells are named), 2 on bad input.
`--spread` runs the multi-scenario experiment alone, on both backbones (mlp, dcn), ungated: the
spread over seeds of every model and its paired gain over dnn, rendered as its own part.
`--rolling` runs the rolling evaluation of benchmarks/rolling_gates.json (a world of its days,
updated against retrained day by day) and checks its criteria, rendered as its own part.
`--feed` runs the history and retrieval experiments of benchmarks/feed_gates.json on a feed
world (`recsys generate --feed`) and checks their criteria, rendered as its own part.
`--online` runs the simulated online A/B test of benchmarks/online_gates.json (a feed world
generated up to a day, a run trained on it, its later days served to every arm) and checks its
criteria, rendered as its own part."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.errors import RecsysError  # noqa: E402
from recsys.eval import gates  # noqa: E402
from recsys.features.feature_store import DEFINITIONS, copy_definitions  # noqa: E402
from recsys.provenance import machine_facts  # noqa: E402
from recsys.files import write_json  # noqa: E402

BIN = Path(sys.executable).parent
GATES = ROOT / "benchmarks" / "quality_gates.json"
ROLLING_GATES = ROOT / "benchmarks" / "rolling_gates.json"
FEED_GATES = ROOT / "benchmarks" / "feed_gates.json"
ONLINE_GATES = ROOT / "benchmarks" / "online_gates.json"
FEED_HISTORY = ROOT / "benchmarks" / "feed_history.yaml"  # the history arms' config
EXPERIMENTS = ("multi-scenario", "cold-start", "multi-modal", "history")


SPREAD = "multi-scenario-spread"  # the --spread run's experiment folder


def commands(preset: str, seeds: int, epochs: int | None, work: Path,
             spread: bool = False) -> list[list[str]]:
    """The data steps (skipped once their output exists), then one command per experiment."""
    repo, ds = work / "repo", work / "ds"
    train = ["--seeds", str(seeds), *(["--epochs", str(epochs)] if epochs else [])]
    if spread:  # no text vectors: the multi-scenario models do not read them
        data = [c for c in commands(preset, seeds, epochs, work)[:4] if c[1] != "encode-text"]
        return [*data, ["recsys", "experiment", "multi-scenario", "--dataset", str(ds), *train,
                        "--backbones", "mlp,dcn", "--out", str(work / SPREAD)]]
    return [
        # --force: the work folder is this script's own; a killed build resumes regardless
        ["recsys", "generate", "--preset", preset, "--repo", str(repo), "--workers", "2",
         "--force"],
        ["recsys", "encode-text", "--repo", str(repo), "--force"],
        ["feast", "apply"],  # in the repo folder
        ["recsys", "build-dataset", "--repo", str(repo), "--out", str(ds), "--force"],
        ["recsys", "experiment", "multi-scenario", "--dataset", str(ds), *train,
         "--out", str(work / "multi-scenario")],
        ["recsys", "experiment", "cold-start", "--dataset", str(ds), *train,
         "--multi-scenario-results", str(work / "multi-scenario" / "results.json"),
         "--out", str(work / "cold-start")],
        ["recsys", "experiment", "multi-modal", "--dataset", str(ds), *train,
         "--out", str(work / "multi-modal")],
        ["recsys", "experiment", "history", "--dataset", str(ds), *train,
         "--out", str(work / "history")]]


def rolling_commands(criteria: dict, work: Path) -> list[list[str]]:
    repo = work / "repo"
    return [["recsys", "generate", "--preset", criteria["preset"], "--days",
             str(criteria["days"]), "--repo", str(repo), "--workers", "2", "--force"],
            ["feast", "apply"],
            ["recsys", "experiment", "rolling", "--dataset-repo", str(repo), "--model",
             criteria["model"], "--start", criteria["start"], "--out", str(work / "rolling")]]


def feed_commands(criteria: dict, seeds: int, work: Path) -> list[list[str]]:
    repo, ds = work / "repo", work / "ds"
    return [["recsys", "generate", "--preset", criteria["preset"], "--feed", "--repo",
             str(repo), "--workers", "2", "--force"],
            ["feast", "apply"],
            ["recsys", "build-dataset", "--repo", str(repo), "--out", str(ds), "--force"],
            ["recsys", "experiment", "history", "--dataset", str(ds), "--seeds", str(seeds),
             "--config", str(FEED_HISTORY), "--out", str(work / "history")],
            ["recsys", "experiment", "retrieval", "--dataset", str(ds), "--seeds", str(seeds),
             "--out", str(work / "retrieval")]]


def online_commands(criteria: dict, work: Path) -> list[list[str]]:
    """The world generated up to `until`, its run trained, then its later days served."""
    repo, ds = work / "repo", work / "ds"
    return [["recsys", "generate", "--preset", criteria["preset"], "--feed", "--until",
             str(criteria["until"]), "--repo", str(repo), "--workers", "2", "--force"],
            ["feast", "apply"],
            ["recsys", "materialize", "--repo", str(repo)],
            ["recsys", "build-dataset", "--repo", str(repo), "--out", str(ds), "--force"],
            ["recsys", "train", "--model", criteria["model"], "--dataset", str(ds), "--out",
             str(work / "run"), "--force"],
            ["recsys", "experiment", "online", "--repo", str(repo), "--run", str(work / "run"),
             *(a for k in ("days", "requests", "slices") for a in (f"--{k}", str(criteria[k]))),
             "--out", str(work / "online"), "--force"]]


GATES_OF = {"rolling": ROLLING_GATES, "feed": FEED_GATES, "online": ONLINE_GATES}


def criteria_main(kind: str, work: Path, seeds: int | None) -> int:
    """`--rolling` / `--feed`: run the experiments of the kind's criteria file (a killed run
    resumes its folder; the world is reused), check the criteria, render the kind's part."""
    criteria = json.loads(GATES_OF[kind].read_text())
    seeds = seeds or criteria.get("seeds", 1)
    listed = rolling_commands(criteria, work) if kind == "rolling" else \
        online_commands(criteria, work) if kind == "online" else \
        feed_commands(criteria, seeds, work)
    work.mkdir(parents=True, exist_ok=True)
    steps = listed
    if not (work / "repo" / "data" / "offline" / "meta.json").is_file():
        shutil.rmtree(work / "repo", ignore_errors=True)  # a killed earlier run's
        print(f"$ {copy_shown(work)}", flush=True)
        copy_definitions(ROOT / "feature_repo", work / "repo")
    else:
        steps = [c for c in steps if c[1] not in ("generate", "apply", "materialize")]
        if (work / "ds" / "meta.json").is_file():
            steps = [c for c in steps if c[1] != "build-dataset"]
        if (work / "run" / "metrics.json").is_file():
            steps = [c for c in steps if c[1] != "train"]
    for cmd in steps:
        if (rc := run(cmd, work)) != 0:
            return rc

    def results(name: str) -> dict:
        return json.loads((work / name / "results.json").read_text())

    checks = gates.rolling_criteria(results("rolling"), criteria) if kind == "rolling" else \
        gates.online_criteria(results("online"), criteria) if kind == "online" else \
        [*gates.history_criteria(results("history"), criteria["history"]),
         *gates.retrieval_criteria(results("retrieval"), criteria["retrieval"])]
    for c in checks:
        print(c.line())
    print(gates.verdict(checks))
    write_json({"criteria": criteria, "seeds": seeds,
                "checked": [{"line": c.line(), "ok": c.passed} for c in checks],
                "commands": [copy_shown(work), *(shown(c, work) for c in listed)],
                "machine": machine_facts(),
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat()},
               work / f"{kind}.json")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py"), kind,
                    str(work)], check=True)
    return 0 if all(c.passed for c in checks) else 1


def _relative(arg: str | Path) -> str:
    """A path as the reader of the results types it: from the checkout's root."""
    path = Path(arg)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) \
        else str(arg)


def shown(cmd: list[str], work: Path) -> str:
    text = shlex.join(map(_relative, cmd))
    return f"(cd {_relative(work / 'repo')} && {text})" if cmd[0] == "feast" else text


def copy_shown(work: Path) -> str:
    """The shell equivalent of the copy of feature_repo's definitions the run starts from."""
    repo = _relative(work / "repo")
    return (f"mkdir -p {repo} && cp " + " ".join(f"feature_repo/{name}" for name in DEFINITIONS)
            + f" {repo}/")


def run(cmd: list[str], work: Path) -> int:
    print(f"$ {shown(cmd, work)}", flush=True)
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]],
                          cwd=work / "repo" if cmd[0] == "feast" else None).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seeds", type=int, default=None,
                        help="default 1 (--feed: its criteria's)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the models' own")
    parser.add_argument("--work", type=Path, default=None,
                        help="default runs/bench-quality-<preset> (--spread: bench-spread-)")
    parser.add_argument("--gates", type=Path, default=GATES)
    parser.add_argument("--record", action="store_true",
                        help="write the gates from this run instead of checking them")
    parser.add_argument("--spread", action="store_true",
                        help="the multi-scenario experiment alone on both backbones, ungated")
    parser.add_argument("--rolling", action="store_true",
                        help="the rolling evaluation of benchmarks/rolling_gates.json")
    parser.add_argument("--feed", action="store_true",
                        help="the history and retrieval criteria of benchmarks/feed_gates.json")
    parser.add_argument("--online", action="store_true",
                        help="the simulated online A/B test of benchmarks/online_gates.json")
    args = parser.parse_args()
    if args.rolling or args.feed or args.online:
        kind = "rolling" if args.rolling else "online" if args.online else "feed"
        return criteria_main(kind, (args.work or ROOT / "runs" / f"bench-{kind}").resolve(),
                             args.seeds)
    args.seeds = args.seeds or 1
    kind = "spread" if args.spread else "quality"
    work = (args.work or ROOT / "runs" / f"bench-{kind}-{args.preset}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    steps = commands(args.preset, args.seeds, args.epochs, work, args.spread)
    data_done = (work / "ds" / "meta.json").is_file()
    if not data_done:
        shutil.rmtree(work / "repo", ignore_errors=True)  # a killed earlier run's
        print(f"$ {copy_shown(work)}", flush=True)
        copy_definitions(ROOT / "feature_repo", work / "repo")
    for cmd in steps:
        if data_done and cmd[:2] != ["recsys", "experiment"]:
            print(f"reusing {shown(cmd, work)}", flush=True)
            continue
        if (rc := run(cmd, work)) != 0:
            return rc
    if args.spread:
        write_json({"preset": args.preset, "seeds": args.seeds, "epochs": args.epochs,
                    "commands": [copy_shown(work), *(shown(c, work) for c in steps)],
                    "machine": machine_facts(),
                    "finished": datetime.datetime.now(datetime.timezone.utc).isoformat()},
                   work / SPREAD / "spread.json")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py"), "spread",
                        str(work / SPREAD)], check=True)
        return 0
    folders = [work / e for e in EXPERIMENTS]
    gate = ["recsys", "experiment", "gate", *map(str, folders), "--gates", str(args.gates)]
    # the commit and the tree as the runs left them: --record writes the gates' file, which
    # would make every recorded part read "with uncommitted changes"
    machine = machine_facts()
    if args.record and (rc := run([*gate, "--record", "--force"], work)) != 0:
        return rc
    # the verdict `recsys experiment gate` prints, kept for the rendered part
    try:
        cells = gates.check(gates.load_results(folders), gates.read_gates(args.gates))
    except RecsysError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [c.line() for c in cells if not c.passed]
    for c in cells:
        print(c.line())
    print(gates.verdict(cells))
    shown_gates = args.gates.resolve()
    write_json({"preset": args.preset, "seeds": args.seeds, "epochs": args.epochs,
                "commands": [copy_shown(work), *(shown(c, work) for c in steps),
                             shown(gate, work)],
                "gates": str(shown_gates.relative_to(ROOT)
                             if shown_gates.is_relative_to(ROOT) else shown_gates),
                "recorded": args.record, "cells": len(cells), "passed": len(cells) - len(failed),
                "failed": failed, "experiments": list(EXPERIMENTS), "machine": machine,
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat()},
               work / "quality.json")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py"), "quality",
                    str(work)], check=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
