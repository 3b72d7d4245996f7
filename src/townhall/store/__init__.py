"""Where shared state lives: the Store protocol and its backends."""

from .base import DuplicateError, Store, StoredSpace, StoreError, User, VersionConflict
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = [
    "DuplicateError",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredSpace",
    "User",
    "VersionConflict",
]
