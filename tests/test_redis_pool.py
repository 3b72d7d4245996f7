"""The shared Redis client under a surge, against a real ``redis-server``: more commands in
flight than pooled connections wait for one instead of failing (redis-py's default asyncio
pool raises ``MaxConnectionsError`` past 100: a join surge once turned 331 joins into 500s),
and a wait longer than the pool's limit is a connection error the API answers with 503."""

from __future__ import annotations

import asyncio
import time

import pytest

from townhall.store.redis_client import UNAVAILABLE, redis_client


async def test_commands_beyond_the_pool_wait_for_a_connection(redis_url: str) -> None:
    client = redis_client(redis_url, max_connections=4, pool_wait=5.0)
    try:
        started = time.monotonic()
        # each BLPOP holds its connection for 0.1 s: 16 of them need 4 rounds of 4
        results = await asyncio.gather(
            *(client.blpop([f"test:pool:empty:{i}"], timeout=0.1) for i in range(16))
        )
        took = time.monotonic() - started
    finally:
        await client.aclose()
    assert results == [None] * 16
    assert took >= 0.35  # they queued for the 4 connections (and none failed)


async def test_a_wait_longer_than_the_limit_is_a_connection_error(redis_url: str) -> None:
    client = redis_client(redis_url, max_connections=1, pool_wait=0.2)
    watcher = redis_client(redis_url, decode_responses=True)
    try:
        holder = asyncio.create_task(client.blpop(["test:pool:held"], timeout=2))
        for _ in range(100):  # until the server has the BLPOP blocked on the one connection
            clients = await watcher.client_list()
            if any(c.get("cmd") == "blpop" for c in clients):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the BLPOP never blocked")
        with pytest.raises(UNAVAILABLE):
            await client.get("test:pool:other")
        assert await holder is None
        assert await client.get("test:pool:other") is None  # the pool works again
    finally:
        await client.aclose()
        await watcher.aclose()
