"""`recsys models`: the registered models and what each declares it needs and offers."""

from __future__ import annotations

from recsys.cli.common import console, friendly


@friendly
def list_models() -> None:
    """List the models: family, and what each reads and offers (the registry's own list)."""
    from rich.table import Table

    from recsys.models.registry import MODELS

    table = Table(caption="history: read by nature (+: where the dataset has one, unless "
                  "--history none), else the poolings --history takes; cold: "
                  "a cold path for unseen IDs; adapt: to each user at test time; dot: the "
                  "dot part; DMP: TorchRec shards its tables")
    for column in ("model", "family", "history", "cold", "adapt", "dot", "DMP"):
        table.add_column(column, no_wrap=True)
    for name, cls in MODELS.items():
        c = cls.capabilities
        history = c.history or (f"{c.history_where_present}+" if c.history_where_present
                                else "|".join(c.history_poolings))
        table.add_row(name, c.family, history,
                      *("yes" if flag else "-" for flag in
                        (c.cold_path, c.adapts, c.interaction, c.shardable)))
    console.print(table)
