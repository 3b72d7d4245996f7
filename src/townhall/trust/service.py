"""The thin adapter: a verified-host index kept fresh from the store, and assessments of
stored spaces for the space view, the state document and ``/ops/flags``."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..spaces import Space
from ..store import Store, User
from .assess import TrustAssessment, assess_space
from .lookalike import VerifiedHost, VerifiedIndex

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
"""How old the verified-host index may get before it is rebuilt from ``list_users``."""


class IndexCache:
    """One store's :class:`VerifiedIndex`, rebuilt at most every ``refresh`` seconds (one
    rebuild at a time; the old index keeps serving if the store fails)."""

    def __init__(
        self, refresh: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh = refresh
        self.clock = clock
        self._index: VerifiedIndex | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._index = None

    async def get(self, store: Store) -> VerifiedIndex:
        if self._index is not None and self.clock() - self._at < self.refresh:
            return self._index
        async with self._lock:
            if self._index is not None and self.clock() - self._at < self.refresh:
                return self._index
            try:
                users = await store.list_users()
            except Exception:
                if self._index is None:
                    raise
                logger.exception("listing users for the verified index failed; keeping the old")
                self._at = self.clock()
                return self._index
            hosts = tuple(
                VerifiedHost(u.name, u.display_name)
                for u in sorted(users, key=lambda u: u.name)
                if u.verified
            )
            if self._index is None or self._index.hosts != hosts:
                self._index = VerifiedIndex.build(hosts)
            self._at = self.clock()
            return self._index


_caches: weakref.WeakKeyDictionary[Store, IndexCache] = weakref.WeakKeyDictionary()


def cache_for(store: Store) -> IndexCache:
    """The index cache of ``store`` (one per store object in this process)."""
    cache = _caches.get(store)
    if cache is None:
        cache = _caches[store] = IndexCache()
    return cache


async def verified_index(store: Store) -> VerifiedIndex:
    return await cache_for(store).get(store)


def host_handle(space: Space) -> str:
    kind, _, name = space.host.partition(":")
    return name if kind == "user" else space.host


def assess_stored(space: Space, host_user: User | None, index: VerifiedIndex) -> TrustAssessment:
    """Assess a space whose host account is ``host_user`` (None when it is gone)."""
    handle = host_handle(space)
    return assess_space(
        space.title,
        space.description,
        host_user.display_name if host_user else handle,
        bool(host_user and host_user.verified),
        handle,
        index,
    )


async def assess(store: Store, space: Space, host_user: User | None) -> TrustAssessment:
    return assess_stored(space, host_user, await verified_index(store))


async def trust_summary(store: Store, space: Space, host_user: User | None) -> dict[str, Any]:
    """The ``trust`` member of the space view and the state document."""
    assessment = await assess(store, space, host_user)
    return {
        "verified_host": bool(host_user and host_user.verified),
        "flags": [f.public() for f in assessment.flags],
    }
