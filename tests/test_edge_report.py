"""An embedded node (no Redis) behind a Varnish or nginx edge: ``townhall edge run
--ops-key`` reports the listeners it served and its observations to the origin
(``POST /ops/edge-report``), so the state document counts listeners the origin never saw and
the watch sees the edge's traffic.
Also the route's own contract: operators only, bounded, bad batches refused whole."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from conftest import Node, start_node
from test_edge_varnish import start_edge
from test_standard_hls import Live, auth, live_space
from townhall.edge.logship import MAX_REPORT_LISTENERS

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = start_node(tmp_path_factory.mktemp("report") / "data")
    try:
        yield n
    finally:
        n.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(node: Node) -> AsyncIterator[Live]:
    async with live_space(node, "Reported", "hal", "olga") as space:
        yield space


async def _current(http: httpx.AsyncClient, sid: str, figure: str = "current") -> int:
    r = await http.get(f"/api/spaces/{sid}/state")
    assert r.status_code == 200, r.text
    return int(r.json()["listeners"][figure])


async def _media_via(
    client: httpx.AsyncClient, edge: str, joined: dict[str, Any], kind: str
) -> None:
    """One listener through ``edge``: LL-HLS (ticket) on Varnish, standard HLS (link) on
    nginx: the playlist, then its newest part or segment."""
    url = joined["playlist_url"] if kind == "varnish" else joined["std_playlist_url"]
    playlist = f"{edge}{urlsplit(url).path}"
    tag = "#EXT-X-PART:" if kind == "varnish" else None
    deadline = time.monotonic() + 20
    while True:
        r = await client.get(playlist)
        assert r.status_code == 200, r.text
        lines = r.text.splitlines()
        if tag is not None:
            names = [ln.split('URI="')[1].split('"')[0] for ln in lines if ln.startswith(tag)]
        else:
            names = [ln for ln in lines if ln and not ln.startswith("#")]
        if names:
            break
        assert time.monotonic() < deadline, r.text  # (a 4 s standard segment must exist)
        await asyncio.sleep(0.5)
    media = await client.get(playlist.rsplit("/", 1)[0] + "/" + names[-1])
    assert media.status_code == 200, media.text


@pytest.mark.parametrize(("kind", "source"), [("varnish", "127.0.0.77"), ("nginx", "127.0.0.78")])
async def test_an_edge_without_redis_reports_its_listeners_and_traffic_to_the_origin(
    live: Live, tmp_path: Path, kind: str, source: str
) -> None:
    if shutil.which("varnishd" if kind == "varnish" else "nginx") is None:
        pytest.skip(f"needs Debian's {kind}")
    edge = start_edge(
        live.node.url,
        live.node.data / "keys.json",
        tmp_path / "edge.log",
        "--kind",
        kind,
        "--ops-key",
        live.operator,
        name=f"reporter-{kind}",
    )
    sid = live.space["id"]
    ops = auth(live.operator)
    listeners = 12
    try:
        async with httpx.AsyncClient(base_url=live.node.url, timeout=15, trust_env=False) as http:
            before = await _current(http, sid, "total")
            joined = [(await http.post(f"/api/spaces/{sid}/join")).json() for _ in range(listeners)]
            bound = httpx.AsyncHTTPTransport(local_address=source)
            async with httpx.AsyncClient(timeout=15, trust_env=False, transport=bound) as client:
                for j in joined:
                    await _media_via(client, edge.url, j, kind)
            # The origin served at most one fetch per object (and saw one listener each time);
            # the others are counted only through the edge's reports, and nobody twice.
            deadline = time.monotonic() + 15
            while (total := await _current(http, sid, "total")) < before + listeners:
                assert time.monotonic() < deadline, f"{total - before} of {listeners} counted"
                await asyncio.sleep(0.25)
            assert total == before + listeners
            assert await _current(http, sid) >= listeners
            # The watch knows the listeners' own address only from the edge's observations
            # (the origin's requests all came from the edge).
            deadline = time.monotonic() + 10
            while source not in (r := await http.get("/ops/watch", headers=ops)).text:
                assert r.status_code == 200, r.text
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.5)
    finally:
        assert edge.stop() == 0, (tmp_path / "edge.log").read_text()
    log = (tmp_path / "edge.log").read_text()
    assert "not counted" not in log and "could not report" not in log, log


async def test_reports_are_for_operators_bounded_and_checked(live: Live) -> None:
    sid = live.space["id"]
    async with httpx.AsyncClient(base_url=live.node.url, timeout=15, trust_env=False) as http:
        body = {"listeners": {sid: ["anon:x"]}}
        r = await http.post("/ops/edge-report", json=body)
        assert r.status_code == 401, r.text
        r = await http.post("/ops/edge-report", json=body, headers=auth(live.host_key))
        assert r.status_code == 403 and r.json()["code"] == "not_allowed", r.text
        ops = auth(live.operator)
        r = await http.post(
            "/ops/edge-report", json={"listeners": {"nosuch": ["anon:y"]}}, headers=ops
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"listeners": 0, "unknown_spaces": ["nosuch"], "observations": 0}
        for bad in (
            {"listeners": {"bad id!": ["anon:x"]}},
            {"listeners": {sid: [""]}},
            {"listeners": {sid: "anon:x"}},
            {"listeners": {sid: [f"anon:{i}" for i in range(MAX_REPORT_LISTENERS + 1)]}},
            {"surprise": 1},
            {"listeners": {sid: ["anon:z"]}, "observations": {"w": 1, "r": [[1, "x"]]}},
            {"listeners": {sid: ["anon:z"]}, "observations": {"w": 1e9, "r": []}},
            {
                "listeners": {sid: ["anon:z"]},
                "observations": {"r": [[1.0, "127.0.0.1", "served", "bogus", None, sid]]},
            },
        ):
            r = await http.post("/ops/edge-report", json=bad, headers=ops)
            assert r.status_code == 422, (bad if len(str(bad)) < 300 else "big", r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        # A refused batch is refused whole: anon:z was never counted.
        r = await http.post("/ops/edge-report", content=b"{not json", headers=ops)
        assert r.status_code in (400, 422), r.text
        before = await _current(http, sid, "total")
        good = {
            "listeners": {sid: ["anon:z"]},
            "observations": {
                "e": "t",
                "t": time.time(),
                "w": 1.0,
                "r": [[time.time(), "127.0.0.1", "served", "media", "anon:z", sid]],
            },
        }
        r = await http.post("/ops/edge-report", json=good, headers=ops)
        assert r.status_code == 200, r.text
        assert r.json() == {"listeners": 1, "unknown_spaces": [], "observations": 1}
        assert await _current(http, sid, "total") == before + 1
        # A busy second is far above the API's usual 64 KiB body limit; this route has its own.
        many = {"listeners": {sid: [f"anon:busy-{i:06d}" for i in range(20_000)]}}
        r = await http.post("/ops/edge-report", json=many, headers=ops)
        assert r.status_code == 200, r.text
        assert await _current(http, sid, "total") == before + 1 + 20_000
        # ... but nobody else gets to send it: the caller is checked before the body is read.
        r = await http.post("/ops/edge-report", json=many, headers=auth(live.host_key))
        assert r.status_code == 403, r.text
