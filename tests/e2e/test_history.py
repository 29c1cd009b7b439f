"""The user's history, point in time: every row of the built training set carries the user's
last clicks strictly before the row's instant, equal to an independent replay of the log (a
Python loop over the interactions); the view keeps the `history_length` of the repo's
schema.yaml; Feast registers the view and serves a user's latest history online."""

from __future__ import annotations

import bisect
import collections
from datetime import timedelta
from pathlib import Path

import pyarrow.dataset as pds
import pytest
from feast import FeatureStore

from conftest import copy_repo, error_lines, run
from recsys.data.offline import table_files
from recsys.dataset.build import build_dataset
from recsys.schema import EVENT_TIMESTAMP, HISTORY_LENGTH, HISTORY_VIEW, INTERACTIONS, ITEM_ID, \
    LABEL, REQUEST_ID, SCENARIO, SCHEMA_FILE, USER_ID, Schema
from recsys.antm2c import ANTM2C

HISTORY = ("history_item_ids", "history_scenarios", "history_click_times",
           "history_item_category")


def _categories(offline) -> dict[int, list[tuple]]:
    """Each item's (time, category) profile rows, in time order."""
    rows = pds.dataset(table_files(offline, "item_profile"), format="parquet").to_table(
        columns=[ITEM_ID, EVENT_TIMESTAMP, "item_category"]).to_pylist()
    out = collections.defaultdict(list)
    for r in sorted(rows, key=lambda r: r[EVENT_TIMESTAMP]):
        out[r[ITEM_ID]].append((r[EVENT_TIMESTAMP], r["item_category"]))
    return out


def _clicks(offline) -> dict[int, list[tuple]]:
    """Each user's clicks in the view's order: time, then request, then item; each with its
    item's category as of the click (the item's latest profile row at or before it)."""
    rows = pds.dataset(table_files(offline, INTERACTIONS), format="parquet").to_table(
        columns=[REQUEST_ID, EVENT_TIMESTAMP, USER_ID, ITEM_ID, SCENARIO, LABEL]).to_pylist()
    categories = _categories(offline)
    clicks = collections.defaultdict(list)
    for r in rows:
        if r[LABEL] == 1:
            known = [c for t, c in categories[r[ITEM_ID]] if t <= r[EVENT_TIMESTAMP]]
            clicks[r[USER_ID]].append((r[EVENT_TIMESTAMP], r[REQUEST_ID], r[ITEM_ID],
                                       r[SCENARIO], known[-1] if known else None))
    for user in clicks.values():
        user.sort()
    return clicks


def _replay(clicks: list[tuple], before, length: int) -> tuple[list, ...]:
    """The last `length` clicks strictly before `before`, most recent first."""
    earlier = clicks[:bisect.bisect_left([c[0] for c in clicks], before)][-length:][::-1]
    return ([c[2] for c in earlier], [c[3] for c in earlier],
            [int(c[0].timestamp() * 1_000_000) for c in earlier], [c[4] for c in earlier])


def _got(row: dict) -> tuple[list, ...]:
    return tuple(row[name] or [] for name in HISTORY)


@pytest.fixture(scope="module")
def bucketed(tiny, tmp_path_factory) -> Path:
    """tiny built in partitions of at most 2,500 rows: each day (4,000 rows) cut into hash
    buckets of users, so the history carried from one day's partitions to the next day's is
    checked too."""
    out = tmp_path_factory.mktemp("bucketed") / "ds"
    info = build_dataset(tiny["repo"], out, partition_rows=2_500, progress=False)
    assert info["build"]["partitions"] >= 12
    return out


@pytest.mark.parametrize("built", ["default", "bucketed"])
def test_every_row_has_the_clicks_strictly_before_it(tiny, request, built):
    clicks = _clicks(tiny["offline"])
    dataset = tiny["dataset"] if built == "default" else request.getfixturevalue("bucketed")
    rows = pds.dataset(sorted(dataset.glob("*/*.parquet")), format="parquet").to_table(
        columns=[EVENT_TIMESTAMP, USER_ID, *HISTORY]).to_pylist()
    same_instant = with_history = 0
    for row in rows:
        user, at = clicks.get(row[USER_ID], []), row[EVENT_TIMESTAMP]
        assert _got(row) == _replay(user, at, ANTM2C.history_length), row
        same_instant += any(c[0] == at for c in user)
        with_history += bool(row["history_item_ids"])
    # the check has teeth: rows at an instant their user clicked (their own click, a sibling's)
    # would see it under a <= join, and most rows have a history at all
    assert same_instant > 0.1 * len(rows)
    assert 0.3 * len(rows) < with_history < len(rows)


