"""Origin failover with real processes: two ``townhall serve --redis`` nodes on loopback, a
speaker (aiortc WHIP client with reconnection) and a listener (``townhall.listen.follow``)
both talking to node 2; node 1 runs the space and is killed with SIGKILL mid-space.

Kept and asserted: node 2 (the standby) holds the origin lease within 5 s and serves new
parts; the speaker reconnects by itself and is heard on node 2; the listener keeps going with
its positions strictly increasing (no rewind) after a short gap; no (msn, part) number the dead
origin published is reused; the recording on node 2 starts at segment 0 and misses at most
one segment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import m3u8
import pytest
import redis

from cluster_helpers import add_cluster_user, fresh_db, node_clients, redis_json, running_nodes
from conftest import Node, start_node
from test_live_path import RATE, auth, tone_ratio, wait_heard
from townhall.listen import PartReceived, RetryPolicy, follow
from townhall.stage import RtcSettings, ToneTrack, WhipClient

pytestmark = pytest.mark.slow

RTC = RtcSettings(announced_address="127.0.0.1")


@pytest.fixture
def cluster_url(redis_url: str) -> str:
    return fresh_db(redis_url, 2)  # db 2: other suites use 0 and 1


@pytest.fixture
def nodes(cluster_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    with running_nodes(tmp_path, cluster_url) as started:
        yield started


@pytest.fixture
def host_key(cluster_url: str) -> str:
    """An account every node knows (``townhall user add … --redis``)."""
    return add_cluster_user(cluster_url, "ola")


@pytest.fixture
async def http(nodes: list[Node]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with node_clients(nodes) as clients:
        yield clients


async def wait_for(what: str, check: object, timeout: float, step: float = 0.05) -> float:
    """Poll ``check()`` (sync or async) until truthy; returns the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        await asyncio.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")


def positions(text: str) -> list[tuple[int, int]]:
    pl = m3u8.loads(text)
    out: list[tuple[int, int]] = []
    msn = pl.media_sequence or 0
    for seg in pl.segments:
        out.extend((msn, i) for i, _ in enumerate(seg.parts))
        msn += 1
    return out


