"""Helpers shared by the tests that run several nodes on one Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from conftest import Node, run_cli


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
