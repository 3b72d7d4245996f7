"""SQLite store: the embedded default, one file under the data folder, survives restarts."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from ..spaces.model import Space, SpaceState
from .base import DuplicateError, StoredSpace, User, VersionConflict
from .ordering import space_sort_key

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    verified INTEGER NOT NULL,
    operator INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS spaces (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spaces_state ON spaces(state);
CREATE TABLE IF NOT EXISTS reactions (
    space_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (space_id, emoji)
);
"""


class SqliteStore:
    """A :class:`~townhall.store.base.Store` in one SQLite file (WAL mode).

    Calls are sub-millisecond local transactions, so they run inline on the event loop;
    a lock keeps the one connection safe if a thread ever shares it.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    async def add_user(self, user: User) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        user.name,
                        user.key_hash,
                        user.display_name,
                        int(user.verified),
                        int(user.operator),
                        user.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise DuplicateError(f"user {user.name!r} already exists") from None

    async def get_user(self, name: str) -> User | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    async def find_user_by_key(self, key_hash: str) -> User | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM users WHERE key_hash = ?", (key_hash,)).fetchone()
        return _user(row) if row else None

    async def list_users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    async def create_space(self, space: Space) -> StoredSpace:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO spaces VALUES (?, 1, ?, ?)",
                    (space.id, space.state.value, json.dumps(space.to_dict())),
                )
        except sqlite3.IntegrityError:
            raise DuplicateError(f"space {space.id!r} already exists") from None
        return StoredSpace(space, 1)

    async def get_space(self, space_id: str) -> StoredSpace | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, doc FROM spaces WHERE id = ?", (space_id,)
            ).fetchone()
        if row is None:
            return None
        return StoredSpace(Space.from_dict(json.loads(row[1])), int(row[0]))

    async def save_space(self, space: Space, expected_version: int) -> StoredSpace:
        with self._lock:
            cur = self._db.execute(
                "UPDATE spaces SET version = version + 1, state = ?, doc = ? "
                "WHERE id = ? AND version = ?",
                (space.state.value, json.dumps(space.to_dict()), space.id, expected_version),
            )
        if cur.rowcount != 1:
            raise VersionConflict(f"space {space.id!r} changed; expected v{expected_version}")
        return StoredSpace(space, expected_version + 1)

    async def list_spaces(
        self, states: Iterable[SpaceState] | None = None, limit: int = 100
    ) -> list[Space]:
        with self._lock:
            if states is None:
                rows = self._db.execute("SELECT doc FROM spaces").fetchall()
            else:
                wanted = [s.value for s in states]
                marks = ",".join("?" * len(wanted)) or "''"
                rows = self._db.execute(
                    f"SELECT doc FROM spaces WHERE state IN ({marks})", wanted
                ).fetchall()
        spaces = [Space.from_dict(json.loads(r[0])) for r in rows]
        return sorted(spaces, key=space_sort_key)[:limit]

    async def add_reaction(self, space_id: str, emoji: str, count: int = 1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO reactions VALUES (?, ?, ?) "
                "ON CONFLICT(space_id, emoji) DO UPDATE SET count = count + excluded.count",
                (space_id, emoji, count),
            )

    async def reactions(self, space_id: str) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT emoji, count FROM reactions WHERE space_id = ?", (space_id,)
            ).fetchall()
        return {str(e): int(c) for e, c in rows}

    async def ping(self) -> bool:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()
        return True

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def _user(row: tuple[object, ...]) -> User:
    name, key_hash, display_name, verified, operator, created_at = row
    return User(
        name=str(name),
        key_hash=str(key_hash),
        display_name=str(display_name),
        verified=bool(verified),
        operator=bool(operator),
        created_at=float(created_at),  # type: ignore[arg-type]
    )
