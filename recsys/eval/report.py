"""Experiment results as a markdown table and a PNG plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from recsys.files import write_text  # noqa: E402


def _header(results: dict) -> list[str]:
    names = results["names"]
    return [f"{c} {names[c]}" if c in names else c for c in results["columns"]]


def _value(cell: dict, signed: bool = False) -> str:
    """A mean over seeds (`experiment.mean_std`), with its spread where there is one: one seed
    has none."""
    if cell["mean"] is None:
        return "-"
    text = f"{cell['mean']:+.4f}" if signed else f"{cell['mean']:.4f}"
    return f"{text} ± {cell['std']:.4f}" if len(cell.get("values", ())) > 1 else text


def _over_seeds(results: dict) -> str:
    seeds = results["seeds"]
    return "mean ± std over seeds" if seeds > 1 else "one seed"


def auc_table(results: dict, key: str | None = None) -> str:
    """Rows = models, columns = scenarios + overall, mean ± std; best per column in bold. `key`:
    the measure (default: the results' own, AUC unless they say otherwise)."""
    key = key or results.get("metric", "auc")
    cols, models = results["columns"], results["models"]
    better = min if key == "logloss" else max
    best = {}
    for c in cols:  # an AUC at or below chance (0.5) is never the best of anything
        means = [m[key][c]["mean"] for m in models.values() if m[key][c]["mean"] is not None
                 and (key != "auc" or m[key][c]["mean"] > 0.5)]
        best[c] = better(means) if means else None
    lines = ["| model | " + " | ".join(_header(results)) + " |",
             "| --- |" + " ---: |" * len(cols)]
    for name, m in models.items():
        cells = []
        for c in cols:
            mean = m[key][c]["mean"]
            text = _value(m[key][c])
            if mean is not None and mean == best[c]:
                text = f"**{text}**"
            elif _within_noise(m[key][c], [x[key][c] for x in models.values()
                                            if x[key][c]["mean"] == best[c]]):
                text += " ≈"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if key == "auc" and any(v is not None for v in results["oracle_auc"].values()):
        lines.append("| *Bayes (p_true)* | " + " | ".join(
            "-" if results["oracle_auc"][c] is None else f"*{results['oracle_auc'][c]:.4f}*"
            for c in cols) + " |")
    for name, ceiling in (results.get("ceiling") or {}).items():  # a ceiling of the measure
        if key in ceiling["overall"]:
            lines.append(f"| *ceiling: {name}* | " + " | ".join(
                f"*{ceiling[c][key]:.4f}*" if c in ceiling else "-" for c in cols) + " |")
    lines.append(f"| *{results.get('rows_label', 'test rows')}* | " + " | ".join(
        f"{results['test_rows'][c]:,}" for c in cols) + " |")
    return "\n".join(lines)


def _within_noise(cell: dict, best: list[dict]) -> bool:
    """Whether a cell's mean is within the spread over seeds (the larger std of the two) of the
    best's: their difference is noise, not a ranking."""
    if cell["mean"] is None or not best or not cell.get("std"):
        return False
    spread = max(cell["std"], best[0].get("std") or 0.0)
    return abs(best[0]["mean"] - cell["mean"]) <= spread


def write_report(results: dict, path: Path) -> None:
    speed = _speed_rows(results["models"])
    text = f"""# Multi-scenario experiment

Dataset `{results['dataset']}`, {results['seeds']} seed(s); test split; {_over_seeds(results)}.
Bold: best model per column (above chance); ≈: within the spread over seeds of the best (a
difference within noise). The Bayes row (generated data only) is the AUC of the
generator's true click probability, the ceiling no model can pass.

## AUC

{auc_table(results, 'auc')}

{_gains_section(results)}## Logloss

{auc_table(results, 'logloss')}

## Training speed (examples/s)

| model | examples/s |
| --- | ---: |
{speed}

![per-scenario AUC](per_scenario_auc.png)
"""
    write_text(text, path)


def _gains_section(results: dict) -> str:
    if not results.get("gains"):
        return ""
    return f"""## AUC gain over dnn (same seed, the model minus dnn)

{gain_table(results)}

"""


def plot_per_scenario(results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5))
    _bars(ax, results)
    ax.set_title(f"Per-scenario AUC, {_over_seeds(results)} ({results['seeds']} seed(s))")
    _save(fig, path)


