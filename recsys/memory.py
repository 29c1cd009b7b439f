"""Memory budgets: data stages are bounded by a budget, never by the number of rows."""

DEFAULT_MEMORY_GB = 4.0  # build-dataset's --memory-gb

GiB = 2 ** 30


def duckdb_limit(memory_bytes: int) -> str:
    """A DuckDB memory_limit setting for a budget in bytes (at least 64 MB)."""
    return f"{max(memory_bytes // 2 ** 20, 64)}MB"
