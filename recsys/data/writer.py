"""Writing a repo's offline store in one piece (the generator and the importers): the tables,
the user_history view computed from them, meta.json and the repo's schema.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from recsys.data.history import write_history
from recsys.data.offline import REPO_META, check_repo, offline_dir, table_files, write_empty
from recsys.errors import DataError
from recsys.files import atomic_dir, check_output_free
from recsys.schema import HISTORY_LENGTH, MAX_HISTORY_LENGTH, SCHEMA_FILE, Schema


def write_offline_store(repo: Path, force: bool,
                        fill: Callable[[Path], tuple[dict, Schema]], append: bool = False,
                        progress: bool = False) -> dict:
    """Replace `repo`'s offline store in one piece: `fill(tmp)` writes every table into a
    temporary folder and returns the metadata, written beside them as meta.json, and the
    schema, the facts of those tables, which goes to the repo's schema.yaml. Replacing old
    data removes the Feast registry and online store that described it (listed in the
    returned metadata's `feast_reset`); data that extends the old (`append`) keeps them, as
    it keeps the old store's rows. `progress`: a bar over the history's parts."""
    from recsys.features.feature_store import reset_state

    out = offline_dir(check_repo(repo))
    if not append:
        check_output_free(out, force)  # fail before the work, not after it
    length, item_features = kept_history(repo)
    replacing = out.exists() and not append
    with atomic_dir(out, force or append) as tmp:
        meta, schema = fill(tmp)
        schema = schema.with_history(length, schema.history_item_features
                                     if item_features is None else
                                     schema.carried_item_features(item_features))
        write_history(tmp, schema, progress)  # every writer's log gives the history the same way
        for table, columns in schema.tables().items():  # e.g. text vectors: `recsys
            if not table_files(tmp, table):               # encode-text` fills them
                write_empty(tmp, table, columns)
        (tmp / REPO_META).write_text(json.dumps(meta, indent=2, default=str))
    schema.save(repo / SCHEMA_FILE)
    if replacing:
        meta["feast_reset"] = [str(p) for p in reset_state(repo)]
    return meta


def kept_history(repo: Path) -> tuple[int, tuple[str, ...] | None]:
    """The history length and item features the repo's schema.yaml asks for (a user's edit
    survives new data; of the features, those the new data has: a repo copied from another
    world keeps none of its features): the default length, and None (the writer's own
    features), where it says nothing."""
    import yaml

    path = repo / SCHEMA_FILE
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        data = None  # a broken file is replaced, as the rest of the repo's data is
    data = data if isinstance(data, dict) else {}
    length = data.get("history_length", HISTORY_LENGTH)
    if not isinstance(length, int) or isinstance(length, bool) or \
            not 1 <= length <= MAX_HISTORY_LENGTH:
        raise DataError(f"{path}: history_length {length!r}: must be a whole number "
                        f"1..{MAX_HISTORY_LENGTH}; fix it or remove the key (the default: "
                        f"{HISTORY_LENGTH})")
    features = data.get("history_item_features")
    if features is not None and (not isinstance(features, list) or
                                 not all(isinstance(f, str) for f in features)):
        raise DataError(f"{path}: history_item_features {features!r}: must be a list of "
                        f"feature names; fix it or remove the key")
    return length, None if features is None else tuple(features)
