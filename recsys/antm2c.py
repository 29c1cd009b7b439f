"""The built-in schema, `ANTM2C`: the AntM2C benchmark's scenarios, entities, feature views,
features and feature services, which `recsys generate` and `recsys import antm2c` write. Every
other schema is a repo's own schema.yaml; the types are recsys.schema's."""

from __future__ import annotations

from recsys.schema import AGGREGATE_VIEWS, HISTORY_VIEW, ITEM_ID, RETRIEVAL_VIEW, SCENARIO, \
    TEXT_VECTOR_VIEWS, USER_ID, Entity, Feature, Scenario, Schema, View, aggregate_features, \
    history_features, id_features, retrieval_features, text_vector_features


# Codes as in the public release; names inferred from its item titles.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(0, "contents", 0.06),
    Scenario(1, "mini-programs", 0.25),
    Scenario(2, "advertisements", 0.51),
    Scenario(3, "videos", 0.11),
    Scenario(4, "vouchers", 0.07),
)
SCENARIO_NAMES = {s.code: s.name for s in SCENARIOS}

ENTITIES: tuple[Entity, ...] = (
    Entity("user", USER_ID, "An Alipay-style user, shared by all scenarios"),
    Entity("item", ITEM_ID, "An item; each item belongs to exactly one scenario"),
    Entity("scenario", SCENARIO, "A scenario (kind of item): 0..4"),
)
ENTITY_BY_NAME = {e.name: e for e in ENTITIES}

# the item features each click of the history also carries, as of the click, in the built-in
# schema: the category, which is where a user's taste shows (an item's ID is seen too rarely
# to learn it); a repo's schema.yaml may name others (`history_item_features`)
HISTORY_ITEM_FEATURES = ("item_category",)

VIEWS: tuple[View, ...] = (
    View("user_profile", "user", "Static user profile, stamped at the user's arrival"),
    View("user_text", "user", "User behaviour text (bill / service / query entities), refreshed"),
    AGGREGATE_VIEWS["user_agg"],
    View("item_profile", "item", "Item profile, stamped at the item's launch"),
    View("item_text", "item", "Item title and entity names, stamped at the item's launch"),
    AGGREGATE_VIEWS["item_agg"],
    AGGREGATE_VIEWS["scenario_stats"],
    TEXT_VECTOR_VIEWS["user"],
    TEXT_VECTOR_VIEWS["item"],
    # Precomputed per-item image vectors (synthetic ones from the generator, or imported).
    View("item_image", "item", "Image vector of the item, stamped at the item's launch"),
    RETRIEVAL_VIEW,
    HISTORY_VIEW,
)
VIEW_BY_NAME = {v.name: v for v in VIEWS}
MODEL_VIEWS = tuple(v for v in VIEWS if v != RETRIEVAL_VIEW)  # what a model may read

N_DEEP_FEATURES = 27
# deep_features_0..21 are categorical with these vocabulary sizes; 22..26 are numeric.
DEEP_CATEGORICAL_CARDINALITIES = (
    24, 10, 7, 5, 4, 8, 16, 32, 64, 100, 3, 6, 12, 50, 200, 1000, 20, 2, 2, 9, 30, 500,
)
N_TOPICS = 20  # item categories: one per text topic of the generator
N_BRANDS = 1000

def _deep_features() -> list[Feature]:
    feats = []
    for i in range(N_DEEP_FEATURES):
        if i < len(DEEP_CATEGORICAL_CARDINALITIES):
            card = DEEP_CATEGORICAL_CARDINALITIES[i]
            feats.append(Feature(f"deep_features_{i}", "categorical", "context", "int64", card,
                                 description="Anonymised context feature (categorical)"))
        else:
            feats.append(Feature(f"deep_features_{i}", "numeric", "context", "float32",
                                 description="Anonymised context feature (numeric)"))
    return feats


_TEXT: tuple[Feature, ...] = (
    Feature("bill_entity_seq", "text", "user", "string", None, "user_text",
            "Entities of the user's recent bills"),
    Feature("service_entity_seq", "text", "user", "string", None, "user_text",
            "Entities of services the user used"),
    Feature("query_entity_seq", "text", "user", "string", None, "user_text",
            "Entities of the user's search queries"),
    Feature("item_title", "text", "item", "string", None, "item_text", "Item title"),
    Feature("item_entity_names", "text", "item", "string", None, "item_text",
            "Entity names attached to the item"),
)
_TEXT_BY_OWNER = {o: tuple(f for f in _TEXT if f.owner == o) for o in ("user", "item")}

FEATURES: tuple[Feature, ...] = (
    *id_features(len(SCENARIOS)),
    *_deep_features(),
    # user profile
    Feature("user_age_bucket", "categorical", "user", "int64", 8, "user_profile", "Age bucket"),
    Feature("user_gender", "categorical", "user", "int64", 3, "user_profile", "Gender"),
    Feature("user_city_level", "categorical", "user", "int64", 6, "user_profile", "City tier"),
    Feature("user_member_level", "categorical", "user", "int64", 5, "user_profile",
            "Membership level"),
    *_TEXT_BY_OWNER["user"],
    *aggregate_features("user_agg", SCENARIOS),
    # item profile and text
    Feature("item_category", "categorical", "item", "int64", N_TOPICS, "item_profile",
            "Item category"),
    Feature("item_brand", "categorical", "item", "int64", N_BRANDS, "item_profile", "Brand"),
    Feature("item_price_level", "categorical", "item", "int64", 10, "item_profile",
            "Price level"),
    *_TEXT_BY_OWNER["item"],
    *aggregate_features("item_agg", SCENARIOS),
    *aggregate_features("scenario_stats", SCENARIOS),
    # vectors: one per text field (its sentence embedding), and the item's image vector
    *text_vector_features(_TEXT),
    Feature("item_image_vec", "vector", "item", "list<float32>", None, "item_image",
            "Image vector of the item"),
    *retrieval_features(),
    *history_features(HISTORY_ITEM_FEATURES),  # last: with_history replaces them
)
FEATURE_BY_NAME = {f.name: f for f in FEATURES}

TEXT_FIELDS = tuple(f.name for f in FEATURES if f.kind == "text")

DEEP_FEATURES = tuple(f.name for f in FEATURES if f.name.startswith("deep_features_"))

# Feast feature services: which views each task reads.
FEATURE_SERVICES: dict[str, tuple[str, ...]] = {
    "multi_scenario": ("user_profile", "user_agg", "item_profile", "item_agg", "scenario_stats"),
    "cold_start": ("user_profile", "user_text", "user_agg", "item_profile", "item_text",
                   "item_agg"),
    "multi_modal": tuple(v.name for v in MODEL_VIEWS),
}
DEFAULT_FEATURE_SERVICE = "multi_modal"

ANTM2C = Schema("antm2c", SCENARIOS, ENTITIES, VIEWS, FEATURES, FEATURE_SERVICES,
                DEFAULT_FEATURE_SERVICE, history_item_features=HISTORY_ITEM_FEATURES)
# the built-in schema's tables and training set, for the generator and the AntM2C importer
view_features = ANTM2C.view_features
view_schema = ANTM2C.view_schema
interaction_schema = ANTM2C.interaction_schema
dataset_schema = ANTM2C.dataset_schema


def __getattr__(name: str):
    """The Arrow-typed names, made on first use (they need pyarrow)."""
    if name == "TABLES":
        return ANTM2C.tables()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
