"""`recsys experiment retrieval`: two_tower alone, with the user's history (`--history mean`)
and, if asked, with text vectors, over K seeds; each run indexed (`recsys index`, so it can be
served) and measured by its retrieval metrics: of every click of the test split, the exact rank
of its item among its scenario's items, as Recall@K and NDCG@K overall and per scenario; beside
them the training split's popularity and, on generated data, the generator's own ceiling
(eval.ceiling). Finished runs and indexes are reused, so a killed experiment continues."""

from __future__ import annotations

from pathlib import Path

from recsys.eval.ceiling import retrieval_ceiling
from recsys.eval.report import plot_retrieval, write_retrieval_report
from recsys.eval.retrieval import KS
from recsys.files import write_json
from recsys.retrieval.index import build_index, load_retrieval_metrics
from recsys.train.experiment import mean_std, run_dir, train_runs

ARMS = ("two_tower", "two_tower+history-mean")
METRIC = "recall@100"  # the gated one
POPULARITY = "popularity"


def arms(text: bool) -> tuple[str, ...]:
    """Each arm, and with `text` each again with text vectors."""
    return ARMS + tuple(a.replace("two_tower", "two_tower+text", 1) for a in ARMS) if text \
        else ARMS


def _indexed(run: Path, force: bool, log) -> dict:
    """The run's retrieval metrics, indexing it first where it is not yet."""
    metrics = None if force else load_retrieval_metrics(run)
    if metrics is None:
        # measured only: the repo's feature store keeps the vectors a person indexed
        metrics = build_index(run, force=True, publish=False, log=log)["retrieval"]
    return metrics


def retrieval(dataset: Path, out: Path, seeds: int = 1, text: bool = False,
              file: dict | None = None, flags: dict | None = None, force: bool = False,
              progress: bool = True, log=print) -> dict:
    names = arms(text)
    runs = train_runs(dataset, out, names, seeds, force, progress, log, file, flags)
    found = {a: [_indexed(run_dir(out, a, seed), force, log) for seed in range(seeds)]
             for a in names}
    scenarios = next(iter(runs.values()))[0]["scenarios"]  # code -> {"name", ...}
    code = {s["name"]: c for c, s in scenarios.items()}
    columns = (*scenarios, "overall")
    metrics = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]
    # each run's blocks by column (a scenario without test clicks has none)
    blocks = {a: [{"overall": {**m["overall"], "test clicks": m["test clicks"]},
                   **{code[name]: v for name, v in m["per_scenario"].items()}} for m in ms]
              for a, ms in found.items()}

    def stats(measured: list[dict], who: str) -> dict:
        return {metric: {col: mean_std([b[col][who][metric] for b in measured if col in b])
                         for col in columns} for metric in metrics}

    models = {arm: stats(bs, "model") for arm, bs in blocks.items()}
    models[POPULARITY] = stats(blocks[names[0]], "popularity")  # the same for every run
    first = blocks[names[0]][0]
    results = {"experiment": "retrieval", "dataset": str(dataset), "seeds": seeds,
               "columns": list(columns), "names": {c: s["name"] for c, s in scenarios.items()},
               "metric": METRIC, "ks": list(KS), "models": models,
               "ceiling": retrieval_ceiling(dataset, KS),
               "oracle_auc": {c: None for c in columns}, "rows_label": "test clicks",
               "test_rows": {c: first[c]["test clicks"] if c in first else 0 for c in columns}}
    write_json(results, out / "results.json")
    plot_retrieval(results, out / "retrieval.png")
    write_retrieval_report(results, out / "report.md")
    return results

