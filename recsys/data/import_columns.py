"""What each column of an imported log and of its users / items tables becomes: a categorical
(one value or several, split at a separator), numeric or text feature, or nothing.

A kind the mapping declares is checked against the data; every other column's kind is
inferred from a survey of its values. The survey streams the table block by block and keeps a
few counters per column, so its memory does not grow with the rows:
- every non-empty value a number: numeric, unless all are whole numbers with at most
  `FEW_CODES` distinct values (codes: categorical);
- at least a fifth of the values holding `|` and few words: categorical with several values;
- 2.5 words a value or more: text;
- otherwise categorical.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recsys.errors import UsageError

KINDS = ("categorical", "numeric", "text", "ignore")
MAX_SCENARIOS = 64  # distinct values of a scenario column: one tower (or network) each
FEW_CODES = 64  # whole numbers with at most this many distinct values are codes
LIST_SEPARATOR = "|"  # inferred separator of multi-valued columns (genres: Action|Comedy)
MAX_LIST_VALUES = 32  # values a multi-valued row keeps (the rest are left out, and counted)
TEXT_WORDS = 2.5  # mean words of a value from which a string column is text
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


@dataclass(frozen=True)
class Declared:
    """What the mapping says of a column: its kind and, for several values a row, the
    separator."""

    kind: str
    separator: str | None = None


def parse_declarations(value, where: str) -> dict[str, Declared]:
    """The mapping's `columns:` (column: kind, or column: {kind: K, separator: S}), checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: columns is {value!r}; it takes `column: kind` lines "
                         f"(kinds: {', '.join(KINDS)})")
    out = {}
    for col, spec in value.items():
        if isinstance(spec, str):
            spec = {"kind": spec}
        if not isinstance(spec, dict) or set(spec) - {"kind", "separator"} or \
                spec.get("kind") not in KINDS or \
                not isinstance(spec.get("separator", ""), str) or spec.get("separator") == "":
            raise UsageError(f"{where}: columns.{col} is {spec!r}; it takes one of "
                             f"{', '.join(KINDS)}, or {{kind: categorical, separator: '|'}}")
        if spec.get("separator") and spec["kind"] != "categorical":
            raise UsageError(f"{where}: columns.{col}: a separator is for categorical columns "
                             f"with several values a row")
        out[str(col)] = Declared(spec["kind"], spec.get("separator"))
    return out


class ColumnStats:
    """Counters over a column's values, fed block by block (strings or numbers)."""

    def __init__(self):
        self.values = 0  # non-empty
        self.numbers = self.wholes = 0
        self.total = self.total_sq = 0.0
        self.with_bar = self.words = 0
        self.distinct: set[str] = set()  # up to FEW_CODES + 1 of them
        self.not_number: str | None = None  # a value that is not a number

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        values = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
        values = pc.drop_null(pc.if_else(pc.equal(values, ""), None, values))
        if not len(values):
            return
        self.values += len(values)
        is_number = pc.match_substring_regex(values, NUMBER)
        numbers = pc.cast(pc.filter(values, is_number), pa.float64())
        self.numbers += len(numbers)
        if len(numbers) < len(values) and self.not_number is None:
            self.not_number = pc.filter(values, pc.invert(is_number))[0].as_py()
        if len(numbers):
            self.wholes += pc.sum(pc.cast(pc.equal(pc.floor(numbers), numbers),
                                          pa.int64())).as_py()
            self.total += pc.sum(numbers).as_py()
            self.total_sq += pc.sum(pc.multiply(numbers, numbers)).as_py()
        self.with_bar += pc.sum(pc.cast(pc.match_substring(values, LIST_SEPARATOR),
                                        pa.int64())).as_py()
        self.words += pc.sum(pc.add(pc.count_substring(values, " "), 1)).as_py()
        if len(self.distinct) <= FEW_CODES:
            self.distinct.update(pc.unique(values).to_pylist()[:FEW_CODES + 1])

    @property
    def few(self) -> bool:
        return len(self.distinct) <= FEW_CODES

    def scale(self) -> tuple[float, float]:
        """(mean, std) of the numbers; std 1 for a constant column."""
        mean = self.total / max(self.numbers, 1)
        var = self.total_sq / max(self.numbers, 1) - mean * mean
        std = math.sqrt(var) if var > 1e-12 * max(1.0, mean * mean) else 1.0
        return round(mean, 6), round(std, 6)

    def infer(self) -> tuple[str, str | None, str]:
        """(kind, separator, why) from the values seen."""
        if not self.values:
            return "ignore", None, "no values"
        if self.numbers == self.values:
            if self.wholes == self.values and self.few:
                return "categorical", None, f"{len(self.distinct)} distinct whole numbers"
            return "numeric", None, "numbers"
        words = self.words / self.values
        if self.with_bar >= 0.2 * self.values and words < TEXT_WORDS:
            return "categorical", LIST_SEPARATOR, f"values holding '{LIST_SEPARATOR}'"
        if words >= TEXT_WORDS:
            return "text", None, f"{words:.1f} words a value"
        return "categorical", None, "short strings"