def _edited_repo(tmp_path, length, item_features: str = "[item_category]") -> Path:
    repo = copy_repo(tmp_path / "repo")
    schema = repo / SCHEMA_FILE
    schema.write_text(schema.read_text().replace(
        f"history_length: {HISTORY_LENGTH}", f"history_length: {length}").replace(
        "history_item_features: [item_category]", f"history_item_features: {item_features}"))
    return repo


def test_the_view_keeps_the_history_length_of_the_repos_schema(tmp_path):
    """An edit of schema.yaml's history_length and history_item_features survives new data:
    the view keeps that many clicks, each row equal to the replay, and the named features of
    each clicked item."""
    repo = _edited_repo(tmp_path, 3, "[item_category, item_brand]")
    run("recsys", "generate", "--preset", "tiny", "--seed", "7", "--repo", str(repo),
        "--workers", "1")
    schema = Schema.load(repo / SCHEMA_FILE)
    assert schema.history_length == 3
    assert schema.history_item_features == ("item_category", "item_brand")
    offline = repo / "data" / "offline"
    clicks = _clicks(offline)
    rows = pds.dataset(table_files(offline, HISTORY_VIEW.name), format="parquet").to_table()
    for row in rows.to_pylist():  # a row at t + 1 µs holds the clicks up to and including t
        assert _got(row) == _replay(clicks[row[USER_ID]], row[EVENT_TIMESTAMP], 3)
        assert len(row["history_item_brand"]) == len(row["history_item_ids"])
    assert max(len(r) for r in rows["history_item_ids"].to_pylist()) == 3


def test_history_item_features_the_new_data_lacks_are_dropped(tmp_path):
    """A repo copied from another world: of its schema's history_item_features, the new data
    keeps those it has as items' features (a user's gender is not one)."""
    repo = _edited_repo(tmp_path, 3, "[user_gender, item_brand]")
    run("recsys", "generate", "--preset", "tiny", "--repo", str(repo), "--workers", "1")
    assert Schema.load(repo / SCHEMA_FILE).history_item_features == ("item_brand",)


def test_a_bad_history_length_is_one_line_and_writes_nothing(tmp_path):
    repo = _edited_repo(tmp_path, 0)
    proc = run("recsys", "generate", "--preset", "tiny", "--repo", str(repo), "--workers", "1",
               check=False)
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        f"error: {repo / SCHEMA_FILE}: history_length 0: must be a whole number 1..1000; fix "
        f"it or remove the key (the default: {HISTORY_LENGTH})"]
    assert not (repo / "data" / "offline").exists()


def test_feast_serves_each_users_latest_history(tiny, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    run("recsys", "generate", "--preset", "tiny", "--seed", "7", "--repo", str(repo),
        "--workers", "1")
    run("feast", "apply", cwd=repo)
    run("feast", "materialize", "2000-01-01T00:00:00", "2100-01-01T00:00:00", "-v",
        HISTORY_VIEW.name, cwd=repo)
    clicks = _clicks(repo / "data" / "offline")
    users = sorted(clicks)[:20] + [10 ** 9]  # and a user who never clicked
    online = FeatureStore(repo_path=str(repo)).get_online_features(
        features=[f"{HISTORY_VIEW.name}:{name}" for name in HISTORY],
        entity_rows=[{USER_ID: u} for u in users]).to_dict()
    for i, user in enumerate(users):
        # the view's latest row for the user: every click, the last instant's too
        want = _replay(clicks[user], clicks[user][-1][0] + timedelta(microseconds=1),
                       ANTM2C.history_length) if user in clicks else ([], [], [], [])
        assert tuple(online[name][i] or [] for name in HISTORY) == want, user


def test_a_view_built_in_parts_equals_the_one_pass_view(tiny, tmp_path, monkeypatch):
    """A log longer than PART_CLICKS is built in parts of whole users, merged in time order
    range by range: the same rows in the same order as one pass, in full row groups."""
    import pyarrow.parquet as pq

    import recsys.data.history as history

    offline = tmp_path / "offline"
    offline.mkdir()
    for folder in tiny["offline"].iterdir():  # the tiny log and its views, the history apart
        if folder.is_dir() and folder.name != HISTORY_VIEW.name:
            (offline / folder.name).symlink_to(folder)
    one_pass = pq.read_table(table_files(tiny["offline"], HISTORY_VIEW.name)[0])
    monkeypatch.setattr(history, "PART_CLICKS", one_pass.num_rows // 7)
    monkeypatch.setattr(history, "HISTORY_ROW_GROUP_ROWS", 1000)
    history.write_history(offline, Schema.load(tiny["repo"] / SCHEMA_FILE))
    (path,) = table_files(offline, HISTORY_VIEW.name)
    assert pq.read_table(path).equals(one_pass)
    groups = pq.ParquetFile(path).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)][:-1] == \
        [1000] * (groups.num_row_groups - 1)
    assert not (offline / ".history-spill").exists()  # its parts removed
