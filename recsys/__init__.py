"""recsys: a feature-store-centric platform for multi-scenario, multi-modal CTR prediction."""

__version__ = "0.1.0"
