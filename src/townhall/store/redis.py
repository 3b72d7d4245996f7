"""Redis store: shared state for several API nodes (``townhall serve --redis URL``).

Keys (all under ``th:``):

- ``th:user:{name}`` hash of a user's fields; ``th:userkey`` hash key_hash → name (the
  lookup index); ``th:users`` set of names.
- ``th:space:{id}`` hash ``doc`` (JSON), ``version``, ``state``, ``score``.
- ``th:spaces:{state}`` and ``th:spaces:all`` sorted sets of ids; the score is the
  timestamp of :func:`~townhall.store.ordering.space_sort_key` and Redis orders equal scores
  by member, which is the id tie-break of that key.
- ``th:reactions:{id}`` hash emoji → count (HINCRBY).

Every multi-key write is one Lua script, so it is atomic and a version compare-and-set.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from typing import cast

from redis.asyncio import Redis

from ..spaces.model import Space, SpaceState
from .base import DuplicateError, StoredSpace, User, VersionConflict
from .ordering import space_sort_key
from .redis_client import redis_client

PREFIX = "th:"
USERS = PREFIX + "users"
USER_KEYS = PREFIX + "userkey"
ALL_SPACES = PREFIX + "spaces:all"

_ADD_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'name' end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 'key' end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'key_hash', ARGV[2], 'display_name', ARGV[3],
           'verified', ARGV[4], 'operator', ARGV[5], 'created_at', ARGV[6])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 'ok'
"""

# KEYS: space hash, all-spaces zset, state zset.  ARGV: doc, state, score, id
_CREATE_SPACE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'version', 1, 'state', ARGV[2], 'score', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

# KEYS: space hash, all-spaces zset.  ARGV: expected version, doc, state, score, id, prefix
_SAVE_SPACE = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version or tonumber(version) ~= tonumber(ARGV[1]) then return 0 end
local old_state = redis.call('HGET', KEYS[1], 'state')
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'version', tonumber(ARGV[1]) + 1,
           'state', ARGV[3], 'score', ARGV[4])
redis.call('ZREM', ARGV[6] .. 'spaces:' .. old_state, ARGV[5])
redis.call('ZADD', ARGV[6] .. 'spaces:' .. ARGV[3], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return tonumber(ARGV[1]) + 1
"""


def _space_key(space_id: str) -> str:
    return f"{PREFIX}space:{space_id}"


def _state_key(state: SpaceState | str) -> str:
    value = state.value if isinstance(state, SpaceState) else state
    return f"{PREFIX}spaces:{value}"


def _score(space: Space) -> float:
    return space_sort_key(space)[0]


class RedisStore:
    """A :class:`~townhall.store.base.Store` in Redis (``redis.asyncio``), safe to share
    between any number of API nodes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: Redis = redis_client(url, decode_responses=True)
        self._add_user = self._redis.register_script(_ADD_USER)
        self._create = self._redis.register_script(_CREATE_SPACE)
        self._save = self._redis.register_script(_SAVE_SPACE)

    @property
    def redis(self) -> Redis:
        """The connection pool, for other Redis-backed parts of the node."""
        return self._redis

    async def add_user(self, user: User) -> None:
        result = await self._add_user(
            keys=[f"{PREFIX}user:{user.name}", USER_KEYS, USERS],
            args=[
                user.name,
                user.key_hash,
                user.display_name,
                int(user.verified),
                int(user.operator),
                repr(user.created_at),
            ],
        )
        if result == "name":
            raise DuplicateError(f"user {user.name!r} already exists")
        if result == "key":
            raise DuplicateError("an account with this API key already exists")

    async def get_user(self, name: str) -> User | None:
        fields = await self._redis.hgetall(f"{PREFIX}user:{name}")
        return _user(cast(dict[str, str], fields)) if fields else None

    async def find_user_by_key(self, key_hash: str) -> User | None:
        name = await self._redis.hget(USER_KEYS, key_hash)
        return await self.get_user(cast(str, name)) if name is not None else None

    async def list_users(self) -> list[User]:
        names = sorted(cast(set[str], await self._redis.smembers(USERS)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(f"{PREFIX}user:{name}")
            rows = await pipe.execute()
        return [_user(r) for r in rows if r]

    async def create_space(self, space: Space) -> StoredSpace:
        created = await self._create(
            keys=[_space_key(space.id), ALL_SPACES, _state_key(space.state)],
            args=[json.dumps(space.to_dict()), space.state.value, repr(_score(space)), space.id],
        )
        if not created:
            raise DuplicateError(f"space {space.id!r} already exists")
        return StoredSpace(space, 1)

    async def get_space(self, space_id: str) -> StoredSpace | None:
        doc, version = await self._redis.hmget(_space_key(space_id), ["doc", "version"])
        if doc is None or version is None:
            return None
        return StoredSpace(Space.from_dict(json.loads(doc)), int(version))

    async def save_space(self, space: Space, expected_version: int) -> StoredSpace:
        version = await self._save(
            keys=[_space_key(space.id), ALL_SPACES],
            args=[
                expected_version,
                json.dumps(space.to_dict()),
                space.state.value,
                repr(_score(space)),
                space.id,
                PREFIX,
            ],
        )
        if not version:
            raise VersionConflict(f"space {space.id!r} changed; expected v{expected_version}")
        return StoredSpace(space, int(version))

    async def list_spaces(
        self, states: Iterable[SpaceState] | None = None, limit: int = 100
    ) -> list[Space]:
        keys = [ALL_SPACES] if states is None else [_state_key(s) for s in set(states)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrange(key, 0, limit - 1, withscores=True)
            ranges: list[list[tuple[str, float]]] = await pipe.execute()
        # each range is ordered by (score, id): merge them and keep the first `limit`
        merged = heapq.merge(*ranges, key=lambda item: (item[1], item[0]))
        ids = [space_id for space_id, _ in merged][:limit]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for space_id in ids:
                pipe.hget(_space_key(space_id), "doc")
            docs: list[str | None] = await pipe.execute()
        spaces = [Space.from_dict(json.loads(d)) for d in docs if d is not None]
        return sorted(spaces, key=space_sort_key)

    async def add_reaction(self, space_id: str, emoji: str, count: int = 1) -> None:
        await self._redis.hincrby(f"{PREFIX}reactions:{space_id}", emoji, count)

    async def reactions(self, space_id: str) -> dict[str, int]:
        raw = await self._redis.hgetall(f"{PREFIX}reactions:{space_id}")
        return {str(k): int(v) for k, v in cast(dict[str, str], raw).items()}

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def _user(fields: dict[str, str]) -> User:
    return User(
        name=str(fields["name"]),
        key_hash=str(fields["key_hash"]),
        display_name=str(fields["display_name"]),
        verified=fields["verified"] == "1",
        operator=fields["operator"] == "1",
        created_at=float(fields["created_at"]),
    )
