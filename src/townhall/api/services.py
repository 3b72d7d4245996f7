"""The objects one API node holds, built once per app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..auth import Grant, TokenClaims, TokenIssuer
from ..cluster.node import Cluster, embedded
from ..config import Config
from ..store import Store
from ..watch.redis_counts import ListenerTally, LocalTally
from .bus import EventBus
from .service import SpaceService


@dataclass
class Services:
    """Shared state of one API node (one per process)."""

    config: Config
    store: Store
    issuer: TokenIssuer
    spaces: SpaceService
    bus: EventBus
    listeners: ListenerTally = field(default_factory=LocalTally)
    cluster: Cluster = field(default_factory=embedded)
    clock: Callable[[], float] = time.time
    started_at: float = field(default_factory=time.time)

    def verify(
        self, token: str, *, space_id: str | None = None, grant: Grant | None = None
    ) -> TokenClaims:
        return self.issuer.verify(token, now=self.clock(), space_id=space_id, grant=grant)

    def url(self, path: str) -> str:
        return self.config.base_url + path
