"""Text as features: sentence-transformer vectors of the offline store's text fields."""
