"""The Store protocol: every backend (memory, SQLite, Redis) passes one contract suite."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..spaces.model import Space, SpaceState


@dataclass(frozen=True)
class User:
    """An account that may host or speak."""

    name: str
    """Unique handle, e.g. ``alice``."""
    key_hash: str
    """SHA-256 of the API key; the key itself is never stored."""
    display_name: str
    """Name shown on pages."""
    verified: bool
    """Identity checked by the operator; verified hosts carry a badge."""
    operator: bool
    """Platform staff: may use ``/ops/*``."""
    created_at: float
    """Unix time of creation."""

    @property
    def identity(self) -> str:
        return f"user:{self.name}"


@dataclass(frozen=True)
class StoredSpace:
    """A space with the version used for optimistic concurrency."""

    space: Space
    version: int


class StoreError(Exception):
    """Base of store errors."""


class DuplicateError(StoreError):
    """The record already exists."""


class VersionConflict(StoreError):
    """The space changed since it was read; re-read and apply again."""


@runtime_checkable
class Store(Protocol):
    """Where shared state lives. Calls are small and independent; writes to a space are
    compare-and-set on its version so several API nodes can share one store."""

    async def add_user(self, user: User) -> None: ...

    async def get_user(self, name: str) -> User | None: ...

    async def find_user_by_key(self, key_hash: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def create_space(self, space: Space) -> StoredSpace: ...

    async def get_space(self, space_id: str) -> StoredSpace | None: ...

    async def save_space(self, space: Space, expected_version: int) -> StoredSpace: ...

    async def list_spaces(
        self, states: Iterable[SpaceState] | None = None, limit: int = 100
    ) -> list[Space]: ...

    async def add_reaction(self, space_id: str, emoji: str, count: int = 1) -> None: ...

    async def reactions(self, space_id: str) -> dict[str, int]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
