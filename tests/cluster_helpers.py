"""Helpers shared by the tests that run several nodes on one Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import redis

from conftest import Node, run_cli, start_node


def fresh_db(redis_url: str, db: int) -> str:
    """The URL of database ``db`` on ``redis_url``'s server, emptied first."""
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@contextmanager
def running_nodes(base: Path, redis_url: str) -> Iterator[list[Node]]:
    """Two ``townhall serve --redis`` nodes (data in ``base``/n1, ``base``/n2), stopped after."""
    started: list[Node] = []
    try:
        for name in ("n1", "n2"):
            started.append(start_node(base / name, "--redis", redis_url))
        yield started
    finally:
        for node in started:
            node.stop()


def redis_json(url: str, key: str) -> dict[str, str] | None:
    """The JSON document stored at ``key`` (a lease, a heartbeat), or None."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        raw = client.get(key)
    finally:
        client.close()
    return None if raw is None else dict(json.loads(str(raw)))


def add_cluster_user(redis_url: str, name: str, *flags: str) -> str:
    """``townhall user add NAME --redis URL``: an account every node of the cluster knows."""
    out = run_cli("user", "add", name, "--verified", *flags, "--redis", redis_url, "--json")
    return str(json.loads(out.stdout)["api_key"])


@asynccontextmanager
async def node_clients(
    nodes: list[Node],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """One HTTP client per node (the first two), closed afterwards."""
    async with (
        httpx.AsyncClient(base_url=nodes[0].url, timeout=15, trust_env=False) as one,
        httpx.AsyncClient(base_url=nodes[1].url, timeout=15, trust_env=False) as two,
    ):
        yield one, two
