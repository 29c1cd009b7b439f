"""`recsys import ... --append`: new days onto an imported repo. Old IDs and values keep their
codes, an appended AntM2C repo holds what the whole log's import holds, the old days build the
same rows as before, and a held day, a new column, a new scenario or another mapping is one
line that changes nothing (--force replaces a held day)."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from antm2c_files import antm2c_rows, write_antm2c
from conftest import copy_repo, error_lines, run
from recsys.data.offline import read_schema

OFFLINE = ("data", "offline")
MAPPING = ("--user-col", "uid", "--item-col", "iid", "--time-col", "ts", "--label-col",
           "rating", "--label-threshold", "4", "--scenario-col", "surface")
DAY0 = 1_700_006_400  # 2023-11-15 00:00 UTC


def _same_rows(a, b, table: str) -> int:
    """Rows of `table` (a folder of the offline store, or a file of one without its
    .parquet) in repos a and b: the count, after checking both hold the same rows."""
    con = duckdb.connect()
    glob = {"interactions": "/*/*.parquet"}.get(table, ".parquet" if "/" in table
                                                 else "/*.parquet")
    x, y = (f"read_parquet('{r.joinpath(*OFFLINE, table)}{glob}')" for r in (a, b))
    for one, other in ((x, y), (y, x)):
        extra = con.execute(f"SELECT count(*) FROM (SELECT * FROM {one} EXCEPT ALL "
                            f"SELECT * FROM {other})").fetchone()[0]
        assert extra == 0, f"{table}: {extra} rows of one repo are not in the other"
    return con.execute(f"SELECT count(*) FROM {x}").fetchone()[0]


def _meta(repo) -> dict:
    return json.loads(repo.joinpath(*OFFLINE, "meta.json").read_text())


def _ids(repo, entity: str) -> list:
    return pq.read_table(repo.joinpath(*OFFLINE, "id_maps", f"{entity}.parquet")).to_pylist()


def test_an_antm2c_append_holds_what_the_whole_import_holds(tmp_path):
    """The first four days imported, the last two appended: every table (the aggregates and
    the history, which read the whole log, included) equals the whole log's import, and the
    first import's IDs keep their rows."""
    rows = antm2c_rows(3000, days=6)
    cut = "2023-03-05"
    old = write_antm2c(tmp_path / "old.csv", [r for r in rows if r[2] < cut])
    new = write_antm2c(tmp_path / "new.csv", [r for r in rows if r[2] >= cut])
    whole = write_antm2c(tmp_path / "all.csv", rows)
    grown, full = copy_repo(tmp_path / "grown"), copy_repo(tmp_path / "full")
    run("recsys", "import", "antm2c", str(old), "--repo", str(grown))
    before = {e: _ids(grown, e) for e in ("user_id", "item_id")}
    proc = run("recsys", "import", "antm2c", str(new), "--append", "--repo", str(grown))
    assert "appended 2023-03-05 .. 2023-03-06" in proc.stdout
    run("recsys", "import", "antm2c", str(whole), "--repo", str(full))
    for entity, ids in before.items():
        after = _ids(grown, entity)
        assert after[:len(ids)] == ids and len(after) >= len(ids)
    assert len(_ids(grown, "user_id")) > len(before["user_id"])  # the new days' new users
    for table in [*read_schema(full).tables(), "id_maps/user_id", "id_maps/item_id"]:
        _same_rows(grown, full, table)
    assert _same_rows(grown, full, "interactions") == 3000
    meta, whole_meta = _meta(grown), _meta(full)
    for key in ("n_users", "n_items", "n_rows", "n_days", "start_epoch", "summary"):
        assert meta[key] == whole_meta[key], key
    assert [i["days"] for i in meta["imports"]] == [["2023-03-01", "2023-03-04"],
                                                    ["2023-03-05", "2023-03-06"]]
    assert (grown / "schema.yaml").read_text() == (full / "schema.yaml").read_text()


def _log(path, days, n, users, items, devices, seed, **extra):
    """A ratings log over `days` (first, last + 1) of users u<users>, items m<items>."""
    rng = np.random.default_rng(seed)
    day = rng.integers(*days, size=n)
    table = {"uid": [f"u{i}" for i in rng.integers(*users, size=n)],
             "iid": [f"m{i}" for i in rng.integers(*items, size=n)],
             "ts": (DAY0 + day * 86_400 + rng.integers(86_400, size=n)).tolist(),
             "rating": rng.integers(1, 6, size=n).tolist(),
             "surface": [("home", "search")[i] for i in rng.integers(2, size=n)],
             "device": [devices[i] for i in rng.integers(len(devices), size=n)],
             **{k: [v] * n for k, v in extra.items()}}
    pq.write_table(pa.table(table), path)
    return path


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    """A log of four days (2023-11-15..18) imported with an items table; the log of the next
    two days, with new users, new items and a new device."""
    tmp = tmp_path_factory.mktemp("append")
    old = _log(tmp / "old.parquet", (0, 4), 1500, (0, 150), (0, 60), ["ios", "android"], 1)
    new = _log(tmp / "new.parquet", (4, 6), 700, (100, 220), (40, 90),
               ["ios", "android", "web"], 2)
    items = tmp / "items.parquet"
    pq.write_table(pa.table({"iid": [f"m{i}" for i in range(60)],
                             "genre": [("a", "b", "c")[i % 3] for i in range(60)]}), items)
    first = copy_repo(tmp / "first")
    run("recsys", "import", "interactions", "--interactions", str(old), "--items", str(items),
        *MAPPING, "--repo", str(first))
    return {"tmp": tmp, "old": old, "new": new, "first": first}


