"""The ASGI application of one townhall node."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..auth import Keyring, TokenIssuer
from ..config import Config
from ..edge.logship import REPORT_PATH
from ..gate.fastjoin import FastJoin
from ..gate.service import build_gate
from ..store import Store
from ..store.opening import open_store
from ..store.redis import RedisStore
from ..store.redis_client import CONTROL_CONNECTIONS, redis_client
from ..watch.ingest import RequestCounter, consume, sample_origin
from ..watch.metrics import run_watch
from .bus import EventBus
from .metrics import HTTP_LATENCY, HTTP_REQUESTS
from .problems import BodyLimitMiddleware, install_problem_handlers
from .routes_clips import router as clips_router
from .routes_edge_report import REPORT_MAX_BYTES
from .routes_edge_report import router as edge_report_router
from .routes_gate import router as gate_router
from .routes_ops import router as ops_router
from .routes_revocations import router as revocations_router
from .routes_spaces import router as spaces_router
from .routes_trust import router as trust_router
from .routes_watch import router as watch_router
from .service import SpaceService
from .services import Services

logger = logging.getLogger(__name__)


def build_services(config: Config, store: Store | None = None) -> Services:
    store = store if store is not None else open_store(config)
    if config.redis_url:
        return _cluster_services(config, store, config.redis_url)
    keyring = Keyring.load_or_create(config.data / "keys.json")
    bus = EventBus()
    return Services(
        config=config,
        store=store,
        issuer=TokenIssuer(keyring),
        spaces=SpaceService(store, bus),
        bus=bus,
    )


def _cluster_services(config: Config, store: Store, redis_url: str) -> Services:
    """A node of a cluster sharing Redis: shared keys, events, origins and counts."""

    from ..cluster import Cluster, Forwarder, RedisEventBus, RedisRegistry, node_identity
    from ..cluster.health import NodeHeartbeat
    from ..cluster.keys import shared_keyring
    from ..watch.redis_counts import RedisTally

    redis = (
        store.redis
        if isinstance(store, RedisStore)
        else redis_client(redis_url, decode_responses=True)
    )
    # Leases and liveness get their own small pool: a join surge that keeps every request-path
    # connection busy must not delay the heartbeat that keeps this node the origin.
    control = redis_client(redis_url, decode_responses=True, max_connections=CONTROL_CONNECTIONS)
    node = node_identity(config)
    bus = RedisEventBus(redis, node.node_id)
    return Services(
        config=config,
        store=store,
        issuer=TokenIssuer(shared_keyring(redis_url, config.data / "keys.json")),
        spaces=SpaceService(store, bus),
        bus=bus,
        listeners=RedisTally(redis),
        cluster=Cluster(
            node,
            RedisRegistry(control, ttl_ms=config.origin_lease_ms, heartbeat_ms=config.heartbeat_ms),
            Forwarder(node.node_id),
            NodeHeartbeat(
                control, node, interval_ms=config.heartbeat_ms, ttl_ms=config.origin_lease_ms
            ),
            control=control,
        ),
    )


def create_app(config: Config, store: Store | None = None, *, media: bool = True) -> FastAPI:
    """Build the app. ``media=False`` gives a control-plane-only node (no WebRTC/HLS)."""
    services = build_services(config, store)
    services.gate = build_gate(services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = getattr(app.state, "media", None)
        await services.bus.start()
        await services.listeners.start()
        await services.cluster.start()
        if services.gate is not None:
            await services.gate.start()
        if hub is not None:
            await hub.startup()
        watch_task = asyncio.create_task(run_watch(services.watch, clock=services.clock))
        feeds = [asyncio.create_task(sample_origin(services.watch, clock=services.clock))]
        if config.redis_url:  # what the edges saw (townhall.watch.ingest)
            obs_redis = redis_client(config.redis_url, decode_responses=True)
            feeds.append(asyncio.create_task(consume(obs_redis, services.watch)))
        try:
            yield
        finally:
            watch_task.cancel()
            for feed in feeds:
                feed.cancel()
            if config.redis_url:
                await obs_redis.aclose()
            if services.gate is not None:
                await services.gate.close()
            if hub is not None:
                await hub.shutdown()
            await services.cluster.close()
            await services.listeners.close()
            await services.bus.close()
            await services.store.close()

    app = FastAPI(
        title="townhall",
        version=__version__,
        description="Live audio spaces: a real-time stage and an audience of any size.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.watch = services.watch
    app.state.media = None
    if media:
        from ..delivery.routes import router as hls_router
        from ..live.hub import MediaHub  # media stack imported only when used
        from .routes_whip import router as whip_router

        hub = MediaHub(services)
        services.spaces.media = hub
        app.state.media = hub
        app.include_router(whip_router)
        app.include_router(hls_router)
    install_problem_handlers(app)
    app.include_router(spaces_router)
    app.include_router(ops_router)
    app.include_router(clips_router)
    app.include_router(watch_router)
    app.include_router(trust_router)
    app.include_router(gate_router)
    app.include_router(revocations_router)
    app.include_router(edge_report_router)
    _install_web(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=config.max_body_bytes,
        larger={REPORT_PATH: REPORT_MAX_BYTES},
    )
    if services.gate is not None:  # outermost: anonymous joins never reach the router
        app.add_middleware(FastJoin, gate=services.gate)
    app.add_middleware(RequestCounter)  # the watch's origin load and connection samples
    return app


def _install_web(app: FastAPI) -> None:
    try:
        from ..web.routes import install
    except ImportError:
        return
    install(app)


class MetricsMiddleware:
    """Counts requests and latency by route template (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(name, f"{status // 100}xx").inc()
            HTTP_LATENCY.labels(name).observe(time.perf_counter() - started)
