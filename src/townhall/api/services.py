"""The objects one API node holds, built once per app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..auth import Grant, TokenClaims, TokenIssuer
from ..auth.links import Link, verify_link
from ..cluster.node import Cluster, embedded
from ..config import Config
from ..gate.service import Gate
from ..store import Store
from ..watch.observations import Observation
from ..watch.redis_counts import ListenerTally, LocalTally
from ..watch.watch import Watch
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
    watch: Watch = field(default_factory=Watch)
    started_at: float = field(default_factory=time.time)
    gate: Gate | None = None
    """Admission for joins (rate limits, waiting room, shedding); set by ``build_services``."""

    _verified: dict[tuple[str, str | None, Grant | None], TokenClaims] = field(
        default_factory=dict, repr=False
    )

    def verify(
        self, token: str, *, space_id: str | None = None, grant: Grant | None = None
    ) -> TokenClaims:
        """Verify a token; signatures already checked are remembered (a listener presents the
        same ticket several times a second), expiry is checked on every call."""
        now = self.clock()
        key = (token, space_id, grant)
        claims = self._verified.get(key)
        if claims is not None and now < claims.expires_at:
            return claims
        claims = self.issuer.verify(token, now=now, space_id=space_id, grant=grant)
        if len(self._verified) >= 200_000:
            self._verified.clear()
        self._verified[key] = claims
        return claims

    def verify_link(self, link: str, *, space_id: str) -> Link:
        """Verify a listener link (``{kid}/{exp}/{sub64}/{jti}/{mac}``) for ``space_id`` with
        this node's keys; raise :class:`~townhall.auth.TokenError` like :meth:`verify`. An MD5
        and an HMAC: cheap enough to need no cache."""
        return verify_link(self.issuer.keyring, link, space_id=space_id, now=self.clock())

    def url(self, path: str) -> str:
        return self.config.base_url + path

    def observe(self, obs: Observation) -> None:
        """Tell the watch what was answered (never fails the request)."""
        try:
            self.watch.observe(obs)
        except Exception:  # pragma: no cover - the watch must not break serving
            pass
