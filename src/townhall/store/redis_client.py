"""One way to open a Redis client: retries across a Redis restart instead of failing the
first command on a dead pooled connection."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def redis_client(url: str, **options: Any) -> Redis:
    """A client whose commands retry (3 times, exponential backoff from 50 ms) on connection
    errors, and whose idle pooled connections are health-checked before reuse."""
    return Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=5,
        **options,
    )
