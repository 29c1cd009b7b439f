"""Experiment results and runs as markdown tables: the console's and the reports'. Light to
import (no numpy, no matplotlib): the plots are eval/plots.py."""

from __future__ import annotations

from pathlib import Path

from recsys.files import write_text


def header(results: dict) -> list[str]:
    names = results["names"]
    return [f"{c} {names[c]}" if c in names else c for c in results["columns"]]


def value(cell: dict, signed: bool = False) -> str:
    """A mean over seeds (`experiment.mean_std`), with its spread where there is one: one seed
    has none."""
    if cell["mean"] is None:
        return "-"
    text = f"{cell['mean']:+.4f}" if signed else f"{cell['mean']:.4f}"
    return f"{text} ± {cell['std']:.4f}" if len(cell.get("values", ())) > 1 else text


def over_seeds(results: dict) -> str:
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
    lines = ["| model | " + " | ".join(header(results)) + " |",
             "| --- |" + " ---: |" * len(cols)]
    for name, m in models.items():
        cells = []
        for c in cols:
            mean = m[key][c]["mean"]
            text = value(m[key][c])
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


def speed_rows(models: dict) -> str:
    return "\n".join(f"| {name} | {m['examples_per_s']:,.0f} |" for name, m in models.items())


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


def serving_table(report: dict) -> str:
    """`recsys plan --serving`'s answer: one replica's memory, table by table, and whether it
    fits the memory given."""
    req = report["request"]

    def size(b: int) -> str:
        return f"{b / 2 ** 30:,.2f} GB" if b >= 2 ** 30 else f"{b / 2 ** 20:,.1f} MB"

    lines = [f"{req['preset']} preset, model {req['model']}, dim {req['dim']} {req['dtype']}: "
             f"one serving replica (each of `recsys serve --workers N` holds one)", "",
             "| part | rows | size |", "| --- | ---: | ---: |"]
    for t in sorted(report["tables"], key=lambda t: -t["bytes"]):
        if t["bytes"] >= 2 ** 20:
            lines.append(f"| table {t['table']} (dim {t['dim']}) | {t['rows']:,} | "
                         f"{size(t['bytes'])} |")
    small = [t for t in report["tables"] if t["bytes"] < 2 ** 20]
    if small:
        lines.append(f"| {len(small)} tables under 1 MB | {sum(t['rows'] for t in small):,} | "
                     f"{size(sum(t['bytes'] for t in small))} |")
    lines += [f"| dense weights | | {size(report['dense_bytes'])} |",
              f"| item cache | | {size(report['cache_bytes'])} |",
              f"| **replica** | | **{size(report['replica_bytes'])}** |"]
    verdict, share = "FITS" if report["fits"] else "DOES NOT FIT", \
        report["replica_bytes"] / (req["memory_gb"] * 2 ** 30)
    tables = f"`recsys export --dtype {req['dtype']}`'s rows (no optimizer state)" \
        if report["exported"] else "weights + row-wise Adagrad state (the trained module is " \
        "served)"
    lines.append(f"\n{verdict} in {req['memory_gb']:g} GB ({share:.1%}); tables: {tables}, "
                 f"dense: float32 weights")
    return "\n".join(lines)


def gain_table(results: dict) -> str:
    """An experiment's paired AUC gains: mean ± std over seeds, signed."""
    cols = results["columns"]
    lines = ["| gain | " + " | ".join(header(results)) + " |",
             "| --- |" + " ---: |" * len(cols)]
    for name, g in results["gains"].items():
        cells = [value(g["auc"][col], signed=True) for col in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)







def paired_report(results: dict, path: Path, title: str, about: str, gains: str,
                        plot: str) -> None:
    """The report of an experiment of paired arms: its AUC, the paired gains, logloss, speed."""
    speed = speed_rows(results["models"])
    text = f"""# {title}

Dataset `{results['dataset']}`, {results['seeds']} seed(s); test split; {over_seeds(results)}.
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


