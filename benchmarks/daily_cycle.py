"""One day of a growing log, step by step, against the same steps over every day before it:
the wall time and peak RSS (`/usr/bin/time -v`) of each command.

    python benchmarks/daily_cycle.py --preset medium --out /tmp/cycle [--days 10]

The world's first days-1 days are generated, applied, materialized, built and trained on from
scratch (what a full rebuild and retrain costs); then its last day is appended, built as a
one-day window, trained on from the previous run (`--init-from`) and materialized
incrementally (what a day costs). Prints one table, writes OUT/daily_cycle.json and renders it
into benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recsys.data.presets import START, get_preset  # noqa: E402
from recsys.features.feature_store import copy_definitions  # noqa: E402
from recsys.provenance import machine_facts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRAIN = ("--model", "mmoe", "--epochs", "1", "--batch-size", "16384",
         "--checkpoint-every", "1000")


def timed(label: str, args: list[str], cwd: Path, log: Path) -> dict:
    """Run one command under /usr/bin/time -v; its wall seconds and peak RSS."""
    print(f"{time.strftime('%H:%M:%S')} {label}: {' '.join(args)}", flush=True)
    with open(log, "a") as out:
        out.write(f"\n==== {label}: {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(["/usr/bin/time", "-v", *args], cwd=cwd, stdout=out,
                              stderr=subprocess.PIPE, text=True)
        out.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"{label} failed ({proc.returncode}); see {log}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = wall.groups()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"step": label, "command": " ".join(args),
            "wall_s": round(int(h or 0) * 3600 + int(m) * 60 + float(s), 1), "rss_kib": rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--days", type=int, default=None, help="The world's days (the preset's).")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    preset = get_preset(args.preset, days=args.days)
    n = preset.n_days
    day = [(START + timedelta(days=d)).date().isoformat() for d in range(n)]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=False)
    repo, log = copy_definitions(ROOT / "feature_repo", out / "repo"), out / "commands.log"
    recsys, feast = str(BIN / "recsys"), str(BIN / "feast")
    world = ["--preset", args.preset, "--days", str(n), "--repo", str(repo), "--workers", "2"]
    steps = []

    def step(kind, label, argv, cwd=ROOT):
        steps.append({"kind": kind, **timed(label, argv, cwd, log)})

    step("all days", f"generate days 0..{n - 2}", [recsys, "generate", *world,
                                                    "--until", str(n - 1)])
    step("all days", "feast apply", [feast, "apply"], repo)
    step("all days", f"materialize days 0..{n - 2}",
         [feast, "materialize", f"{day[0]}T00:00:00", f"{day[n - 2]}T23:59:59"], repo)
    step("all days", f"build days 0..{n - 2}",
         [recsys, "build-dataset", "--repo", str(repo), "--out", str(out / "ds-all")])
    step("all days", f"train on days 0..{n - 2}",
         [recsys, "train", *TRAIN, "--dataset", str(out / "ds-all"), "--out",
          str(out / "run-all")])
    step("one day", f"append day {n - 1}", [recsys, "generate", *world, "--until", str(n),
                                             "--append"])
    step("one day", "feast apply", [feast, "apply"], repo)
    step("one day", f"materialize-incremental day {n - 1}",
         [feast, "materialize-incremental", f"{day[n - 1]}T23:59:59"], repo)
    step("one day", f"build day {n - 1}",
         [recsys, "build-dataset", "--repo", str(repo), "--out", str(out / "ds-day"),
          "--from", day[n - 1], "--to", day[n - 1]])
    step("one day", f"update on day {n - 1} (--init-from)",
         [recsys, "train", *TRAIN, "--dataset", str(out / "ds-day"), "--init-from",
          str(out / "run-all"), "--out", str(out / "run-day")])
    (out / "daily_cycle.json").write_text(json.dumps(
        {"preset": args.preset, "days": n, "steps": steps, "machine": machine_facts(),
         "finished": datetime.datetime.now(datetime.timezone.utc).isoformat()}, indent=2))
    print("\n| kind | step | wall s | peak RSS (KiB) |\n| --- | --- | ---: | ---: |")
    for s in steps:
        print(f"| {s['kind']} | {s['step']} | {s['wall_s']:,.1f} | {s['rss_kib']:,} |")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py"), "cycle", str(out)],
                   check=True)


if __name__ == "__main__":
    main()
