"""Which store a node (or a CLI command) uses: Redis when configured, else SQLite."""

from __future__ import annotations

from ..config import Config
from .base import Store
from .sqlite import SqliteStore


def open_store(config: Config) -> Store:
    """Redis for a cluster (``--redis``), the SQLite file in the data folder otherwise."""
    if config.redis_url:
        from .redis import RedisStore

        return RedisStore(config.redis_url)
    return SqliteStore(config.data / "townhall.db")
