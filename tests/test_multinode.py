"""Two real ``townhall serve --redis`` nodes on loopback sharing one redis-server: a space
created through node 1 runs its media there (the origin); node 2 answers for it, forwards
WHIP and LL-HLS to node 1, and moderation done through node 2 reaches node 1's mixer.

(No edge in this test: ``townhall edge run`` does not exist yet.)
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import redis

from cluster_helpers import add_cluster_user, fresh_db, node_clients, redis_json, running_nodes
from conftest import Node
from test_live_path import (
    RATE,
    _decode_recording,
    _silence_starts,
    auth,
    bring_on_stage,
    ffmpeg_pcm,
    publish,
    tone_ratio,
    wait_heard,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_url(redis_url: str) -> str:
    return fresh_db(redis_url, 1)  # db 1: the contract suite flushes db 0


@pytest.fixture(scope="module")
def nodes(cluster_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    with running_nodes(tmp_path_factory.mktemp("cluster"), cluster_url) as started:
        yield started


@pytest.fixture(scope="module")
def host_key(cluster_url: str) -> str:
    """An account every node knows (``townhall user add … --redis``)."""
    return add_cluster_user(cluster_url, "mira")


@pytest.fixture
async def http(nodes: list[Node]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with node_clients(nodes) as clients:
        yield clients


def origin_url(cluster_url: str, sid: str) -> str | None:
    lease = redis_json(cluster_url, f"th:origin:{sid}")
    return None if lease is None else str(lease["url"])


async def test_space_made_on_node1_is_heard_through_node2(
    nodes: list[Node],
    host_key: str,
    cluster_url: str,
    http: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    n1, n2 = nodes
    c1, c2 = http
    r = await c1.post("/api/spaces", json={"title": "Two nodes"}, headers=auth(host_key))
    assert r.status_code == 201, r.text
    space = r.json()
    sid, host_token = space["id"], space["host_token"]
    assert space["status"] == "live"
    assert origin_url(cluster_url, sid) == n1.url  # the node that started it runs the media

    # node 2 answers for the space: reads, joins, and forwards WHIP to the origin
    assert (await c2.get(f"/api/spaces/{sid}")).json()["title"] == "Two nodes"
    joined = (await c2.post(f"/api/spaces/{sid}/join")).json()
    assert joined["playlist_url"].startswith(n2.url + "/hls/")
    speaker = await publish(n2.url, sid, host_token, 440)
    try:
        assert speaker.location is not None and speaker.location.startswith(n2.url + "/api/")
        r = await c2.post(f"/api/spaces/{sid}/stage/unmute", headers=auth(host_token))
        assert r.status_code in (200, 409), r.text
        await wait_heard(c1, sid, {"user:mira"})
        await asyncio.sleep(2.2)  # a whole segment with the tone exists
        pcm = await ffmpeg_pcm("-live_start_index", "-1", "-i", joined["playlist_url"], "-t", "3")
        assert len(pcm) >= 2.9 * RATE, len(pcm) / RATE
        assert tone_ratio(pcm[-2 * RATE :], 440) > 50, tone_ratio(pcm[-2 * RATE :], 440)

        # node 2 counted the ticket it served; both nodes read the same Redis figures
        await asyncio.sleep(1.2)  # one flush
        for c in (c1, c2):
            listeners = (await c.get(f"/api/spaces/{sid}/state")).json()["listeners"]
            assert listeners["current"] == 1 and listeners["total"] == 1, listeners
            assert listeners["peak"] >= 1

        # leaving through node 2 reaches the origin's stage
        r = await c2.delete(speaker.location, headers=auth(host_token))
        assert r.status_code == 200, r.text
        speaker.location = None
        r = await c2.delete(f"/api/spaces/{sid}/whip/nosuchsession", headers=auth(host_token))
        assert r.status_code == 404  # answered by the origin, kept as it said
    finally:
        await speaker.close()

    # ending through node 2: the origin finishes the recording and gives up the lease
    r = await c2.post(f"/api/spaces/{sid}/end", headers=auth(host_token))
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    replay = await c2.get(f"/hls/{sid}/replay.m3u8")
    while replay.status_code != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        replay = await c2.get(f"/hls/{sid}/replay.m3u8")
    assert replay.status_code == 200 and "#EXT-X-ENDLIST" in replay.text, replay.text
    assert origin_url(cluster_url, sid) is None
    assert (n1.data / "spaces" / sid / "hls" / "replay.m3u8").exists()
    # node 2 (the standby) holds no media of its own: its standby copy is gone after the end
    deadline = time.monotonic() + 10
    while (n2.data / "spaces" / sid / "standby").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not (n2.data / "spaces" / sid / "standby").exists()
    assert not (n2.data / "spaces" / sid / "hls").exists()


def collect(url: str, token: str, out: queue.Queue[dict[str, Any]], ready: threading.Event) -> None:
    with httpx.Client(timeout=httpx.Timeout(10, read=30), trust_env=False) as c:
        with c.stream("GET", url, params={"token": token}) as r:
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    out.put(event)
                    if event["kind"] == "space_ended":
                        return


async def stream_events(
    node_url: str, sid: str, token: str
) -> tuple[queue.Queue[dict[str, Any]], threading.Thread]:
    """A subscriber of ``sid``'s event stream on ``node_url`` (a thread, connected on return;
    it ends with the space): its queue of events and its thread."""
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    ready = threading.Event()
    sse = threading.Thread(
        target=collect, args=(f"{node_url}/api/spaces/{sid}/events", token, events, ready)
    )
    sse.start()
    assert await asyncio.to_thread(ready.wait, 10)
    return events, sse


async def test_moderation_through_node2_reaches_the_origin_within_100ms(
    nodes: list[Node], host_key: str, http: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """The programme's PDT clock on node 1 shows where a speaker's tone stops relative to the
    API call made on node 2; the host's event stream on node 1 sees node 2's events."""
    n1, n2 = nodes
    c1, c2 = http
    r = await c1.post("/api/spaces", json={"title": "Moderated"}, headers=auth(host_key))
    sid, host_token = r.json()["id"], r.json()["host_token"]
    events, sse = await stream_events(n1.url, sid, host_token)
    timed: dict[str, tuple[float, float]] = {}

    async def act(name: str, path: str, token: str, target: str | None = None) -> None:
        t0 = time.time()
        body = {"target": target} if target else None
        r = await c2.post(f"/api/spaces/{sid}/stage/{path}", json=body, headers=auth(token))
        timed[name] = (t0, time.time())
        assert r.status_code == 200, r.text

    one_id, one_ticket, one_token = await bring_on_stage(c2, sid, host_token)
    one = await publish(n1.url, sid, one_token, 440)
    two = None
    try:
        await act("unmute", "unmute", one_ticket)
        await wait_heard(c1, sid, {one_id})
        await asyncio.sleep(0.6)
        await act("mute", "mute", host_token, one_id)
        await asyncio.sleep(0.8)
        await act("unmute2", "unmute", one_ticket)
        await asyncio.sleep(0.8)
        await act("remove", "remove", host_token, one_id)
        await one.wait_ended(3)

        two_id, two_ticket, two_token = await bring_on_stage(c2, sid, host_token)
        two = await publish(n2.url, sid, two_token, 440)  # through node 2 this time
        await act("unmute3", "unmute", two_ticket)
        await wait_heard(c1, sid, {two_id})
        await asyncio.sleep(0.6)
        await act("block", "block", host_token, two_id)
        await two.wait_ended(3)
        await asyncio.sleep(0.8)
    finally:
        await one.close()
        if two is not None:
            await two.close()
    assert (await c2.post(f"/api/spaces/{sid}/end", headers=auth(host_token))).status_code == 200
    await asyncio.to_thread(sse.join, 15)
    kinds = [e["kind"] for e in list(events.queue)]
    for kind in ("speak_requested", "speaker_muted", "speaker_removed", "identity_blocked"):
        assert kind in kinds, kinds
    assert kinds[-1] == "space_ended"

    directory: Path = n1.data / "spaces" / sid / "hls"
    deadline = time.monotonic() + 10
    while not (directory / "replay.m3u8").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    pcm, times = await asyncio.to_thread(_decode_recording, directory)
    for name in ("mute", "remove", "block"):
        called, returned = timed[name]
        stopped = _silence_starts(pcm, times, called, returned)
        assert called - 0.1 <= stopped <= returned + 0.1, (
            f"{name} via node 2: the tone stopped on node 1 {1000 * (stopped - returned):+.0f} ms "
            f"after the call returned (call took {1000 * (returned - called):.0f} ms)"
        )


async def test_forwarding_holds_ll_hls_requests_and_fails_clearly(
    nodes: list[Node],
    host_key: str,
    cluster_url: str,
    http: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    n1, n2 = nodes
    c1, c2 = http
    r = await c1.post("/api/spaces", json={"title": "Held"}, headers=auth(host_key))
    sid, host_token = r.json()["id"], r.json()["host_token"]
    live = f"/hls/{sid}/live.m3u8"
    await asyncio.sleep(2.3)  # one complete segment tells how many parts a segment has
    pl = m3u8.loads((await c2.get(live)).text)
    target = pl.part_inf.part_target
    per_segment = max(len(seg.parts) for seg in pl.segments if seg.uri is not None)
    hint = pl.preload_hint[0] if isinstance(pl.preload_hint, list) else pl.preload_hint
    msn, part = (int(x) for x in hint.uri.removeprefix("part").removesuffix(".m4s").split("."))
    # a blocking reload for the part after the hinted one, through node 2: held, then answered
    ahead = divmod(msn * per_segment + part + 1, per_segment)
    t0 = time.monotonic()
    r = await c2.get(live, params={"_HLS_msn": ahead[0], "_HLS_part": ahead[1]})
    held = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert f'URI="part{ahead[0]}.{ahead[1]}.m4s"' in r.text.split("PRELOAD-HINT")[0]
    assert 0.8 * target < held < 3 * target + 0.5, (held, target)
    assert (
        r.headers["cache-control"]
        == (await c1.get(live, params=r.request.url.params)).headers["cache-control"]
    )

    # a request another node already forwarded is never forwarded again
    r = await c2.get(live, headers={"x-townhall-forwarded-by": "n1"})
    assert r.status_code == 404 and r.json()["code"] == "not_live"

    # the origin's lease names a node that is gone: a clear 502, not a hang
    client = redis.Redis.from_url(cluster_url)
    try:
        real = client.get(f"th:origin:{sid}")
        client.set(f"th:origin:{sid}", json.dumps({"id": "gone", "url": "http://127.0.0.1:9"}))
        await asyncio.sleep(1.1)  # node 2's lookup cache
        r = await c2.get(live)
        assert r.status_code == 502 and r.headers["retry-after"] == "1", r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert real is not None
        client.set(f"th:origin:{sid}", real, px=15_000)
    finally:
        client.close()
    assert (await c2.post(f"/api/spaces/{sid}/end", headers=auth(host_token))).status_code == 200


async def test_a_revocation_made_through_one_node_holds_on_every_node(
    nodes: list[Node],
    host_key: str,
    cluster_url: str,
    http: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    c1, c2 = http
    operator = auth(add_cluster_user(cluster_url, "ops-revoker", "--operator"))
    r = await c1.post("/api/spaces", json={"title": "Revoked"}, headers=auth(host_key))
    sid = r.json()["id"]
    joined = (await c2.post(f"/api/spaces/{sid}/join")).json()
    path = httpx.URL(joined["playlist_url"]).path
    assert (await c1.get(path)).status_code == 200  # node 1 is the origin

    r = await c2.post("/ops/revocations", json={"subject": joined["listener_id"]}, headers=operator)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 5
    while (answer := await c1.get(path)).status_code == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert answer.status_code == 401 and answer.json()["code"] == "revoked_token", answer.text
    listed = (await c1.get("/ops/revocations", headers=operator)).json()["revocations"]
    assert [rev["subject"] for rev in listed] == [joined["listener_id"]]
    other = (await c1.post(f"/api/spaces/{sid}/join")).json()
    assert (await c1.get(httpx.URL(other["playlist_url"]).path)).status_code == 200
