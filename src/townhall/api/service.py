"""The adapter around the spaces core: read, apply, compare-and-set, publish, drive media."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..spaces import Action, Space, SpaceState, Visibility, apply, create_space
from ..store import Store, StoredSpace, User, VersionConflict
from .bus import EventBus
from .problems import Problem

logger = logging.getLogger(__name__)

MAX_RETRIES = 8


class MediaHooks(Protocol):
    """What the control plane tells the media plane (the live runner on this node)."""

    async def space_changed(self, space: Space, events: Sequence[Any]) -> None: ...


class NoMedia:
    """Media hooks for a control-plane-only node."""

    async def space_changed(self, space: Space, events: Sequence[Any]) -> None:
        return None


def new_space_id() -> str:
    return secrets.token_urlsafe(8).replace("-", "x").replace("_", "y")


class SpaceService:
    """Every change to a space goes through :meth:`act`, which is safe across nodes."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        media: MediaHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bus = bus
        self.media: MediaHooks = media or NoMedia()
        self._clock = clock
        self._recent: dict[str, tuple[float, StoredSpace]] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def create(
        self,
        host: User,
        *,
        title: str,
        description: str | None,
        scheduled_start: datetime | None,
        visibility: str,
    ) -> StoredSpace:
        space, events = create_space(
            new_space_id(),
            title,
            host.identity,
            self.now(),
            description=description,
            scheduled_start=scheduled_start,
            visibility=Visibility(visibility),
        )
        stored = await self.store.create_space(space)
        await self._emit(space, events)
        return stored

    async def get_recent(self, space_id: str, max_age: float = 0.5) -> StoredSpace:
        """The space as read at most ``max_age`` seconds ago: for the media path, where a
        listener asks several times a second and a half-second-old view is good enough
        (changes made on this node are seen at once)."""
        now = self._clock()
        hit = self._recent.get(space_id)
        if hit is not None and now - hit[0] <= max_age:
            return hit[1]
        try:
            stored = await self.get(space_id)
        except Problem:
            raise
        except Exception:
            # the store is unreachable (e.g. Redis restarting): live media needs no store, so
            # keep serving from the last view we had rather than failing every listener
            if hit is None:
                raise
            logger.warning(
                "store unavailable; serving space %s from a %.1f s old view", space_id, now - hit[0]
            )
            return hit[1]
        if len(self._recent) > 10_000:
            self._recent.clear()
        self._recent[space_id] = (now, stored)
        return stored

    async def get(self, space_id: str) -> StoredSpace:
        stored = await self.store.get_space(space_id)
        if stored is None:
            raise Problem(404, f"no space with id {space_id!r}", code="no_such_space")
        return stored

    async def act(self, space_id: str, action: Action) -> tuple[Space, list[Any]]:
        """Apply ``action`` with optimistic concurrency; raise SpaceError when refused."""
        for _ in range(MAX_RETRIES):
            stored = await self.get(space_id)
            space, events = apply(stored.space, action, self.now())
            if space is stored.space or space == stored.space:
                await self._emit(space, events)  # nothing to store (e.g. a reaction)
                return space, list(events)
            try:
                await self.store.save_space(space, stored.version)
            except VersionConflict:
                continue
            await self._emit(space, events)
            return space, list(events)
        raise Problem(
            503, "space is too busy; try again", code="busy", headers={"Retry-After": "1"}
        )

    async def list(self, states: set[SpaceState] | None, limit: int = 100) -> list[Space]:
        return await self.store.list_spaces(states, limit)

    async def _emit(self, space: Space, events: Sequence[Any]) -> None:
        self._recent.pop(space.id, None)
        for event in events:
            payload: dict[str, Any] = event.to_dict()
            self.bus.publish(space.id, payload)
        if events:
            try:
                await self.media.space_changed(space, events)
            except Exception:  # the control plane must not fail because media did
                logger.exception("media hook failed for space %s", space.id)
