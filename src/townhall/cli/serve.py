"""``townhall serve``: run one node."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import typer
import uvicorn

from .common import console, fail, node_config


def serve(
    host: str = typer.Option(None, "--host", help="Bind address [env TOWNHALL_HOST; 127.0.0.1]."),
    port: int = typer.Option(None, "--port", help="Port; 0 picks a free one [8080]."),
    data: Path = typer.Option(None, "--data", help="Data folder [./data]."),
    redis: str = typer.Option(None, "--redis", help="Redis URL for scale-out state."),
    rtc_address: str = typer.Option(
        None, "--rtc-address", help="IP announced in ICE candidates (node IP; 127.0.0.1 in tests)."
    ),
    ice_server: list[str] = typer.Option(
        None, "--ice-server", help="STUN/TURN URL offered to peers; repeatable; none by default."
    ),
    public_url: str = typer.Option(None, "--public-url", help="Base URL clients should use."),
    log_level: str = typer.Option(None, "--log-level", help="debug, info, warning, error."),
    admit_rate: float = typer.Option(
        None, "--admit-rate", help="New listeners admitted per second per space [200]."
    ),
    capacity: int = typer.Option(
        None, "--capacity", help="Active listeners per space before admission pauses [none]."
    ),
    join_rate_source: float = typer.Option(
        None, "--join-rate-source", help="Join requests/s per source address [5]; 0 disables."
    ),
    join_rate_network: float = typer.Option(
        None, "--join-rate-network", help="Join requests/s per /24 or /48 network [100]."
    ),
    join_rate_global: float = typer.Option(
        None, "--join-rate-global", help="Join requests/s in all [20000]; 0 disables."
    ),
) -> None:
    """Run a townhall node: API, stage (WHIP), LL-HLS origin and web pages."""
    config = node_config(
        host=host,
        port=port,
        data=data,
        redis_url=redis,
        rtc_address=rtc_address,
        ice_servers=tuple(ice_server) if ice_server else None,
        public_url=public_url,
        log_level=log_level,
        admit_rate=admit_rate,
        capacity=capacity,
        join_rate_source=join_rate_source,
        join_rate_network=join_rate_network,
        join_rate_global=join_rate_global,
    )
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
    except OSError as exc:
        fail(f"cannot listen on {config.host}:{config.port}: {exc}")
    config.port = sock.getsockname()[1]
    try:
        config.data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot use {config.data} as the data folder: {exc}")
    if config.redis_url:
        _check_redis(config.redis_url)
    from ..api.app import create_app

    try:
        app = create_app(config)
    except ValueError as exc:
        fail(str(exc))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=config.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=3,
            lifespan="on",
        )
    )
    console.print(f"townhall listening on {config.base_url} (data in {config.data})")
    print(f"townhall listening on {config.base_url}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


def _check_redis(url: str) -> None:
    """Fail with a sentence, not a traceback, when the Redis a node is told to share is not
    there at start (once running, a Redis outage is answered with 503 store_unavailable)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as exc:
        fail(f"--redis {url!r}: {exc}")
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(f"cannot reach Redis at {url}: {exc}")
    finally:
        client.close()