def _bars(ax, results: dict) -> None:
    """Grouped bars: one group per column, one bar per model (mean ± std), Bayes markers."""
    cols, models = results["columns"], results["models"]
    x = _grouped_bars(ax, cols, {name: m["auc"] for name, m in models.items()})
    oracle = [results["oracle_auc"][c] or np.nan for c in cols]
    if any(o == o for o in oracle):  # generated data: its true click probability's AUC
        ax.scatter(x, oracle, marker="_", s=900, color="black", label="Bayes (p_true)",
                   zorder=3)
    values = [v for m in models.values() for c in cols if (v := m["auc"][c]["mean"])]
    low = min(values) - 0.02 if values else 0.5
    high = max([o for o in oracle if o == o] + [v + 0.01 for v in values] + [low + 0.05])
    ax.set_ylim(low, high + 0.01)
    many = len(cols) > 6  # long labels would overlap
    ax.set_xticks(x, _header(results), rotation=20 if many else 0,
                  ha="right" if many else "center")
    ax.set_ylabel("test AUC")
    ax.legend(ncol=min(len(models) + 1, 4), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.22 if many else -0.08), frameon=False)


def _grouped_bars(ax, cols: list[str], series: dict[str, dict]) -> np.ndarray:
    """One group of bars per column, one bar per series ({column: {"mean", "std"}}), with the
    std as error bars; returns the groups' x positions."""
    x = np.arange(len(cols))
    width = 0.8 / max(len(series), 1)
    for i, (name, cells) in enumerate(series.items()):
        means = [np.nan if cells[c]["mean"] is None else cells[c]["mean"] for c in cols]
        stds = [cells[c]["std"] or 0.0 for c in cols]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=name)
    return x


def _speed_rows(models: dict) -> str:
    return "\n".join(f"| {name} | {m['examples_per_s']:,.0f} |" for name, m in models.items())


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def metrics_table(metrics: dict) -> str:
    """One run's test metrics as a small markdown table."""
    rows = [("overall", metrics["overall"], metrics["oracle"]["overall_auc"])]
    rows += [(f"{c} {m['name']}", m, metrics["oracle"]["scenarios"][c])
             for c, m in metrics["scenarios"].items()]
    rows += [(k, m, metrics["oracle"]["subsets"][k]) for k, m in metrics["subsets"].items()]
    known = any(b is not None and b == b for _, _, b in rows)  # generated data's p_true

    def fmt(v):
        return "-" if v is None or v != v else f"{v:.4f}"

    lines = ["| slice | n | AUC | logloss |" + (" Bayes AUC |" if known else ""),
             "| --- | ---: | ---: | ---: |" + (" ---: |" if known else "")]
    for name, m, bayes in rows:
        lines.append(f"| {name} | {m['n']:,} | {fmt(m['auc'])} | {fmt(m['logloss'])} |"
                     + (f" {fmt(bayes)} |" if known else ""))
    return "\n".join(lines)


