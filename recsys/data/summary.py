"""What was generated or imported, as numbers and as a table: rows, users, items, positive rate
and Bayes AUC per scenario, and the cold-start counts of the validation and test splits."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from recsys.data.offline import connect
from recsys.data.split import choose_split, train_counts_sql, \
    with_cold_start_flags
from recsys.metrics import auc_sql
from recsys.memory import GiB
from recsys.schema import COLD_START_FLAGS, INTERACTIONS, ITEM_ID, SCENARIO, USER_ID

SUMMARY_MEMORY = GiB  # DuckDB's budget for the summary's queries; it spills beyond
NAN = float("nan")


def summarize(offline: Path, meta: dict, scenarios: tuple[str, ...]) -> dict:
    """Every figure from DuckDB queries over the offline store (it spills beyond its budget):
    nothing here grows with the number of rows. `scenarios`: their names, by code."""
    con = connect(offline, meta["start_epoch"], memory_bytes=SUMMARY_MEMORY)
    per = {code: (n, pos) for code, n, pos in con.execute(
        "SELECT scenario, count(*), avg(label) FROM interactions GROUP BY scenario").fetchall()}
    # a Bayes AUC only where the data knows its true click probability (generated data)
    known = con.execute("SELECT count(p_true) > 0 FROM interactions").fetchone()[0]
    bayes = auc_sql(con, "interactions", by=SCENARIO) if known else {}
    total = sum(n for n, _ in per.values())
    per_scenario = {}
    for code, name in enumerate(scenarios):
        n, pos = per.get(code, (0, None))
        per_scenario[str(code)] = {"name": name, "rows": n, "share": n / total if total else 0.0,
                                "positive_rate": pos,
                                "bayes_auc": bayes.get(str(code), NAN) if known else None}
    users, items, positive = con.execute(
        "SELECT count(DISTINCT user_id), count(DISTINCT item_id), avg(label) "
        "FROM interactions").fetchone()
    split = choose_split(con)
    sums = ", ".join(f"sum({f}::INT), count(DISTINCT CASE WHEN {f} THEN "
                     f"{USER_ID if f.endswith('user') else ITEM_ID} END)"
                     for f in COLD_START_FLAGS)
    cold = {}
    for name in ("val", "test"):
        rows = f"(SELECT * FROM interactions WHERE {split.of()} = '{name}')"
        row = con.execute(f"""
            WITH tu AS ({train_counts_sql(INTERACTIONS, split, USER_ID)}),
                 ti AS ({train_counts_sql(INTERACTIONS, split, ITEM_ID)})
            SELECT count(*), {sums} FROM ({with_cold_start_flags(rows, 'tu', 'ti')})
            """).fetchone()
        cold[name] = {"rows": row[0], **{
            flag: {"rows": int(row[1 + 2 * k] or 0), "entities": int(row[2 + 2 * k] or 0)}
            for k, flag in enumerate(COLD_START_FLAGS)}}
    overall = auc_sql(con, "interactions")[None] if known else None
    con.close()
    return {"rows": total, "users": int(users), "items": int(items),
            "positive_rate": float(positive), "bayes_auc": overall,
            "split": split.to_json(), "scenarios": per_scenario, "cold_start": cold}


def print_summary(meta: dict, console: Console | None = None) -> None:
    console = console or Console()
    s = meta["summary"]
    source = f"imported ({meta['import']['format']})" if "import" in meta else \
        f"synthetic AntM2C: preset {meta['preset']}, seed {meta['seed']}"
    table = Table(title=f"{source}, {meta['n_days']} days from {meta['start'][:10]}")
    bayes = s["bayes_auc"] is not None  # no column where there is no true probability
    for col in (SCENARIO, "rows", "share", "positive rate", "Bayes AUC")[:5 if bayes else 4]:
        table.add_column(col, justify="right" if col != SCENARIO else "left")
    for code, sc in s["scenarios"].items():
        table.add_row(f"{code} {sc['name']}", f"{sc['rows']:,}", f"{sc['share']:.3f}",
                      _num(sc["positive_rate"]), *([_num(sc["bayes_auc"])] if bayes else []))
    if len(s["scenarios"]) > 1:
        table.add_row("all", f"{s['rows']:,}", "1.000", _num(s["positive_rate"]),
                      *([_num(s["bayes_auc"])] if bayes else []), style="bold")
    console.print(table)
    console.print(f"users {s['users']:,} (of {meta['n_users']:,}), items {s['items']:,} "
                  f"(of {meta['n_items']:,})")
    if split := s.get("split"):
        console.print(f"split: {split['how']}; validation from {split['val_from']}, "
                      f"test from {split['test_from']}")
    cold = Table(title="cold start: rows (distinct users / items), relative to the training rows")
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


def print_import(meta: dict, offline: Path, console: Console | None = None) -> None:
    """What an import read, kept and quarantined; what each column became; the summary; the
    files beside the tables (ID maps, vocabularies, quarantine)."""
    console = console or Console()
    imp = meta["import"]
    quarantined = sum(imp["quarantined"].values())
    console.print(f"rows read {imp['rows_read']:,}, imported {imp['imported']:,}, "
                  f"quarantined {quarantined:,}"
                  + "".join(f"\n  {n:,} {why}" for why, n in imp["quarantined"].items()))
    for table, t in imp.get("tables", {}).items():
        console.print(f"{table} table {t['file']}: rows read {t['rows_read']:,}, quarantined "
                      f"{sum(t['quarantined'].values()):,}"
                      + "".join(f"\n  {n:,} {why}" for why, n in t["quarantined"].items()))
    if imp.get("times_read_as"):
        console.print("times read as " + ", ".join(f"{kind} ({n:,})" for kind, n in
                                                    imp["times_read_as"].items()))
    if imp.get("columns"):
        table = Table(title="columns: what each became")
        for col in ("table", "column", "feature", "kind", "values", "how"):
            table.add_column(col, justify="right" if col == "values" else "left")
        for c in imp["columns"]:
            kind = c["kind"] + (f" (several, '{c['separator']}')" if c.get("separator") else "")
            values = f"{c['values']:,}" if "values" in c else ""
            table.add_row(c["table"], c["column"], c["feature"] or "-", kind, values, c["how"])
        console.print(table)
    print_summary(meta, console)
    files = [f"quarantine: {offline / 'quarantine'} ({quarantined:,} rows)"]
    files += [f"ID map: {p} ({pq.read_metadata(p).num_rows:,} IDs)"
              for p in sorted((offline / "id_maps").glob("*.parquet"))]
    files += [f"vocabulary: {p} ({pq.read_metadata(p).num_rows:,} values)"
              for p in sorted((offline / "vocabularies").glob("*.parquet"))]
    console.print(f"offline store: {offline}\n" + "\n".join(f"  {f}" for f in files))
