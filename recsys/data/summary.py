"""What was generated, as numbers and as a table: rows, users, items, positive rate and Bayes
AUC per scenario, and the cold-start counts of the validation and test days."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from recsys.data.store import connect
from recsys.dataset.split import cold_start_flags_sql, train_days
from recsys.eval.metrics import auc
from recsys.schema import COLD_START_FLAGS, SCENARIO_NAMES


def summarize(offline: Path, meta: dict) -> dict:
    con = connect(offline, meta["start_epoch"])
    cols = con.execute("SELECT scenario, label, p_true FROM interactions").fetchnumpy()
    scenarios = {}
    for code, name in SCENARIO_NAMES.items():
        mask = cols["scenario"] == code
        scenarios[str(code)] = {
            "name": name, "rows": int(mask.sum()), "share": float(mask.mean()),
            "positive_rate": float(cols["label"][mask].mean()) if mask.any() else None,
            "bayes_auc": auc(cols["label"][mask], cols["p_true"][mask])}
    users, items = con.execute(
        "SELECT count(DISTINCT user_id), count(DISTINCT item_id) FROM interactions").fetchone()
    flags = cold_start_flags_sql("interactions", meta["n_days"])
    sums = ", ".join(f"sum({f}::INT), count(DISTINCT CASE WHEN {f} THEN "
                     f"{'user_id' if f.endswith('user') else 'item_id'} END)"
                     for f in COLD_START_FLAGS)
    cold = {}
    for split, cond in (("val", f"= {train_days(meta['n_days'])}"),
                        ("test", f"> {train_days(meta['n_days'])}")):
        row = con.execute(f"""SELECT count(*), {sums} FROM ({flags}) f
                              JOIN interactions i USING (request_id)
                              WHERE f.day_index {cond}""").fetchone()
        cold[split] = {"rows": row[0], **{
            flag: {"rows": int(row[1 + 2 * k] or 0), "entities": int(row[2 + 2 * k] or 0)}
            for k, flag in enumerate(COLD_START_FLAGS)}}
    con.close()
    return {"rows": int(cols["label"].size), "users": int(users), "items": int(items),
            "positive_rate": float(cols["label"].mean()),
            "bayes_auc": auc(cols["label"], cols["p_true"]),
            "scenarios": scenarios, "cold_start": cold}


def print_summary(meta: dict, console: Console | None = None) -> None:
    console = console or Console()
    s = meta["summary"]
    source = f"imported ({meta['import']['format']})" if "import" in meta else \
        f"synthetic AntM2C: preset {meta['preset']}, seed {meta['seed']}"
    table = Table(title=f"{source}, {meta['n_days']} days from {meta['start'][:10]}")
    for col in ("scenario", "rows", "share", "positive rate", "Bayes AUC"):
        table.add_column(col, justify="right" if col != "scenario" else "left")
    for code, sc in s["scenarios"].items():
        table.add_row(f"{code} {sc['name']}", f"{sc['rows']:,}", f"{sc['share']:.3f}",
                      _num(sc["positive_rate"]), _num(sc["bayes_auc"]))
    table.add_row("all", f"{s['rows']:,}", "1.000", _num(s["positive_rate"]),
                  _num(s["bayes_auc"]), style="bold")
    console.print(table)
    console.print(f"users {s['users']:,} (of {meta['n_users']:,}), items {s['items']:,} "
                  f"(of {meta['n_items']:,})")
    cold = Table(title="cold start: rows (distinct users / items), relative to the training days")
    cold.add_column("split")
    cold.add_column("rows", justify="right")
    for flag in COLD_START_FLAGS:
        cold.add_column(flag.replace("_", " "), justify="right")
    for split, c in s["cold_start"].items():
        cold.add_row(split, f"{c['rows']:,}", *(
            f"{c[f]['rows']:,} ({c[f]['entities']:,})" for f in COLD_START_FLAGS))
    console.print(cold)


def _num(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.4f}"
