"""A Redis hash mirrored in every node's memory: the block list and the revoked tickets.

Writes go to the hash and bump a version counter; every node polls the counter once a second
and reloads the hash when it moved, so readers (the join path, the media routes) only ever
read memory. Without Redis (an embedded node) the same fields are kept in a JSON file in the
node's data folder (replaced atomically on every change, read back at start), so a block or
a revocation outlives a restart there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from ..tasks import stop_task

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0

T = TypeVar("T")


def decode_records(values: list[str], record: Callable[..., T], what: str) -> list[T]:
    """``record(**json)`` of every stored value; malformed ones are logged and skipped."""
    out: list[T] = []
    for value in values:
        try:
            fields: Any = json.loads(value)
            out.append(record(**fields))
        except (TypeError, ValueError):
            logger.warning("ignoring a malformed %s: %r", what, value)
    return out


class SharedHash:
    """One Redis hash (``key``) and its version counter (``key:v``); ``on_reload`` receives
    every value (JSON text) whenever another node changed the hash. Without Redis, ``path``
    (if given) keeps the fields on disk instead."""

    def __init__(
        self,
        redis: Redis | None,
        key: str,
        on_reload: Callable[[list[str]], None],
        *,
        interval: float = REFRESH_SECONDS,
        path: Path | None = None,
    ) -> None:
        self._redis = redis
        self._path = path if redis is None else None
        self._fields: dict[str, str] = {}
        self.key = key
        self.version_key = f"{key}:v"
        self._on_reload = on_reload
        self._interval = interval
        self._version: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def put(self, field: str, value: str) -> None:
        if self._redis is not None:
            await self._redis.hset(self.key, field, value)
            await self._redis.incr(self.version_key)
        elif self._path is not None:
            self._fields[field] = value
            await self._save()

    async def delete(self, field: str) -> bool:
        """Whether the field was in the hash (or the file)."""
        if self._redis is not None:
            found = bool(await self._redis.hdel(self.key, field))
            await self._redis.incr(self.version_key)
            return found
        if self._path is not None and self._fields.pop(field, None) is not None:
            await self._save()
            return True
        return False

    async def _save(self) -> None:
        """Write the file; a full or broken disk is logged, and the change still holds in
        memory until the node stops."""
        try:
            await asyncio.to_thread(self._write, dict(self._fields))
        except OSError as exc:
            logger.error("could not save %s (%s): kept in memory only", self._path, exc)

    def _write(self, fields: dict[str, str]) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(fields, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _load(self) -> None:
        assert self._path is not None
        try:
            raw = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning("could not read %s (%s); starting empty", self._path, exc)
            return
        if isinstance(raw, dict):
            self._fields = {str(k): str(v) for k, v in raw.items()}
            self._on_reload(list(self._fields.values()))

    async def refresh(self) -> None:
        """Reload if the version counter moved (or on the first call)."""
        if self._redis is None:
            return
        version = await self._redis.get(self.version_key)
        text = None if version is None else str(version)
        if text == self._version and text is not None:
            return
        raw = await self._redis.hgetall(self.key)
        self._on_reload([str(v) for v in raw.values()])
        self._version = text

    async def start(self) -> None:
        if self._path is not None and not self._fields:
            await asyncio.to_thread(self._load)
        if self._redis is not None and self._task is None:
            await self.refresh()
            self._task = asyncio.create_task(self._poll())

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # Redis away: keep the last list, try again
                logger.warning("could not refresh %s", self.key, exc_info=True)