def plan_table(report: dict) -> str:
    """`recsys plan`'s answer: the request, the plan per table and per rank, the verdict."""
    req = report["request"]
    gb = (lambda b: f"{b / 2 ** 30:,.2f}")
    head = (f"{req['preset']} preset, {report['tables']} tables, dim {req['dim']} "
            f"{req['dtype']}, model {req['model']}, batch {req['batch_size']:,} per rank; "
            f"{req['world_size']} x {req['device']} rank(s) of {req['memory_gb']:g} GB"
            + (f" (+ UVM over {req['host_memory_gb']:g} GB host memory)" if req["uvm"] else ""))
    if not report["fits"]:
        fixes = "; ".join(report["remedies"]) or "none of fp16 tables, up to 8x the ranks, " \
            "a quarter of the dim or UVM caching"
        return (f"{head}\nDOES NOT FIT: {report['reason']}\nthe planner finds a plan with: "
                f"{fixes}")
    lines = [head, "", "| table | rows | sharding | kernel | ranks | GB per rank |",
             "| --- | ---: | --- | --- | --- | ---: |"]
    small = [t for t in report["shards"] if max(t["bytes_per_rank"].values()) < 2 ** 20]
    for t in sorted(report["shards"], key=lambda t: -t["rows"]):
        if t in small:
            continue
        ranks = t["ranks"]
        where = ",".join(map(str, ranks)) if len(ranks) <= 4 else f"{ranks[0]}-{ranks[-1]}"
        lines.append(f"| {t['table']} | {t['rows']:,} | {t['sharding']} | {t['kernel']} | "
                     f"{where} | {gb(max(t['bytes_per_rank'].values()))} |")
    if small:
        total = sum(b for t in small for b in t["bytes_per_rank"].values())
        lines.append(f"| {len(small)} tables under 1 MB | {sum(t['rows'] for t in small):,} | "
                     f"{', '.join(sorted({t['sharding'] for t in small}))} | - | - | "
                     f"{total / 2 ** 20:,.2f} MB in all |")
    lines += ["", "| rank | GB (tables + optimizer + dense) |", "| ---: | ---: |"]
    lines += [f"| {r} | {gb(b)} |" for r, b in enumerate(report["rank_bytes"])]
    top = max(report["rank_bytes"])
    lines.append(f"\nFITS: the fullest rank holds {gb(top)} GB of the {gb(report['usable_bytes'])}"
                 f" GB the planner may use per rank ({top / report['usable_bytes']:.0%}); "
                 f"tables: weights + row-wise Adagrad state; dense: weights + Adam moments")
    return "\n".join(lines)


def write_cold_start_report(results: dict, path: Path) -> None:
    subsets, warmup = results["subsets"], results["warmup"]
    per_scenario = "\n\n".join(f"### {flag}\n\n{auc_table(table)}"
                               for flag, table in results["per_scenario"].items())
    speed = "\n".join(f"| {name} | {v:,.0f} |" for name, v in results["examples_per_s"].items())
    text = f"""# Cold-start experiment

Dataset `{results['dataset']}`, {results['seeds']} seed(s); test split; {_over_seeds(results)}.
Zero-shot: the user / item has no training interaction; few-shot: 1 to 4 of them. Bold: best
model per column. The Bayes row (generated data only) is the AUC of the generator's true
click probability on the same rows. A cell with fewer than 100 rows (or one class) has no AUC ("-").

## AUC per cold-start subset

{auc_table(subsets, 'auc')}

## Logloss per cold-start subset

{auc_table(subsets, 'logloss')}

## AUC per subset and scenario

{per_scenario}

## Warm-up of new items

{warmup['items']:,} new items (no training interaction) with more than {3 * warmup['k']} rows
on the validation and test days. Per item, its first {warmup['k']} rows are warm-up batch a,
the next {warmup['k']} batch b, the next {warmup['k']} batch c; its later rows are the
evaluation set. AUC cold, then after each batch (only the new items' ID embeddings move).

{auc_table(warmup, 'auc')}

## Training speed (examples/s)

| model | examples/s |
| --- | ---: |
{speed}

![cold-start AUC and warm-up](cold_start.png)
"""
    write_text(text, path)


def plot_cold_start(results: dict, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5),
                                      gridspec_kw={"width_ratios": [3, 2]})
    _bars(left, results["subsets"])
    left.set_title(f"Cold-start subsets, {_over_seeds(results)} ({results['seeds']} seed(s))")
    warmup = results["warmup"]
    stages = warmup["columns"]
    for name, m in warmup["models"].items():
        means = [m["auc"][s]["mean"] or np.nan for s in stages]
        stds = [m["auc"][s]["std"] or 0.0 for s in stages]
        right.errorbar(stages, means, yerr=stds, marker="o", capsize=3, label=name)
    right.set_ylabel("AUC on the new items' later rows")
    right.set_title(f"Warm-up of {warmup['items']:,} new items")
    right.legend(fontsize=8)
    _save(fig, path)


