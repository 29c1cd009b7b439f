"""Small input files in the formats the importers take, ugly parts included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from recsys.data.importers import ANTM2C_COLUMNS


def antm2c_rows(n: int, seed: int = 0, days: int = 6) -> list[list[str]]:
    """n well-formed AntM2C rows over `days` days; clicks depend on the item, so a model can
    learn something. Chinese text, comma-separated entities, tagged bill entities, empty
    fields."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        user, item = int(rng.integers(300)), int(rng.integers(120))
        day, sec = int(rng.integers(days)), int(rng.integers(86_400))
        label = int(rng.random() < (0.6 if item % 3 == 0 else 0.2))
        deep = [str(int(rng.integers(50))) if j not in (14, *range(19, 27))
                else f"{rng.normal():.4f}" for j in range(27)]
        if i % 17 == 0:
            deep[3] = ""  # empty field
        rows.append([f"u{user:05d}", f"i{item:04d}",
                     f"2023-03-{1 + day:02d} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}",
                     str(label), "话费充值|BILL,水电煤", "", "基金,理财",
                     "余额宝,基金" if i % 2 else "余额宝", f"理财 产品 {item}", str(item % 5),
                     *deep])
    return rows


def write_antm2c(path: Path, rows: list[list[str]], truncated_tail: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ANTM2C_COLUMNS)
        writer.writerows(rows)
        if truncated_tail:  # a last line cut short, without its newline
            f.write("u00001,i0001,2023-03-01 10:00:00,1")
    return path


def write_antm2c_large(path: Path, n: int, seed: int = 0, days: int = 7) -> Path:
    """n AntM2C rows, vectorised (for benchmarks): the same columns and formats."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)

    def strings(prefix: str, values: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")

    seconds = 1_677_628_800 + rng.integers(days * 86_400, size=n)  # from 2023-03-01
    times = pc.strftime(pa.array(seconds, pa.timestamp("s")),
                        format="%Y-%m-%d %H:%M:%S")
    item = rng.integers(n // 50 + 1, size=n)
    columns = {"user_id": strings("u", rng.integers(n // 10 + 1, size=n)),
               "item_id": strings("i", item), "log_time": times,
               "label": pa.array((rng.random(n) < 0.3).astype(int)).cast(pa.string()),
               "bill_entity_seq": pa.array(["话费充值|BILL,水电煤"] * n),
               "service_entity_seq": pa.array([""] * n),
               "query_entity_seq": pa.array(["基金,理财"] * n),
               "item_entity_names": pa.array(["余额宝,基金"] * n),
               "item_title": strings("理财 产品 ", item),
               "scene": pa.array(item % 5).cast(pa.string())}
    for j in range(27):
        numeric = j == 14 or j >= 19
        values = rng.normal(size=n).round(4) if numeric else rng.integers(50, size=n)
        columns[f"deep_features_{j}"] = pa.array(values).cast(pa.string())
    pacsv.write_csv(pa.table(columns), path)
    return path
