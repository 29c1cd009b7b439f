"""`recsys experiment retrieval`: two_tower alone, with the user's history (`--history mean`)
and, if asked, with text vectors, over K seeds; each run indexed (`recsys index`, so it can be
served) and measured by its retrieval metrics: of every click of the test split, the exact rank
of its item among its scenario's items, as Recall@K and NDCG@K overall and per scenario; beside
them the training split's popularity and, on generated data, the generator's own ceiling
(eval.ceiling). Finished runs and indexes are reused."""

from __future__ import annotations

from pathlib import Path

from recsys.config import Arm
from recsys.eval.report import auc_table, over_seeds
from recsys.experiments.context import Context
from recsys.experiments.spec import Experiment, Option
from recsys.files import write_text

ARMS = (Arm("two_tower"), Arm("two_tower", history="mean"))
METRIC = "recall@100"  # the gated one
POPULARITY = "popularity"


class Retrieval(Experiment):
    name = "retrieval"
    about = ("two_tower with and without the user's history, each run indexed: Recall@K and "
             "NDCG@K of the test clicks beside popularity (and the generator's ceiling on "
             "generated data).")
    plot_file = "retrieval.png"
    options = (Option("text", bool, False, "Also train each arm with text vectors."),)

    def arms(self, ctx: Context) -> dict[Arm, Arm | None]:
        """Each arm, and with `text` each again with text vectors."""
        texts = (Arm(a.model, ("text",), a.history) for a in ARMS)
        return dict.fromkeys((*ARMS, *(texts if ctx.options.get("text") else ())))

    def collect(self, ctx: Context) -> dict:
        from recsys.eval.ceiling import retrieval_ceiling
        from recsys.eval.retrieval import KS
        from recsys.experiments.training import mean_std, run_dir, train_arms

        arms = tuple(self.arms(ctx))
        names = [a.name for a in arms]
        runs = train_arms(ctx, arms)
        found = {a: [_indexed(run_dir(ctx.out, a, seed), ctx.force, ctx.log)
                     for seed in range(ctx.seeds)] for a in names}
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
        return {"experiment": self.name, "dataset": str(ctx.dataset), "seeds": ctx.seeds,
                "columns": list(columns), "names": {c: s["name"] for c, s in scenarios.items()},
                "metric": METRIC, "ks": list(KS), "models": models,
                "ceiling": retrieval_ceiling(ctx.dataset, KS),
                "oracle_auc": {c: None for c in columns}, "rows_label": "test clicks",
                "test_rows": {c: first[c]["test clicks"] if c in first else 0 for c in columns}}

    def report(self, results: dict, path: Path) -> None:
        tables = "\n\n".join(f"## {key.replace('recall', 'Recall').replace('ndcg', 'NDCG')}\n\n"
                              f"{auc_table(results, key)}"
                              for key in next(iter(results["models"].values())))
        write_text(f"""# Retrieval experiment

Dataset `{results['dataset']}`, {results['seeds']} seed(s); {over_seeds(results)}.
Each click of the test split (the days after training) ranked exactly among
its scenario's items (every item scored) by the user's vector of that row; popularity ranks them
by their clicks in the training split. The ceiling rows (generated data only) rank them by the
generator's own chance of the click, and by the chance of being shown alone: no model passes
the first on average. Bold: best per column (≈: within the seeds' spread of it).

{tables}

![Recall@K](retrieval.png)
""", path)

    def plot(self, results: dict, path: Path) -> None:
        """Overall Recall@K against K for each arm, popularity and the ceiling; and each
        scenario's Recall@K of the gated K."""
        from recsys.eval.plots import grouped_bars, plt, save
        from recsys.eval.report import header

        fig, (left, right) = plt.subplots(1, 2, figsize=(16, 5))
        ks = results["ks"]
        for name, m in results["models"].items():
            means = [m[f"recall@{k}"]["overall"]["mean"] for k in ks]
            stds = [m[f"recall@{k}"]["overall"]["std"] or 0.0 for k in ks]
            left.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=name,
                          linestyle="--" if name == POPULARITY else "-")
        for name, ceiling in (results.get("ceiling") or {}).items():
            left.plot(ks, [ceiling["overall"][f"recall@{k}"] for k in ks], ":", marker="x",
                      color="black" if "chance" in name else "gray", label=f"ceiling: {name}")
        left.set_xscale("log")
        left.minorticks_off()
        left.set_xticks(ks, [str(k) for k in ks])
        left.set_xlabel("K (items retrieved)")
        left.set_ylabel("Recall@K of the test clicks")
        left.set_title(f"Overall, {over_seeds(results)}")
        left.legend(fontsize=8)
        key, cols = results["metric"], results["columns"]
        x = grouped_bars(right, cols, {name: m[key] for name, m in results["models"].items()})
        right.set_xticks(x, header(results), rotation=20, ha="right")
        right.set_ylabel(key.replace("recall", "Recall"))
        right.set_title(f"{key.replace('recall', 'Recall')} per scenario")
        right.legend(fontsize=8)
        save(fig, path)


def _indexed(run: Path, force: bool, log) -> dict:
    """The run's retrieval metrics, indexing it first where it is not yet."""
    from recsys.retrieval.index import build_index, load_retrieval_metrics

    metrics = None if force else load_retrieval_metrics(run)
    if metrics is None:
        # measured only: the repo's feature store keeps the vectors a person indexed
        metrics = build_index(run, force=True, publish=False, log=log)["retrieval"]
    return metrics