def _copy(repo, dest):
    return shutil.copytree(repo, dest, symlinks=True)


def test_an_append_keeps_codes_and_the_old_days_build_the_same_rows(ratings, tmp_path):
    first, grown = ratings["first"], _copy(ratings["first"], tmp_path / "grown")
    run("recsys", "import", "interactions", "--interactions", str(ratings["new"]), "--append",
        "--repo", str(grown))
    for entity in ("user_id", "item_id"):
        old, now = _ids(first, entity), _ids(grown, entity)
        assert now[:len(old)] == old and len(now) > len(old)
    vocab = [pq.read_table(r.joinpath(*OFFLINE, "vocabularies", "device.parquet"))
             .to_pydict() for r in (first, grown)]
    assert vocab[1]["code"][:2] == vocab[0]["code"] and vocab[1]["value"][:2] == vocab[0]["value"]
    assert vocab[1]["value"][2] == "web" and vocab[1]["code"][2] == 2
    cards = {f.name: f.cardinality for f in read_schema(grown).features}
    assert cards["device"] == 3 and cards["item_genre"] == 3  # the log's grew, the items' not
    meta = _meta(grown)
    assert meta["n_rows"] == 2200 and meta["n_days"] == 6
    assert meta["import"]["mapping"]["user_col"] == "uid"  # the first import's mapping
    day = pq.read_table(grown.joinpath(*OFFLINE, "interactions", "day=2023-11-19")).to_pydict()
    assert min(day["request_id"]) == 1500  # request ids go on after the first import's
    # the first four days, built as a window, give the same rows in both repos
    built = []
    for repo in (first, grown):
        run("feast", "apply", cwd=repo)
        out = tmp_path / f"ds-{repo.name}"
        run("recsys", "build-dataset", "--repo", str(repo), "--out", str(out),
            "--from", "2023-11-15", "--to", "2023-11-18")
        built.append({s: pq.read_table(out / s).to_pandas().sort_values("request_id")
                      .reset_index(drop=True) for s in ("train", "val", "test")})
    for split, frame in built[0].items():
        assert len(frame) > 100
        assert frame.equals(built[1][split]), split


def _refused(repo, *args) -> str:
    before = repo.joinpath(*OFFLINE, "meta.json").read_text()
    proc = run("recsys", "import", *args, "--append", "--repo", str(repo), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert repo.joinpath(*OFFLINE, "meta.json").read_text() == before, "a refusal wrote data"
    return lines[0]


def test_a_held_day_a_schema_change_or_another_mapping_is_refused(ratings, tmp_path):
    tmp, grown = ratings["tmp"], _copy(ratings["first"], tmp_path / "grown")
    old = ["interactions", "--interactions", str(ratings["old"])]
    assert "already holds 2023-11-15" in _refused(grown, *old) and "--force" in \
        _refused(grown, *old)
    colour = _log(tmp_path / "colour.parquet", (4, 5), 50, (0, 9), (0, 9), ["ios"], 3,
                  colour="red")
    assert "new column(s) colour" in _refused(grown, "interactions", "--interactions",
                                              str(colour))
    other = _log(tmp_path / "other.parquet", (4, 5), 50, (0, 9), (0, 9), ["ios"], 4)
    table = pq.read_table(other)
    pq.write_table(table.set_column(4, "surface", pa.array(["cart"] * 50)), other)
    assert "new scenario(s) cart" in _refused(grown, "interactions", "--interactions",
                                              str(other))
    new = ["interactions", "--interactions", str(ratings["new"])]
    assert "--user-col: the repo's log was imported with 'uid'" in \
        _refused(grown, *new, "--user-col", "iid")
    assert "--items" in _refused(grown, *new, "--items", str(tmp / "items.parquet"))
    assert "holds an import of interactions" in _refused(grown, "antm2c", str(colour))
    empty = copy_repo(tmp_path / "empty")
    proc = run("recsys", "import", *new, "--append", "--repo", str(empty), check=False)
    assert proc.returncode == 2 and "no data in" in proc.stderr and \
        not empty.joinpath(*OFFLINE).exists()
    # --force replaces the held days: the first day's rows are the new log's, once
    run("recsys", "import", *old, "--append", "--force", "--repo", str(grown))
    meta = _meta(grown)
    assert meta["n_rows"] == 1500 and meta["import"]["replaced_days"][0] == "2023-11-15"
    assert min(pq.read_table(grown.joinpath(*OFFLINE, "interactions"))["request_id"]
               .to_pylist()) == 1500
