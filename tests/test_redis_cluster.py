"""The cluster parts against a real redis-server: origin leases, cross-node events, listener
HyperLogLogs and the shared signing keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from townhall.cluster import NodeInfo, RedisEventBus, RedisRegistry, node_identity
from townhall.cluster.forward import relative_location
from townhall.cluster.keys import shared_keyring
from townhall.config import Config
from townhall.watch.edge_counts import BUCKET_TTL_SECONDS, all_key, bucket_keys
from townhall.watch.redis_counts import RedisTally

A = NodeInfo("a:1", "http://127.0.0.1:1")
B = NodeInfo("b:2", "http://127.0.0.1:2")


@pytest.fixture
def db_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/2"


@pytest.fixture
async def r(db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(db_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_one_origin_per_space_lease_renewed_and_released(r: Redis) -> None:
    a, b = RedisRegistry(r, ttl_ms=300), RedisRegistry(r, ttl_ms=300)
    assert await a.claim_origin("s", A) == A
    assert await b.claim_origin("s", B) == A  # taken: b learns the owner
    assert await a.claim_origin("s", A) == A  # a restarted node keeps its own lease
    assert await b.origin_of("s") == A.url and await b.home_of("s") == A.url
    await a.start()  # heartbeat every 100 ms
    try:
        await asyncio.sleep(0.8)
        assert 0 < await r.pttl("th:origin:s") <= 300
        await b.release("s", B)  # not b's to release
        assert await r.exists("th:origin:s")
    finally:
        await a.close()
    await asyncio.sleep(0.4)  # no heartbeat: the lease runs out by itself
    assert not await r.exists("th:origin:s")
    assert await b.claim_origin("s", B) == B
    await a.renew()  # a notices it lost the lease and stops renewing it
    assert await r.get("th:origin:s") == B.to_json()
    await b.release("s", B)
    assert await r.get("th:origin:s") is None
    assert await b.home_of("s") == B.url  # the last origin holds the recording


async def test_events_cross_nodes_once_and_watchers_see_only_remote_ones(r: Redis) -> None:
    one, two = RedisEventBus(r, "one"), RedisEventBus(r, "two")
    await one.start()
    await two.start()
    remote: list[tuple[str, dict[str, Any], float]] = []

    async def handler(space_id: str, event: dict[str, Any]) -> None:
        remote.append((space_id, event, time.monotonic()))

    try:
        await one.watch("s", handler)
        async with one.subscribe("s") as q1, two.subscribe("s") as q2:
            sent = time.monotonic()
            two.publish("s", {"kind": "speaker_muted", "identity": "user:x"})
            assert (await asyncio.wait_for(q1.get(), 2))["kind"] == "speaker_muted"
            assert (await asyncio.wait_for(q2.get(), 2))["kind"] == "speaker_muted"
            one.publish("s", {"kind": "speaker_unmuted", "identity": "user:x"})
            assert (await asyncio.wait_for(q2.get(), 2))["kind"] == "speaker_unmuted"
            assert (await asyncio.wait_for(q1.get(), 2))["kind"] == "speaker_unmuted"
            two.publish("other", {"kind": "speaker_muted"})
            await asyncio.sleep(0.2)
            assert q1.empty() and q2.empty()  # each event once; other spaces not delivered
        assert [(s, e["kind"]) for s, e, _ in remote] == [("s", "speaker_muted")]
        assert remote[0][2] - sent < 0.1
        await one.unwatch("s")
        two.publish("s", {"kind": "speaker_muted"})
        await asyncio.sleep(0.2)
        assert len(remote) == 1
        assert not one.reading() and not two.reading()  # no subscriber, no watcher: no reads
    finally:
        await one.close()
        await two.close()


async def test_listener_counts_are_distinct_across_nodes_and_edges(r: Redis) -> None:
    node1, node2 = RedisTally(r), RedisTally(r)
    now = 1_000_005.0
    for i in range(50):
        node1.touch("s", f"anon:{i}", now)
    for i in range(25, 75):  # half of these were already seen through node 1
        node2.touch("s", f"anon:{i}", now - 12)
    node2.touch("s", "anon:old", now - 45)  # outside the 30 s window
    edge_key = bucket_keys("s", now)[-1]
    await r.pfadd(edge_key, "edge:1", "anon:3")  # an edge reports through the shared keys
    await r.pfadd(all_key("s"), "edge:1", "anon:3")
    await node2.flush()
    counts = await node1.counts("s", now)  # flushes node 1's pending touches first
    assert counts.current == 76 and counts.total == 77 and counts.peak == 76
    later = await node2.counts("s", now + 60)
    assert later.current == 0 and later.peak == 76 and later.total == 77
    assert 0 < await r.ttl(edge_key) <= BUCKET_TTL_SECONDS


async def test_flush_runs_in_the_background(r: Redis) -> None:
    tally = RedisTally(r)
    await tally.start()
    try:
        tally.touch("s", "anon:1", time.time())
        assert await r.pfcount(all_key("s")) == 0  # batched, not one call per request
        await asyncio.sleep(1.3)
        assert await r.pfcount(all_key("s")) == 1
    finally:
        await tally.close()


def test_nodes_share_one_keyring(db_url: str, tmp_path: Path) -> None:
    import redis

    redis.Redis.from_url(db_url).delete("th:keyring")
    first = shared_keyring(db_url, tmp_path / "one" / "keys.json")
    second = shared_keyring(db_url, tmp_path / "two" / "keys.json")
    assert first.active == second.active
    assert (tmp_path / "two" / "keys.json").read_text() == (
        tmp_path / "one" / "keys.json"
    ).read_text()


def test_node_identity_and_location_rewrite() -> None:
    node = node_identity(Config(host="127.0.0.1", port=8123, public_url="https://lb.example"))
    assert node.url == "http://127.0.0.1:8123" and node.node_id.endswith(":8123")
    named = node_identity(Config(port=1, node_id="n7", node_url="http://10.0.0.7:8080/"))
    assert named == NodeInfo("n7", "http://10.0.0.7:8080")
    assert relative_location("http://o:1/api/spaces/x/whip/y", "http://o:1") == (
        "/api/spaces/x/whip/y"
    )
    assert relative_location("/api/spaces/x/whip/y", "http://o:1") == "/api/spaces/x/whip/y"
    assert relative_location("http://other/x", "http://o:1") == "http://other/x"
