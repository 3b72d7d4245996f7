"""One way to open a Redis client: retries across a Redis restart instead of failing the
first command on a dead pooled connection, and waits for a pooled connection under a surge
instead of failing the command.

redis-py's default asyncio pool raises ``MaxConnectionsError`` the moment more than 100
commands are in flight at once (measured: a 1,500-listener join surge turned 331 joins into
500s). Redis serves one command at a time anyway, so more connections add no throughput: the
pool here is bounded and *blocking* (a command waits up to :data:`POOL_WAIT_SECONDS` for a
free connection), and only a wait longer than that surfaces as a connection error, which the
callers answer with 503 and ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

POOL_CONNECTIONS = 64
"""Connections a client keeps to Redis at most."""
CONTROL_CONNECTIONS = 8
"""Connections of a node's control client (origin leases and liveness: a few commands a
second, never queued behind request traffic)."""
POOL_WAIT_SECONDS = 2.0
"""How long a command waits for a free pooled connection before it fails."""
UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
"""What a command raises when Redis cannot be reached in time (down, restarting, or every
pooled connection busy for :data:`POOL_WAIT_SECONDS`): answered 503 with ``Retry-After``."""
RETRY_AFTER_SECONDS = 1
"""``Retry-After`` of that answer."""
UNAVAILABLE_CODE = "store_unavailable"
"""The ``code`` of that answer's problem document."""
UNAVAILABLE_DETAIL = "shared state is briefly unreachable; retry shortly"
"""Its ``detail``."""


def redis_client(
    url: str,
    *,
    max_connections: int = POOL_CONNECTIONS,
    pool_wait: float = POOL_WAIT_SECONDS,
    **options: Any,
) -> Redis:
    """A client whose commands retry (3 times, exponential backoff from 50 ms) on connection
    errors, whose idle pooled connections are health-checked before reuse, and whose pool
    makes a command wait (up to ``pool_wait`` s) rather than fail when all
    ``max_connections`` are busy."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=5,
        **options,
    )
    return Redis.from_pool(pool)
