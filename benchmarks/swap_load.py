"""A hot swap under load: `recsys serve --watch RUNS` scored by CLIENTS concurrent clients while
a new run is moved into RUNS; requests/s, p50 and p99 latency and failures before, during (from
the move until the server names the new run) and after the swap.

    python benchmarks/swap_load.py --repo REPO --dataset DATASET --runs RUNS --new STAGED_RUN

RUNS holds the run served first; STAGED_RUN (outside RUNS) is moved in after `--phase` seconds.
Prints one table; the server's own log goes to RUNS/../swap-serve.log."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from serving import free_port  # noqa: E402

BIN = Path(sys.executable).parent
CLIENTS = 8


def bodies(dataset: Path, n: int = 200) -> list[dict]:
    """/score bodies of test rows: each row's user, scenario, item and context."""
    test = pads.dataset(sorted(str(p) for p in (dataset / "test").glob("*.parquet"))).head(n)
    context = [c for c in test.column_names if c.startswith("deep_features_")]
    rows = test.to_pylist()
    return [{"user_id": r["user_id"], "scenario": r["scenario"], "item_ids": [r["item_id"]],
             "context": {c: r[c] for c in context}} for r in rows]


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--repo", type=Path, required=True)
    args.add_argument("--dataset", type=Path, required=True)
    args.add_argument("--runs", type=Path, required=True)
    args.add_argument("--new", type=Path, required=True)
    args.add_argument("--phase", type=float, default=15.0, help="seconds before and after")
    a = args.parse_args()
    port, requests = free_port(), bodies(a.dataset)
    log = a.runs.parent / "swap-serve.log"
    server = subprocess.Popen([str(BIN / "recsys"), "serve", "--watch", str(a.runs), "--repo",
                               str(a.repo), "--port", str(port), "--watch-seconds", "1"],
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        done, stop = [], threading.Event()  # (start, end, status, run)

        def client(worker: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                i = worker
                while not stop.is_set():
                    start = time.perf_counter()
                    try:
                        r = c.post("/score", json=requests[i % len(requests)])
                        status, run = r.status_code, r.headers.get("x-recsys-run")
                    except httpx.TransportError:
                        status, run = 0, None
                    done.append((start, time.perf_counter(), status, run))
                    i += CLIENTS

        threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(a.phase)
        moved = time.perf_counter()
        target = a.runs / a.new.name
        shutil.move(a.new, target)
        while httpx.get(f"{url}/metadata").json()["run"] != str(target):
            time.sleep(0.05)
        swapped = time.perf_counter()
        time.sleep(a.phase)
        stop.set()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=60)

    print(f"{CLIENTS} clients, /score of one candidate; the new run loaded and checked for "
          f"{swapped - moved:.1f} s")
    print("| phase | seconds | requests | requests/s | p50 ms | p99 ms | failed | runs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for phase, lo, hi in (("before", began, moved), ("during", moved, swapped),
                          ("after", swapped, swapped + a.phase)):
        rows = [d for d in done if lo <= d[0] < hi]
        ms = np.array([(e - s) * 1000 for s, e, _, _ in rows])
        runs = sorted({Path(r).name for *_, r in rows if r})
        failed = sum(status != 200 for _, _, status, _ in rows)
        print(f"| {phase} | {hi - lo:.1f} | {len(rows):,} | {len(rows) / (hi - lo):,.0f} | "
              f"{np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} | {failed} | "
              f"{', '.join(runs)} |")


if __name__ == "__main__":
    main()