async def watch_origin(url: str, seen: list[tuple[int, int]], stop: asyncio.Event) -> None:
    """Every part the origin publishes, straight from it, with blocking reloads."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as c:
        params: dict[str, int] = {}
        while not stop.is_set():
            try:
                r = await c.get(url, params=params)
            except httpx.HTTPError:
                return  # killed
            if r.status_code != 200:
                return
            seen.extend(p for p in positions(r.text) if not seen or p > seen[-1])
            hint = r.text.rsplit('URI="part', 1)[-1].split('"')[0].removesuffix(".m4s")
            msn, part = hint.split(".")
            params = {"_HLS_msn": int(msn), "_HLS_part": int(part)}


async def test_killed_origin_is_taken_over_by_its_standby(
    nodes: list[Node],
    host_key: str,
    cluster_url: str,
    http: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    n1, n2 = nodes
    c1, c2 = http
    r = await c1.post("/api/spaces", json={"title": "Failover"}, headers=auth(host_key))
    assert r.status_code == 201, r.text
    sid, host_token = r.json()["id"], r.json()["host_token"]
    assert (redis_json(cluster_url, f"th:origin:{sid}") or {}).get("url") == n1.url
    await wait_for(
        "node 2 becomes the standby",
        lambda: (redis_json(cluster_url, f"th:standby:{sid}") or {}).get("url") == n2.url,
        5,
    )

    speaker = WhipClient(f"{n2.url}/api/spaces/{sid}/whip", host_token, RTC, reconnect=True)
    await speaker.publish(ToneTrack(440, amplitude=0.3))
    await speaker.wait_connected(10)
    assert (
        await c2.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(host_token))
    ).status_code in (200, 409)
    await wait_heard(c1, sid, {"user:ola"})

    published: list[tuple[int, int]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_origin(f"{n1.url}/hls/{sid}/live.m3u8", published, stop))
    received: list[PartReceived] = []
    joined = (await c2.post(f"/api/spaces/{sid}/join")).json()
    listener = asyncio.create_task(
        follow(
            joined["playlist_url"],
            seconds=None,
            on_part=received.append,
            keep_pcm=True,
            stop=stop,
            retry=RetryPolicy(attempts=8, backoff=0.25, max_backoff=1.0),
        )
    )
    try:
        await asyncio.sleep(6.5)  # three segments: the standby has recorded some
        assert received, "the listener got nothing before the failover"

        n1.process.kill()  # SIGKILL: no lease release, no goodbye
        killed = time.monotonic()
        n1.process.wait(5)
        await asyncio.wait_for(watcher, 5)
        last_published = published[-1]

        leased = await wait_for(
            "node 2 holds the origin lease",
            lambda: (redis_json(cluster_url, f"th:origin:{sid}") or {}).get("url") == n2.url,
            8,
        )

        async def serving() -> bool:
            r = await c2.get(f"/hls/{sid}/live.m3u8")
            return r.status_code == 200 and bool(positions(r.text))

        served = await wait_for("node 2 serves new parts", serving, 8)
        takeover = served - killed
        assert leased - killed <= 5.0 and takeover <= 5.0, (leased - killed, takeover)

        first_new = positions((await c2.get(f"/hls/{sid}/live.m3u8")).text)[0]
        assert first_new[0] > last_published[0], (first_new, last_published)  # no reuse
        text = (await c2.get(f"/hls/{sid}/live.m3u8")).text
        assert "#EXT-X-DISCONTINUITY\n" in text and "#EXT-X-DISCONTINUITY-SEQUENCE:0" in text

        await wait_for("the speaker reconnects", lambda: speaker.reconnects >= 1, 12, 0.1)
        reconnected = time.monotonic() - killed
        await wait_heard(c2, sid, {"user:ola"})
        before = len(received)
        await asyncio.sleep(4.0)
        assert len(received) > before + 6, "the listener stopped after the failover"
    finally:
        stop.set()
        report = await asyncio.wait_for(listener, 15)
        await speaker.close()

    order = [(p.msn, p.part if p.part is not None else -1) for p in received]
    assert order == sorted(order) and len(set(order)) == len(order), order  # no rewind
    arrivals = [p.received_at for p in received]
    gap = max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert gap < 8.0, gap
    assert report.pcm is not None
    tail = report.pcm[-2 * RATE :].astype(float)
    assert tone_ratio(tail, 440) > 50, "the reconnected speaker is not heard by the listener"

    assert (await c2.post(f"/api/spaces/{sid}/end", headers=auth(host_token))).status_code == 200
    replay_path = n2.data / "spaces" / sid / "hls" / "replay.m3u8"
    await wait_for("the replay on node 2", replay_path.exists, 10)
    msns = [
        int(s.uri.removeprefix("seg").removesuffix(".m4s"))
        for s in m3u8.load(str(replay_path)).segments
    ]
    missing = sorted(set(range(msns[0], msns[-1] + 1)) - set(msns))
    assert msns[0] == 0 and len(missing) <= 1, (msns, missing)
    print(
        f"\nfailover: lease on node 2 after {leased - killed:.2f} s, new parts after "
        f"{takeover:.2f} s, speaker back after {reconnected:.2f} s, listener gap {gap:.2f} s, "
        f"stalls {report.stalls}, recording misses msn {missing} "
        f"(old origin's last part {last_published}, new origin's first {first_new})"
    )


@pytest.mark.parametrize("node_2_starts", ["at_once", "after_the_leases_expired"])
async def test_an_orphaned_space_is_taken_over_past_every_published_number(
    host_key: str, cluster_url: str, tmp_path: Path, node_2_starts: str
) -> None:
    """Node 1 runs a space and is killed before any other node existed (nobody followed it).
    Node 2 starts afterwards: at once (it becomes the standby of a dead origin and sees
    nothing), or once the lease and node 1's liveness key have expired (it finds the space live
    with no lease and its home node dead). Either way it takes the space over at a number
    beyond anything node 1 published, with a discontinuity, and a speaker publishing to node 2
    is heard there."""
    n1 = start_node(tmp_path / "n1", "--redis", cluster_url)
    n2: Node | None = None
    try:
        async with httpx.AsyncClient(base_url=n1.url, timeout=15, trust_env=False) as c1:
            r = await c1.post("/api/spaces", json={"title": "Orphan"}, headers=auth(host_key))
            assert r.status_code == 201, r.text
            sid, host_token = r.json()["id"], r.json()["host_token"]
            await asyncio.sleep(4.5)  # two segments
            published = positions((await c1.get(f"/hls/{sid}/live.m3u8")).text)
        assert published, "node 1 published nothing"
        n1.process.kill()  # SIGKILL: no lease release, no goodbye
        killed = time.monotonic()
        if node_2_starts == "after_the_leases_expired":
            client = redis.Redis.from_url(cluster_url)
            try:
                await wait_for(
                    "the dead origin's lease and liveness expire",
                    lambda: not client.exists(f"th:origin:{sid}") and not client.keys("th:node:*"),
                    10,
                    0.1,
                )
            finally:
                client.close()
        n2 = start_node(tmp_path / "n2", "--redis", cluster_url)
        leased = await wait_for(
            "node 2 holds the orphan's origin lease",
            lambda: (redis_json(cluster_url, f"th:origin:{sid}") or {}).get("url") == n2.url,
            20,
            0.1,
        )
        async with httpx.AsyncClient(base_url=n2.url, timeout=15, trust_env=False) as c2:

            async def new_parts() -> bool:
                r = await c2.get(f"/hls/{sid}/live.m3u8")
                return r.status_code == 200 and bool(positions(r.text))

            await wait_for("node 2 serves new parts", new_parts, 10, 0.1)
            text = (await c2.get(f"/hls/{sid}/live.m3u8")).text
            assert min(positions(text))[0] > max(published)[0]  # no number reused
            assert "#EXT-X-DISCONTINUITY\n" in text and "#EXT-X-DISCONTINUITY-SEQUENCE:0" in text

            speaker = WhipClient(f"{n2.url}/api/spaces/{sid}/whip", host_token, RTC)
            await speaker.publish(ToneTrack(440, amplitude=0.3))
            try:
                await speaker.wait_connected(10)
                await c2.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(host_token))
                await wait_heard(c2, sid, {"user:ola"})
            finally:
                await speaker.close()
        print(f"\norphan takeover: lease on node 2 {leased - killed:.2f} s after the kill")
    finally:
        n1.stop()
        if n2 is not None:
            n2.stop()
