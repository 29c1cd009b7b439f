"""`recsys import ...`: real data into the offline store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recsys.cli.common import FORCE, REPO, console, friendly, print_feast_reset

import_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Bring real data into the offline store.")


APPEND = typer.Option(False, "--append", help="Add the input's days to the repo's import: "
                      "known IDs and values keep their codes, new ones follow; a day the repo "
                      "holds is refused unless --force replaces it.")


def _print_import(meta: dict, repo: Path) -> None:
    from recsys.data.summary import print_import

    print_import(meta, repo / "data" / "offline", console)
    print_feast_reset(meta)
    if "days" in meta["import"]:
        first, last = meta["import"]["days"]
        replaced = meta["import"]["replaced_days"]
        console.print(f"appended {first} .. {last}"
                      + (f" (replacing {', '.join(replaced)})" if replaced else "")
                      + f"; the repo holds {meta['n_rows']:,} rows over {meta['n_days']} days. "
                      f"The online store follows with `recsys materialize --repo {repo}`")


@import_app.command("antm2c")
@friendly
def import_antm2c(
    files: list[Path] = typer.Argument(..., help="AntM2C CSV part files (antm2c_10m_part*)."),
    repo: Path = REPO,
    force: bool = FORCE,
    append: bool = APPEND,
) -> None:
    """Import the public AntM2C release (CSV, header + 37 columns) into the offline store."""
    from recsys.data.importers import import_antm2c as run

    _print_import(run(files, repo, force=force, append=append), repo)


@import_app.command("interactions")
@friendly
def import_interactions(
    interactions: Optional[Path] = typer.Option(None, "--interactions",
                                                help="Interaction log, CSV or Parquet."),
    users: Optional[Path] = typer.Option(None, "--users", help="Users table: its columns "
                                         "become user features."),
    items: Optional[Path] = typer.Option(None, "--items", help="Items table: its columns "
                                         "become item features."),
    user_col: Optional[str] = typer.Option(None, "--user-col"),
    item_col: Optional[str] = typer.Option(None, "--item-col"),
    time_col: Optional[str] = typer.Option(None, "--time-col",
                                           help="Epoch s / ms / µs / ns (told apart by "
                                           "size) or ISO date-times."),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    label_threshold: Optional[float] = typer.Option(
        None, "--label-threshold", help="Label = 1 where the label column is >= X."),
    scenario_col: Optional[str] = typer.Option(
        None, "--scenario-col", help="Each distinct value (any type, at most 64) is a "
        "scenario; default: one scenario."),
    categorical_cols: Optional[str] = typer.Option(
        None, "--categorical-cols", help="Columns (of any table) that are categorical, a,b."),
    numeric_cols: Optional[str] = typer.Option(None, "--numeric-cols",
                                               help="Columns that are numeric."),
    text_cols: Optional[str] = typer.Option(None, "--text-cols",
                                            help="Columns of --users / --items that are text."),
    ignore_cols: Optional[str] = typer.Option(None, "--ignore-cols",
                                              help="Columns to leave out."),
    mapping: Optional[Path] = typer.Option(None, "--mapping",
                                           help="YAML file with the same keys and `columns:` "
                                                "(flags win)."),
    repo: Path = REPO,
    force: bool = FORCE,
    append: bool = APPEND,
) -> None:
    """Import any interaction log (CSV or Parquet) through a column mapping; every other
    column of the log and of the users / items tables becomes a feature (its kind declared
    or inferred). With --append, the log's days go onto the repo's import, whose mapping
    they keep: --interactions is all it takes."""
    from recsys.data.importers import Mapping, append_interactions, declared_from_flags
    from recsys.data.importers import import_interactions as run

    declared = declared_from_flags(categorical_cols=categorical_cols, numeric_cols=numeric_cols,
                                   text_cols=text_cols, ignore_cols=ignore_cols)
    given = dict(interactions=interactions, users=users, items=items, user_col=user_col,
                 item_col=item_col, time_col=time_col, label_col=label_col,
                 label_threshold=label_threshold, scenario_col=scenario_col)
    if append:
        meta = append_interactions(repo, force, mapping, declared, **given)
    else:
        meta = run(Mapping.from_flags(mapping, declared, **given), repo, force=force)
    _print_import(meta, repo)


@import_app.command("served")
@friendly
def import_served(
    repo: Path = REPO,
    label_window: Optional[float] = typer.Option(
        None, "--label-window", min=0, help="Seconds after an item was served within which "
        "a click on it labels it 1 (default: recsys.data.served.LABEL_WINDOW_SECONDS); only "
        "impressions this old are taken."),
) -> None:
    """What the repo's servers showed (data/served/), labeled by the clicks sent back to
    /feedback (data/feedback/), as new rows of the repo's log: IDs, scenario, request and
    the context the model saw kept."""
    from recsys.data.served import LABEL_WINDOW_SECONDS, import_served as run

    meta = run(repo, LABEL_WINDOW_SECONDS if label_window is None else label_window)
    done = meta["served"][-1]
    console.print(f"imported {done['rows']:,} served impressions ({done['clicks']:,} clicked; "
                  f"{done['unknown']:,} of users or items the store does not hold left out) up "
                  f"to {done['until']}; the repo holds {meta['n_rows']:,} rows over "
                  f"{meta['n_days']} days. The online store follows with `recsys materialize "
                  f"--repo {repo}`")
