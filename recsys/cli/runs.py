"""`recsys runs ...`: the finished runs on a dataset side by side, and two runs compared on the
same test rows (recsys.eval.compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recsys.cli.common import console, friendly

runs_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Finished runs: list them, compare two.")


@runs_app.command("list")
@friendly
def runs_list(
    folder: Path = typer.Option(Path("runs"), "--folder", help="Where the runs are (nested "
                                "experiment folders too)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Only the runs trained on "
                                           "this dataset as it is now (its fingerprint)."),
) -> None:
    """The finished runs: test AUC overall and per scenario, and the config keys they differ
    in."""
    from recsys.eval.compare import finished_runs, run_table

    table = run_table(finished_runs(folder, dataset))
    if not table["rows"]:
        console.print(f"no finished runs under {folder}" +
                      (f" trained on {dataset}" if dataset else ""))
        return
    scenarios = list(dict.fromkeys(s for r in table["rows"] for s in r["scenarios"]))
    shown = scenarios if len(scenarios) > 1 else []
    console.print("| run | AUC | " + "".join(f"{s} | " for s in shown) +
                  "".join(f"{k} | " for k in table["differing"]), soft_wrap=True)
    console.print("| --- | ---: |" + " ---: |" * len(shown) + " --- |" * len(table["differing"]),
                  soft_wrap=True)
    for r in table["rows"]:
        cells = [_auc(r["overall"]), *(_auc(r["scenarios"].get(s)) for s in shown),
                 *(str(r["config"][k]) for k in table["differing"])]
        console.print(f"| {r['run']} | " + " | ".join(cells) + " |", soft_wrap=True)


def _auc(value) -> str:
    return "-" if value is None else f"{value:.4f}"


@runs_app.command("compare")
@friendly
def runs_compare(
    a: Path = typer.Argument(..., help="The baseline run."),
    b: Path = typer.Argument(..., help="The run compared with it."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples of the test "
                                  "rows (the same rows for both runs)."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """B against A on the same test rows: the AUC difference overall and per scenario, its 95%
    bootstrap interval, and whether it is within noise."""
    from recsys.eval.compare import paired
    from recsys.run import Run

    result = paired(Run(a), Run(b), resamples=resamples, seed=seed)
    console.print(f"B = {b} against A = {a}, {result['split']} rows, {resamples} paired "
                  f"bootstrap resamples", soft_wrap=True)
    console.print("| slice | rows | AUC A | AUC B | B − A | 95% interval | verdict |")
    console.print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for name, c in result["slices"].items():
        if "diff" not in c:
            console.print(f"| {name} | {c['n']:,} | - | - | - | - | {c['note']} |")
            continue
        verdict = "within noise" if c["within_noise"] else \
            ("B better" if c["diff"] > 0 else "A better")
        console.print(f"| {name} | {c['n']:,} | {c['auc_a']:.4f} | {c['auc_b']:.4f} | "
                      f"{c['diff']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] | {verdict} |")
