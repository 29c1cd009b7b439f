"""The Feast workflow on the generated repo, as a Feast user types it: apply (fixture),
materialize-incremental through the real CLI, then online features through the SDK."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
from feast import FeatureStore

from conftest import run
from recsys.data.offline import table_glob
from recsys.antm2c import FEATURE_SERVICES, VIEWS


def test_apply_registered_every_view_and_service(tiny):
    store = FeatureStore(repo_path=str(tiny["repo"]))
    assert {fv.name for fv in store.list_feature_views()} == {v.name for v in VIEWS}
    assert {fs.name for fs in store.list_feature_services()} == set(FEATURE_SERVICES)
    listed = run("feast", "feature-views", "list", cwd=tiny["repo"], plain=True).stdout
    assert all(v.name in listed for v in VIEWS)


def test_materialize_incremental_then_online_features(tiny):
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    run("feast", "materialize-incremental", now, cwd=tiny["repo"], plain=True)
    store = FeatureStore(repo_path=str(tiny["repo"]))
    # the latest offline row of a few entities must be what the online store serves
    con = duckdb.connect()
    latest = con.execute(f"""
        SELECT user_id, user_impressions_7d, query_entity_seq
        FROM (SELECT * FROM read_parquet('{table_glob(tiny['offline'], 'user_agg')}')
              QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_timestamp DESC) = 1)
        JOIN (SELECT * FROM read_parquet('{table_glob(tiny['offline'], 'user_text')}')
              QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_timestamp DESC) = 1)
        USING (user_id) ORDER BY user_id LIMIT 20""").fetchall()
    online = store.get_online_features(
        features=["user_agg:user_impressions_7d", "user_text:query_entity_seq"],
        entity_rows=[{"user_id": r[0]} for r in latest]).to_dict()
    assert online["user_impressions_7d"] == [r[1] for r in latest]
    assert online["query_entity_seq"] == [r[2] for r in latest]
    # a whole feature service, for a user / item / scenario triple
    row = store.get_online_features(features=store.get_feature_service("multi_modal"),
                                    entity_rows=[{"user_id": 1, "item_id": 1,
                                                  "scenario": 2}]).to_dict()
    assert row["item_title"][0] and row["scenario_ctr_1d"][0] is not None


def test_feast_opened_through_recsys_skips_typeguard_and_other_commands_never_load_it():
    """recsys.features turns Feast's import-time @typechecked instrumentation off (half of
    `import feast`); a command that never opens Feast does not pay for typeguard at all."""
    import subprocess
    import sys

    code = ("import sys, recsys.cli; assert 'typeguard' not in sys.modules\n"
            "from recsys.features.feature_store import open_store\n"
            "import feast, typeguard\n"
            "assert typeguard.typechecked.__module__ == 'recsys.features'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