def gain_table(results: dict) -> str:
    """An experiment's paired AUC gains: mean ± std over seeds, signed."""
    cols = results["columns"]
    lines = ["| gain | " + " | ".join(_header(results)) + " |",
             "| --- |" + " ---: |" * len(cols)]
    for name, g in results["gains"].items():
        cells = [_value(g["auc"][col], signed=True) for col in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


MULTI_MODAL_ABOUT = """`+text`: the model also gets the sentence embeddings of the user's and
the item's text (`recsys encode-text`), each group projected into one more embedding slot;
`+image`: the item's image vector too. Zero-shot: the user / item has no training interaction."""

HISTORY_ABOUT = """`+history`: the model also reads the user's last clicks before each row (the
user_history view), pooled by DIN's target attention over the candidate item; `+history-mean`:
by their mean; `din` reads it by nature. Few-shot / zero-shot users: 1-4 / no training
interactions (a few-shot user's history is all the model knows of him)."""


def write_multi_modal_report(results: dict, path: Path) -> None:
    write_paired_report(results, path, "Multi-modal experiment", MULTI_MODAL_ABOUT,
                        "AUC gain from the modality (same model and seed, with minus without)",
                        "multi_modal.png")


def write_history_report(results: dict, path: Path) -> None:
    write_paired_report(results, path, "History experiment", HISTORY_ABOUT,
                        "AUC gain from the history (same seed, with minus the model without)",
                        "history.png")


RETRIEVAL_ABOUT = """Each click of the test split (the days after training) ranked exactly among
its scenario's items (every item scored) by the user's vector of that row; popularity ranks them
by their clicks in the training split. The ceiling rows (generated data only) rank them by the
generator's own chance of the click, and by the chance of being shown alone: no model passes
the first on average."""


def write_retrieval_report(results: dict, path: Path) -> None:
    tables = "\n\n".join(f"## {key.replace('recall', 'Recall').replace('ndcg', 'NDCG')}\n\n"
                          f"{auc_table(results, key)}"
                          for key in next(iter(results["models"].values())))
    text = f"""# Retrieval experiment

Dataset `{results['dataset']}`, {results['seeds']} seed(s); {_over_seeds(results)}.
{RETRIEVAL_ABOUT} Bold: best per column (≈: within the seeds' spread of it).

{tables}

![Recall@K](retrieval.png)
"""
    write_text(text, path)


def plot_retrieval(results: dict, path: Path) -> None:
    """Overall Recall@K against K for each arm, popularity and the ceiling; and each
    scenario's Recall@K of the gated K."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 5))
    ks = results["ks"]
    for name, m in results["models"].items():
        means = [m[f"recall@{k}"]["overall"]["mean"] for k in ks]
        stds = [m[f"recall@{k}"]["overall"]["std"] or 0.0 for k in ks]
        left.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=name,
                      linestyle="--" if name == "popularity" else "-")
    for name, ceiling in (results.get("ceiling") or {}).items():
        left.plot(ks, [ceiling["overall"][f"recall@{k}"] for k in ks], ":", marker="x",
                  color="black" if "chance" in name else "gray", label=f"ceiling: {name}")
    left.set_xscale("log")
    left.minorticks_off()
    left.set_xticks(ks, [str(k) for k in ks])
    left.set_xlabel("K (items retrieved)")
    left.set_ylabel("Recall@K of the test clicks")
    left.set_title(f"Overall, {_over_seeds(results)}")
    left.legend(fontsize=8)
    key, cols = results["metric"], results["columns"]
    x = _grouped_bars(right, cols, {name: m[key] for name, m in results["models"].items()})
    right.set_xticks(x, _header(results), rotation=20, ha="right")
    right.set_ylabel(key.replace("recall", "Recall"))
    right.set_title(f"{key.replace('recall', 'Recall')} per scenario")
    right.legend(fontsize=8)
    _save(fig, path)


def write_paired_report(results: dict, path: Path, title: str, about: str, gains: str,
                        plot: str) -> None:
    """The report of an experiment of paired arms: its AUC, the paired gains, logloss, speed."""
    speed = _speed_rows(results["models"])
    text = f"""# {title}

Dataset `{results['dataset']}`, {results['seeds']} seed(s); test split; {_over_seeds(results)}.
{about} Bold: best per column (above chance; ≈: within the seeds' spread of it); the Bayes
row (generated data only) is the AUC of the generator's true click probability.

## AUC

{auc_table(results, 'auc')}

## {gains}

{gain_table(results)}

## Logloss

{auc_table(results, 'logloss')}

## Training speed (examples/s)

| model | examples/s |
| --- | ---: |
{speed}

![AUC and gains]({plot})
"""
    write_text(text, path)


def plot_paired(results: dict, path: Path, gain: str = "the modality") -> None:
    """The AUC of every arm and, beside it, the paired gains."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 5))
    _bars(left, results)
    left.set_title(f"AUC, {_over_seeds(results)} ({results['seeds']} seed(s))")
    cols = results["columns"]
    x = _grouped_bars(right, cols, {name: g["auc"] for name, g in results["gains"].items()})
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(x, _header(results), rotation=20, ha="right")
    right.set_ylabel("AUC gain (with − without)")
    right.set_title(f"Gain from {gain}, paired by seed")
    right.legend(fontsize=8)
    _save(fig, path)


def write_rolling_report(results: dict, path: Path) -> None:
    """The rolling evaluation: the mean over days per column, then each day's next-day AUC."""
    rows = "\n".join(
        f"| {d['day']} | {d['evaluated_on']} | {d['arm']} | {_cell_auc(d['overall'])} | "
        f"{_cell_auc(d['zero_shot_user'])} | {_cell_auc(d['zero_shot_item'])} | "
        f"{d['examples']:,} | {d['seconds']:.1f} |" for d in results["days"])
    totals = "\n".join(f"| {arm} | {t['examples']:,} | {t['seconds']:.1f} |"
                       for arm, t in results["totals"].items())
    text = f"""# Rolling evaluation

Model `{results['model']}` on `{results['repo']}`, from {results['start']}.
Each day d, *update* trains the model of day d-1 on day d alone and *retrain* a fresh model on
every day up to d (refit every {results['retrain_every']} day(s)), {results['epochs']} epoch(s)
each; both are evaluated on day d+1 (the "test rows" below are that day's). The chain starts
from the retrain run of the first day, so the means are over the days after it:
{results['seeds']}. zero_shot_user / zero_shot_item: the users and items of day d+1 never in
the log before it.

## Next-day AUC, mean ± std over days

{auc_table(results, 'auc')}

## Trained (the days after the start)

| arm | examples | seconds |
| --- | ---: | ---: |
{totals}

update trained {results['examples_share']:.1%} of retrain's examples.

## Each day

| day | evaluated on | arm | AUC | new users | new items | examples | seconds |
| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |
{rows}

![next-day AUC](rolling_auc.png)
"""
    write_text(text, path)


def _cell_auc(cell: dict) -> str:
    return "-" if cell["auc"] is None else f"{cell['auc']:.4f}"


def plot_rolling(results: dict, path: Path) -> None:
    """Next-day AUC over the days, per arm: overall (solid) and the day's new users (dashed)."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, arm in enumerate(results["totals"]):
        days = [d for d in results["days"] if d["arm"] == arm]
        x = [d["evaluated_on"] for d in days]
        for key, style in (("overall", "-"), ("zero_shot_user", "--")):
            y = [np.nan if d[key]["auc"] is None else d[key]["auc"] for d in days]
            ax.plot(x, y, style, marker="o", color=f"C{i}", label=f"{arm} ({key})")
    ax.set_xlabel("evaluated on (the day after training)")
    ax.set_ylabel("AUC")
    ax.set_title(f"Rolling evaluation of {results['model']}: next-day AUC")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8, frameon=False)
    _save(fig, path)
