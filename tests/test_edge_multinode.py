"""Two ``townhall serve --redis`` nodes, one redis-server and a Varnish edge on loopback: a space
created through node 1 (its origin) is joined through node 2, and its audio is heard through an
edge that fetches from node 2 (which forwards LL-HLS to node 1). The edge checks tickets with
the cluster keyring it got from Redis (:mod:`townhall.edge.keysync`) and its log shipper feeds
the listener HyperLogLogs that node 1's state document reads.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import pytest

from cluster_helpers import add_cluster_user, fresh_db, node_clients, running_nodes
from conftest import Node, free_port
from test_live_path import RATE, auth, publish, tone_ratio, wait_heard
from townhall.edge.keysync import sync_keys
from townhall.edge.settings import load_edge_keys
from townhall.listen import PartReceived, follow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("varnishd") is None or shutil.which("varnishncsa") is None,
        reason="Debian package varnish is not installed",
    ),
]

DB = 3
"""Redis database of this module (the contract suite flushes 0, test_multinode uses 1)."""


@pytest.fixture(scope="module")
def cluster_url(redis_url: str) -> str:
    return fresh_db(redis_url, DB)


@pytest.fixture(scope="module")
def nodes(cluster_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    with running_nodes(tmp_path_factory.mktemp("edge-cluster"), cluster_url) as started:
        yield started


def _read_lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)
    out.put("")


@pytest.fixture(scope="module")
def edge(
    nodes: list[Node], cluster_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``townhall edge run`` in front of node 2, keys from Redis, shipping counts to Redis."""
    keys = sync_keys(cluster_url, tmp_path_factory.mktemp("edge") / "keys.json")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "townhall", "edge", "run", "--origin", nodes[1].url]
        + ["--listen", f"127.0.0.1:{port}", "--keys", str(keys), "--redis", cluster_url]
        + ["--name", "edge-t", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any(" ready on " in line for line in seen):
            left = deadline - time.monotonic()
            assert left > 0, f"edge did not get ready: {''.join(seen)}"
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line, f"edge exited ({proc.poll()}): {''.join(seen)}"
            seen.append(line)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)
        proc.stdout.close()


@pytest.fixture(scope="module")
def host_key(cluster_url: str) -> str:
    """An account every node knows (``townhall user add … --redis``)."""
    return add_cluster_user(cluster_url, "ines")


@pytest.fixture
async def http(nodes: list[Node]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with node_clients(nodes) as clients:
        yield clients


def on_edge(url: str, edge: str) -> str:
    """``url`` with its scheme and host replaced by the edge's."""
    parts, base = urlsplit(url), urlsplit(edge)
    return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def test_keysync_writes_the_cluster_keyring_for_the_edge(
    nodes: list[Node], cluster_url: str, tmp_path: Path
) -> None:
    out = sync_keys(cluster_url, tmp_path / "sub" / "keys.json")
    assert os.stat(out).st_mode & 0o777 == 0o600
    for node in nodes:  # every node adopted the one in Redis: the edge gets the same keys
        assert load_edge_keys(out) == load_edge_keys(node.data / "keys.json")
    empty = cluster_url.rsplit("/", 1)[0] + f"/{DB + 1}"
    with pytest.raises(ValueError, match="no keyring in Redis"):
        sync_keys(empty, tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()


async def test_space_from_node1_joined_on_node2_heard_and_counted_through_the_edge(
    nodes: list[Node],
    edge: str,
    host_key: str,
    http: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    n1, n2 = nodes
    c1, c2 = http
    r = await c1.post("/api/spaces", json={"title": "Via the edge"}, headers=auth(host_key))
    assert r.status_code == 201, r.text
    space = r.json()
    sid, host_token = space["id"], space["host_token"]
    joined = (await c2.post(f"/api/spaces/{sid}/join")).json()
    assert joined["playlist_url"].startswith(n2.url + "/hls/")
    playlist = on_edge(joined["playlist_url"], edge)
    speaker = await publish(n1.url, sid, host_token, 440)
    try:
        r = await c1.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(host_token))
        assert r.status_code in (200, 409), r.text
        await wait_heard(c1, sid, {space["host"]["id"]})
        await asyncio.sleep(2.2)  # the live window holds tone only from here on
        parts: list[PartReceived] = []
        report = await follow(playlist, seconds=3.0, keep_pcm=True, on_part=parts.append)
    finally:
        await speaker.close()
    assert report.pcm is not None, report
    pcm = report.pcm.astype(np.float64) / 32768
    assert len(pcm) >= 2.9 * RATE, len(pcm) / RATE
    assert tone_ratio(pcm[-2 * RATE :], 440) > 50, tone_ratio(pcm[-2 * RATE :], 440)
    assert all(urlsplit(p.uri).netloc == urlsplit(edge).netloc for p in parts)

    # a second listener fetches only what the edge already holds: the origin never sees its
    # ticket, so only the edge's log shipper can count it
    second = (await c2.post(f"/api/spaces/{sid}/join")).json()["playlist_url"]
    prefix = on_edge(second, edge).rsplit("/", 1)[0]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as via_edge:
        for part in parts[-3:]:
            name = urlsplit(part.uri).path.rsplit("/", 1)[1]
            got = await via_edge.get(f"{prefix}/{name}")
            assert got.status_code == 200, got.text
            assert got.headers["x-edge"] == "edge-t"
            assert got.headers["x-edge-cache"] == "hit", name

    deadline = time.monotonic() + 5  # the shipper flushes once a second
    listeners: dict[str, int] = {}
    while time.monotonic() < deadline:
        listeners = (await c1.get(f"/api/spaces/{sid}/state")).json()["listeners"]
        if listeners["current"] >= 2:
            break
        await asyncio.sleep(0.25)
    assert listeners["current"] == 2 and listeners["total"] == 2, listeners
    r = await c1.post(f"/api/spaces/{sid}/end", headers=auth(host_token))
    assert r.status_code == 200, r.text
