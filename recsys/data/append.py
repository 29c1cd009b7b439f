"""`recsys import ... --append`: new days onto a repo's imported log, the old data untouched.

The base is the repo's offline store as its last import left it. The new rows are staged and
built like any import's, except that:
- an ID or a categorical value the base knows keeps its code; a new one takes the next code
  (IDs in order of first appearance, values by frequency), so the old rows, an old run's
  embedding rows and the served ID maps stay valid;
- the columns, their kinds and the scenarios are the base's: a new column, a missing one or a
  new scenario is a schema change, refused (a whole import with --force starts over);
- a day the base holds is refused unless --force, which replaces that day's rows;
- the base's files (its days, entity views, vocabularies, quarantine) are hard-linked into the
  new store, not copied; only what reads the whole log (the aggregates, the history, the
  summary) is computed again, by DuckDB under its budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from recsys.data.offline import ID_MAPS, QUARANTINE, REPO_META, VOCABULARIES, offline_dir, \
    RepoMeta, read_repo_meta, read_schema
from recsys.errors import DataError, OutputExistsError, UsageError
from recsys.files import link_or_copy
from recsys.schema import AGGREGATE_VIEWS, HISTORY_VIEW, INTERACTIONS, Schema

DAY_FOLDER = "day="
# what an append computes again over the whole log (the rest of the base is linked)
REWRITTEN = {*AGGREGATE_VIEWS, HISTORY_VIEW.name, REPO_META}


@dataclass
class Base:
    """The offline store an append extends; `replace_days`: --force (a day the base holds is
    replaced rather than refused)."""

    offline: Path
    meta: RepoMeta
    schema: Schema
    replace_days: bool

    @classmethod
    def of(cls, repo: Path, fmt: str, replace_days: bool) -> Base:
        """The repo's store, which must be an import of the same format."""
        meta = read_repo_meta(repo)
        offline = offline_dir(repo)
        if meta.preset != f"import-{fmt}":
            preset = meta.preset
            what = f"an import of {preset.removeprefix('import-')}" \
                if preset.startswith("import-") else f"generated data (preset {preset})"
            raise UsageError(f"{offline}: holds {what}; --append adds days to a repo imported "
                             f"with `recsys import {fmt}`: leave out --append to import "
                             f"into another repo", fields="append")
        return cls(offline, meta, read_schema(repo), replace_days)

    # ---- what the base holds ----------------------------------------------------------------
    @property
    def start_epoch(self) -> int:
        return self.meta.start_epoch

    def days(self) -> list[date]:
        return sorted(date.fromisoformat(p.name.removeprefix(DAY_FOLDER))
                      for p in (self.offline / INTERACTIONS).glob(f"{DAY_FOLDER}*"))

    def id_map(self, entity: str) -> str:
        """SQL of the base's ID map of `entity` (raw_id, code)."""
        return f"read_parquet('{self.offline / ID_MAPS / entity}.parquet')"

    def n_ids(self, entity: str) -> int:
        return pq.read_metadata(self.offline / ID_MAPS / f"{entity}.parquet").num_rows

    def vocabulary(self, feature: str) -> Path:
        return self.offline / VOCABULARIES / f"{feature}.parquet"

    def table(self, name: str) -> str:
        """SQL of one of the base's tables (not the interactions)."""
        return f"read_parquet('{self.offline / name}/*.parquet')"

    def next_part(self, table: str) -> str:
        """A part file name the base's `table` folder does not use."""
        return f"part-{len(list((self.offline / table).glob('part-*.parquet'))):05d}.parquet"

    def next_request_id(self, con) -> int:
        """Request ids go on after the base's largest."""
        top = con.execute(f"SELECT max(request_id) FROM read_parquet("
                          f"'{self.offline / INTERACTIONS}/*/*.parquet')").fetchone()[0]
        return 0 if top is None else int(top) + 1

    # ---- the append ---------------------------------------------------------------------
    def check_days(self, new: list[date], files: list[str]) -> list[date]:
        """The base's days the new rows replace (none unless --force); refuses new rows
        before the base's first day."""
        held = self.days()
        early = [d for d in new if d < held[0]]
        if early:
            raise DataError(f"{', '.join(files)}: rows of {early[0]} are before the repo's "
                            f"first day {held[0]}; --append adds later days: import the "
                            f"whole log again without --append (with --force)")
        present = sorted(set(new) & set(held))
        if present and not self.replace_days:
            shown = ", ".join(map(str, present[:3])) + (" ..." if len(present) > 3 else "")
            raise OutputExistsError(f"{self.offline}: already holds {shown} "
                                    f"({len(present)} of the new rows' {len(new)} days); pass "
                                    f"--force to replace those days", fields="force")
        return present

    def link_into(self, tmp: Path, replaced: list[date]) -> None:
        """Hard-link (copy, across file systems) every base file the new store keeps: all but
        what is computed again, the replaced days and the files already written there."""
        dropped = {f"{DAY_FOLDER}{d.isoformat()}" for d in replaced}
        for path in sorted(self.offline.rglob("*")):
            rel = path.relative_to(self.offline)
            if not path.is_file() or rel.parts[0] in REWRITTEN or rel.parts[0].startswith(".") \
                    or (rel.parts[0] == INTERACTIONS and rel.parts[1] in dropped):
                continue
            if not (tmp / rel).exists():
                link_or_copy(path, tmp / rel)

    def quarantine_part(self) -> str:
        return self.next_part(QUARANTINE)

    def record(self, meta: dict, new_days: list[date], replaced: list[date]) -> dict:
        """The new metadata: this append's import record, every import of the repo listed."""
        def short(m: dict, days: list[str]) -> dict:
            imp = m["import"]
            return {"files": imp["files"], "rows_read": imp["rows_read"],
                    "imported": imp["imported"], "days": days}

        held = self.days()
        meta["import"]["days"] = [str(new_days[0]), str(new_days[-1])]
        meta["import"]["replaced_days"] = [str(d) for d in replaced]
        first = self.meta.raw.get("imports",  # the first import's record, on the first append
                                  [short(self.meta.raw, [str(held[0]), str(held[-1])])])
        meta["imports"] = first + [short(meta, meta["import"]["days"])]
        return meta
