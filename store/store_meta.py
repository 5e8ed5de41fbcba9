"""The service-level records a store keeps beside its items (``Store.get_meta`` / ``set_meta``).

SQLite keeps them in its ``store_meta`` table, Redis one key each under the namespace
(``{namespace}:{key}``); only the names here are accepted, so a record can never overwrite an
item's key or the store's own ``instance`` row.
"""

from __future__ import annotations

# The model migration's record and the active-model pointer (``app/model_migration.py``).
MIGRATION_KEY = "migration"

META_KEYS = frozenset({MIGRATION_KEY})


def check_meta_key(key: str) -> None:
    """ValueError unless ``key`` is one of ``META_KEYS``."""
    if key not in META_KEYS:
        raise ValueError(f"not a store meta key: {key!r} (one of {sorted(META_KEYS)})")
