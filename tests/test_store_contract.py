"""One contract suite, run against every Store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from townhall.spaces import Space, SpaceState, Start, apply, create_space
from townhall.store import DuplicateError, MemoryStore, SqliteStore, Store, User, VersionConflict
from townhall.store.redis import RedisStore

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "redis":
        s = RedisStore(request.getfixturevalue("redis_url"))
        await s.redis.flushdb()
    else:
        s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "t.db")
    yield s
    await s.close()


def user(name: str) -> User:
    return User(name, f"hash-{name}", name.title(), False, False, 1.0)


def space(space_id: str, minutes: int = 10) -> Space:
    s, _ = create_space(
        space_id,
        f"Space {space_id}",
        "user:alice",
        NOW,
        scheduled_start=NOW + timedelta(minutes=minutes),
    )
    return s


async def test_users(store: Store) -> None:
    await store.add_user(user("alice"))
    with pytest.raises(DuplicateError):
        await store.add_user(user("alice"))
    assert (await store.get_user("alice")) == user("alice")
    assert (await store.find_user_by_key("hash-alice")) == user("alice")
    assert await store.find_user_by_key("nope") is None
    await store.add_user(user("bob"))
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]


async def test_space_versions(store: Store) -> None:
    created = await store.create_space(space("a"))
    assert created.version == 1
    with pytest.raises(DuplicateError):
        await store.create_space(space("a"))
    live, _ = apply(created.space, Start("user:alice"), NOW)
    saved = await store.save_space(live, 1)
    assert saved.version == 2
    with pytest.raises(VersionConflict):
        await store.save_space(live, 1)
    got = await store.get_space("a")
    assert got is not None and got.version == 2 and got.space == live
    assert await store.get_space("missing") is None


async def test_listing_by_state_in_order(store: Store) -> None:
    for sid, minutes in [("late", 50), ("soon", 5), ("mid", 20)]:
        await store.create_space(space(sid, minutes))
    live, _ = apply(space("mid", 20), Start("user:alice"), NOW)
    await store.save_space(live, 1)
    upcoming = await store.list_spaces({SpaceState.SCHEDULED})
    assert [s.id for s in upcoming] == ["soon", "late"]
    assert [s.id for s in await store.list_spaces({SpaceState.LIVE})] == ["mid"]
    assert len(await store.list_spaces()) == 3
    assert len(await store.list_spaces(limit=1)) == 1


async def test_reactions(store: Store) -> None:
    assert await store.reactions("a") == {}
    await store.add_reaction("a", "🔥")
    await store.add_reaction("a", "🔥", 2)
    await store.add_reaction("a", "👏")
    assert await store.reactions("a") == {"🔥": 3, "👏": 1}
    assert await store.ping()


async def test_sqlite_survives_restart(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "t.db")
    await first.add_user(user("alice"))
    await first.create_space(space("a"))
    await first.add_reaction("a", "👏")
    await first.close()
    second = SqliteStore(tmp_path / "t.db")
    assert (await second.get_user("alice")) is not None
    got = await second.get_space("a")
    assert got is not None and got.space == space("a")
    assert await second.reactions("a") == {"👏": 1}
    await second.close()
