"""In-memory store: tests and throwaway demos."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ..spaces.model import Space, SpaceState
from .base import DuplicateError, StoredSpace, User, VersionConflict
from .ordering import space_sort_key


class MemoryStore:
    """A :class:`~townhall.store.base.Store` held in dictionaries."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._spaces: dict[str, StoredSpace] = {}
        self._reactions: dict[str, dict[str, int]] = defaultdict(dict)

    async def add_user(self, user: User) -> None:
        if user.name in self._users:
            raise DuplicateError(f"user {user.name!r} already exists")
        self._users[user.name] = user

    async def get_user(self, name: str) -> User | None:
        return self._users.get(name)

    async def find_user_by_key(self, key_hash: str) -> User | None:
        return next((u for u in self._users.values() if u.key_hash == key_hash), None)

    async def list_users(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.name)

    async def create_space(self, space: Space) -> StoredSpace:
        if space.id in self._spaces:
            raise DuplicateError(f"space {space.id!r} already exists")
        stored = StoredSpace(space, 1)
        self._spaces[space.id] = stored
        return stored

    async def get_space(self, space_id: str) -> StoredSpace | None:
        return self._spaces.get(space_id)

    async def save_space(self, space: Space, expected_version: int) -> StoredSpace:
        current = self._spaces.get(space.id)
        if current is None or current.version != expected_version:
            raise VersionConflict(f"space {space.id!r} changed; expected v{expected_version}")
        stored = StoredSpace(space, expected_version + 1)
        self._spaces[space.id] = stored
        return stored

    async def list_spaces(
        self, states: Iterable[SpaceState] | None = None, limit: int = 100
    ) -> list[Space]:
        wanted = set(states) if states is not None else None
        found = [
            s.space for s in self._spaces.values() if wanted is None or s.space.state in wanted
        ]
        return sorted(found, key=space_sort_key)[:limit]

    async def add_reaction(self, space_id: str, emoji: str, count: int = 1) -> None:
        bucket = self._reactions[space_id]
        bucket[emoji] = bucket.get(emoji, 0) + count

    async def reactions(self, space_id: str) -> dict[str, int]:
        return dict(self._reactions.get(space_id, {}))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