@dataclass
class Column:
    """One source column and what it becomes."""

    table: str  # interactions | users | items
    path: Path
    source: str  # the column's name in the file
    kind: str
    separator: str | None
    declared: bool
    why: str  # how the kind was chosen
    stats: ColumnStats = field(repr=False, default_factory=ColumnStats)
    name: str = ""  # the feature's name (set by name_features)

    @property
    def owner(self) -> str:
        return {"interactions": "context", "users": "user", "items": "item"}[self.table]

    def describe(self) -> dict:
        return {"table": self.table, "column": self.source, "feature": self.name,
                "kind": self.kind, "separator": self.separator,
                "how": "declared" if self.declared else f"inferred ({self.why})"}

    @classmethod
    def described(cls, d: dict, path: Path) -> Column:
        """The column an import's metadata describes (`describe`): what an append keeps."""
        declared = d["how"] == "declared"
        why = "declared" if declared else d["how"].removeprefix("inferred (").removesuffix(")")
        return cls(d["table"], path, d["column"], d["kind"], d.get("separator"), declared,
                   why, name=d["feature"] or "")


def decide(table: str, path: Path, source: str, stats: ColumnStats,
           declared: Declared | None) -> Column:
    """The column's kind: as declared (checked against its values) or inferred."""
    if declared is None:
        kind, separator, why = stats.infer()
        if table == "interactions" and kind == "text":  # text belongs to users or items
            kind, why = "ignore", f"text in the log ({why}); declare it categorical to use it"
        return Column(table, path, source, kind, separator, False, why, stats)
    fix = ("declare it categorical or text (`columns:` in the mapping, or categorical_cols "
           "/ text_cols)")
    if declared.kind == "numeric" and stats.numbers < stats.values:
        raise UsageError(f"{path}: column '{source}' is declared numeric, but "
                         f"{stats.values - stats.numbers:,} of its {stats.values:,} values are "
                         f"not numbers (e.g. {stats.not_number!r}); {fix}")
    if table == "interactions" and (declared.kind == "text" or declared.separator):
        raise UsageError(f"{path}: column '{source}' is declared "
                         f"{'text' if declared.kind == 'text' else 'multi-valued'}; the log's "
                         f"columns take one categorical or numeric value a row: put it in the "
                         f"users or items table, or declare it categorical",
                         fields=("users", "items"))
    return Column(table, path, source, declared.kind, declared.separator, True, "declared",
                  stats)


def name_features(columns: list[Column], reserved: set[str]) -> None:
    """A feature name for each used column: lower-case words joined by `_`, a user / item
    table's prefixed by its owner (age -> user_age); a name already taken gets a number."""
    taken = set(reserved)
    for col in columns:
        if col.kind == "ignore":
            continue
        base = re.sub(r"[^0-9a-zA-Z]+", "_", col.source).strip("_").lower() or "column"
        if base[0].isdigit():
            base = f"c_{base}"
        if col.owner in ("user", "item") and not base.startswith(f"{col.owner}_"):
            base = f"{col.owner}_{base}"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        col.name = name
        taken.add(name)
