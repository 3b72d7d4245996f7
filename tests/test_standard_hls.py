"""The standard-HLS variant end to end on a real node: a speaker over WHIP, the join answer's
listener link (``std_playlist_url``), standard segments decoded with PyAV, Debian's ffmpeg
reading ``std.m3u8`` live, and links refused like tickets. One node, one space and one
speaker for the module (their event loop too: the speaker keeps sending between tests)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
import m3u8
import numpy as np
import pytest
import pytest_asyncio

from conftest import Node, start_node
from townhall.stage import RtcSettings, ToneTrack, WhipClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FFMPEG = "/usr/bin/ffmpeg"
RATE = 48000
RTC = RtcSettings(announced_address="127.0.0.1")
LL_TAGS = ("PART-INF", "SERVER-CONTROL", "EXT-X-PART:", "PRELOAD-HINT")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Live:
    """A node with a live public space whose host sends a 440 Hz tone."""

    node: Node
    host_key: str
    operator: str
    space: dict[str, Any]


async def _wait_segments(c: httpx.AsyncClient, url: str, count: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        r = await c.get(url)
        assert r.status_code == 200, r.text
        text = r.text
        if len(m3u8.loads(text).segments) >= count:
            return text
        await asyncio.sleep(0.5)
    raise AssertionError(f"fewer than {count} standard segments in {timeout} s:\n{text}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = start_node(tmp_path_factory.mktemp("std") / "data")
    try:
        yield n
    finally:
        n.stop()


@contextlib.asynccontextmanager
async def live_space(node: Node, title: str, host: str, operator: str) -> AsyncIterator[Live]:
    """A public space on ``node`` made live by a host (account ``host``) sending a 440 Hz
    tone over WHIP, and an operator account; the speaker stops on exit."""
    host_key = node.add_user(host)
    operator_key = node.add_user(operator, "--operator")
    async with httpx.AsyncClient(base_url=node.url, timeout=15, trust_env=False) as c:
        r = await c.post("/api/spaces", json={"title": title}, headers=auth(host_key))
        assert r.status_code == 201, r.text
        space = r.json()
        assert space["status"] == "live"
    speaker = WhipClient(f"{node.url}/api/spaces/{space['id']}/whip", space["host_token"], RTC)
    await speaker.publish(ToneTrack(440, amplitude=0.3))
    await speaker.wait_connected(10)
    try:
        yield Live(node, host_key, operator_key, space)
    finally:
        await speaker.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(node: Node) -> AsyncIterator[Live]:
    async with (
        live_space(node, "Standard", "hana", "opal") as space,
        httpx.AsyncClient(base_url=node.url, timeout=15, trust_env=False) as c,
    ):
        await _wait_segments(c, f"/hls/{space.space['id']}/std.m3u8", 3, 30)
        yield space


@pytest_asyncio.fixture(loop_scope="module")
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=15, trust_env=False) as c:
        yield c


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.text


def _decode(init: bytes, media: bytes) -> np.ndarray:
    with av.open(io.BytesIO(init + media), format="mp4") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames).astype(np.float64)


def _tone_ratio(x: np.ndarray, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    peak = spec[(freqs > freq - 6) & (freqs < freq + 6)].max()
    return float(peak / (np.median(spec[(freqs > 100) & (freqs < 4000)]) + 1e-9))


async def _ffmpeg_pcm(url: str, seconds: float) -> np.ndarray:
    """``seconds`` of mono PCM that Debian's ffmpeg reads live from the playlist ``url``."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG,
        *("-nostdin", "-loglevel", "error", "-i", url, "-t", str(seconds)),
        *("-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, stderr.decode()
    return np.frombuffer(stdout, np.int16).astype(np.float64)


def _assert_tone(pcm: np.ndarray, seconds: float) -> None:
    assert len(pcm) / RATE == pytest.approx(seconds, abs=0.05)
    assert _tone_ratio(pcm[-2 * RATE :], 440) > 50


async def test_the_join_answer_links_to_a_standard_playlist_of_4_s_segments(
    live: Live, http: httpx.AsyncClient
) -> None:
    sid = live.space["id"]
    joined = (await http.post(f"/api/spaces/{sid}/join")).json()
    url = joined["std_playlist_url"]
    assert url.startswith(f"{live.node.url}/hls/{sid}/l/") and url.endswith("/std.m3u8")
    assert joined["playlist_url"].endswith(f"/hls/{sid}/t/{joined['ticket']}/live.m3u8")
    r = await http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["cache-control"] == "public, max-age=1"
    assert not any(tag in r.text for tag in LL_TAGS), r.text
    pl = m3u8.loads(r.text)
    assert pl.target_duration == 4 and not pl.is_endlist and pl.version == 6
    assert len(pl.segments) >= 3 and all(s.program_date_time for s in pl.segments)
    assert pl.media_sequence == int(pl.segments[0].uri[3:-4])
    # blocking-reload directives mean nothing here: ignored
    again = await http.get(url, params={"_HLS_msn": 999999, "_HLS_part": 2})
    assert again.status_code == 200 and "#EXT-X-MEDIA-SEQUENCE" in again.text

    base = url.rsplit("/", 1)[0]
    init = await http.get(f"{base}/init.mp4")
    assert init.status_code == 200
    seg = pl.segments[-1]
    r = await http.get(f"{base}/{seg.uri}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/mp4"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    pcm = _decode(init.content, r.content)
    assert seg.duration == pytest.approx(4.096, abs=1e-3)
    assert len(pcm) / RATE == pytest.approx(4.096, abs=1e-3)
    assert _tone_ratio(pcm, 440) > 50
    # the same segment without the link (a public space) and the LL segments it is made of
    plain = await http.get(f"/hls/{sid}/{seg.uri}")
    assert plain.content == r.content
    k = int(seg.uri[3:-4])
    members = [(await http.get(f"/hls/{sid}/seg{m}.m4s")).content for m in (2 * k, 2 * k + 1)]
    assert b"".join(members) == r.content
    # not there yet, or not a name: 404
    ahead = pl.media_sequence + len(pl.segments) + 5
    _problem(await http.get(f"{base}/std{ahead}.m4s"), 404, "no_such_media")
    _problem(await http.get(f"{base}/std.m4s"), 404, "no_such_media")


async def test_public_spaces_serve_std_m3u8_without_a_ticket(
    live: Live, http: httpx.AsyncClient
) -> None:
    r = await http.get(f"/hls/{live.space['id']}/std.m3u8")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=1"
    assert m3u8.loads(r.text).segments


async def test_links_are_refused_like_tickets(live: Live, http: httpx.AsyncClient) -> None:
    sid = live.space["id"]
    r = await http.post("/api/spaces", json={"title": "Other"}, headers=auth(live.host_key))
    other = r.json()["id"]
    joined = (await http.post(f"/api/spaces/{sid}/join")).json()
    link = joined["std_playlist_url"].split(f"/hls/{sid}/l/")[1].removesuffix("/std.m3u8")
    assert (await http.get(f"/hls/{sid}/l/{link}/std.m3u8")).status_code == 200
    # a link for space A on space B
    _problem(await http.get(f"/hls/{other}/l/{link}/std.m3u8"), 401, "bad_signature")
    # a tampered MAC, subject, expiry; an unknown key
    kid, exp, sub64, jti, mac = link.split("/")
    bad_mac = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in (
        f"{kid}/{exp}/{sub64}/{jti}/{bad_mac}",
        f"{kid}/{int(exp) + 3600}/{sub64}/{jti}/{mac}",
        f"{kid}/{exp}/{sub64[:-1] + ('x' if sub64[-1] != 'x' else 'y')}/{jti}/{mac}",
    ):
        _problem(await http.get(f"/hls/{sid}/l/{forged}/std.m3u8"), 401, "bad_signature")
    _problem(
        await http.get(f"/hls/{sid}/l/nokey/{exp}/{sub64}/{jti}/{mac}/std.m3u8"), 401, "unknown_key"
    )
    # any media name goes through a link at the origin
    assert (await http.get(f"/hls/{sid}/l/{link}/live.m3u8")).status_code == 200
    # a revoked listener's link
    r = await http.post(
        "/ops/revocations", json={"subject": joined["listener_id"]}, headers=auth(live.operator)
    )
    assert r.status_code == 201, r.text
    _problem(await http.get(f"/hls/{sid}/l/{link}/std.m3u8"), 401, "revoked_token")
    _problem(await http.get(f"/hls/{sid}/l/{link}/init.mp4"), 401, "revoked_token")
    fresh = (await http.post(f"/api/spaces/{sid}/join")).json()
    assert (await http.get(fresh["std_playlist_url"])).status_code == 200  # others still play


async def test_a_ticketed_space_needs_the_link(live: Live, http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/api/spaces",
        json={"title": "Members", "visibility": "ticketed"},
        headers=auth(live.host_key),
    )
    space = r.json()
    sid = space["id"]
    _problem(await http.get(f"/hls/{sid}/std.m3u8"), 401, "ticket_required")
    grant = await http.post(
        f"/api/spaces/{sid}/grants",
        json={"subject": "user:Zoë", "grants": ["listen"]},
        headers=auth(space["host_token"]),
    )
    assert grant.status_code == 200, grant.text
    joined = await http.post(f"/api/spaces/{sid}/join", headers=auth(grant.json()["token"]))
    assert joined.status_code == 200, joined.text
    body = joined.json()
    assert body["listener_id"] == "user:Zoë"
    r = await http.get(body["std_playlist_url"])
    assert r.status_code == 200 and r.text.startswith("#EXTM3U"), r.text


async def test_ffmpeg_plays_the_standard_playlist_live(live: Live, http: httpx.AsyncClient) -> None:
    joined = (await http.post(f"/api/spaces/{live.space['id']}/join")).json()
    _assert_tone(await _ffmpeg_pcm(joined["std_playlist_url"], 6.0), 6.0)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs Debian's nginx-light")
async def test_ffmpeg_plays_the_standard_playlist_through_an_nginx_edge(
    live: Live, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """``townhall edge run --kind nginx`` in front of the node: the link is checked at the
    edge, the audio is heard through it, and a second listener's segments are cache hits."""
    from test_edge_varnish import start_edge

    edge = start_edge(
        live.node.url, live.node.data / "keys.json", tmp_path / "edge.log", "--kind", "nginx"
    )
    try:
        sid = live.space["id"]
        joined = (await http.post(f"/api/spaces/{sid}/join")).json()
        url = urlsplit(joined["std_playlist_url"])
        via_edge = f"{edge.url}{url.path}"
        _assert_tone(await _ffmpeg_pcm(via_edge, 6.0), 6.0)

        second = (await http.post(f"/api/spaces/{sid}/join")).json()
        prefix = f"{edge.url}{urlsplit(second['std_playlist_url']).path.rsplit('/', 1)[0]}"
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            r = await client.get(f"{prefix}/std.m3u8")
            assert r.status_code == 200 and r.headers["x-edge"] == "e1"
            names = [s.uri for s in m3u8.loads(r.text).segments]
            first = await client.get(f"{prefix}/{names[-1]}")
            again = await client.get(f"{prefix}/{names[-1]}")
            assert first.status_code == again.status_code == 200
            assert again.headers["x-edge-cache"] == "hit" and again.content == first.content
            r = await client.get(f"{edge.url}{url.path.replace(sid, sid + 'x', 1)}")
            _problem(r, 401, "bad_signature")  # a link is bound to its space, at the edge
    finally:
        assert edge.stop() == 0, (tmp_path / "edge.log").read_text()


@pytest.mark.parametrize("kind", ["nginx", "varnish"])
async def test_edges_enforce_the_operators_blocks_and_revocations_on_links(
    live: Live, http: httpx.AsyncClient, tmp_path: Path, kind: str
) -> None:
    """``edge run --kind K --ops-key``: a revocation or block made at the node reaches the
    edge's configuration (nginx reloaded, a new VCL loaded) and the listener link is
    refused there."""
    from test_edge_varnish import start_edge

    if shutil.which("nginx" if kind == "nginx" else "varnishd") is None:
        pytest.skip(f"needs Debian's {kind}")
    edge = start_edge(
        live.node.url,
        live.node.data / "keys.json",
        tmp_path / "edge.log",
        "--kind",
        kind,
        "--ops-key",
        live.operator,
        name=f"guard-{kind}",
    )
    try:
        sid = live.space["id"]
        kept, revoked = [(await http.post(f"/api/spaces/{sid}/join")).json() for _ in range(2)]
        url_of = {
            j["listener_id"]: f"{edge.url}{urlsplit(j['std_playlist_url']).path}"
            for j in (kept, revoked)
        }
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            for url in url_of.values():
                assert (await client.get(url)).status_code == 200
            ops = auth(live.operator)
            r = await http.post(
                "/ops/revocations", json={"subject": revoked["listener_id"]}, headers=ops
            )
            assert r.status_code == 201, r.text
            net = "127.0.0.99/32" if kind == "nginx" else "127.0.0.98/32"
            r = await http.post("/ops/blocks", json={"network": net}, headers=ops)
            assert r.status_code == 201, r.text
            deadline = time.monotonic() + 15
            while True:
                r = await client.get(url_of[revoked["listener_id"]])
                if r.status_code == 401 and "refused at the edge" in r.json()["detail"]:
                    break  # (the origin refuses it at once; the edge after its next poll)
                assert time.monotonic() < deadline, "the revocation did not reach the edge"
                await asyncio.sleep(0.25)
            _problem(r, 401, "revoked_token")
            assert "refused at the edge" in r.json()["detail"]
            assert (await client.get(url_of[kept["listener_id"]])).status_code == 200
        # The block was posted after the revocation: the edge may have picked up the revocation
        # in one poll and the block only in the next, so wait for it the same way.
        source = httpx.AsyncHTTPTransport(local_address=net.removesuffix("/32"))
        async with httpx.AsyncClient(timeout=10, trust_env=False, transport=source) as blocked:
            deadline = time.monotonic() + 15
            while (r := await blocked.get(url_of[kept["listener_id"]])).status_code != 403:
                assert r.status_code == 200, r.text
                assert time.monotonic() < deadline, "the block did not reach the edge"
                await asyncio.sleep(0.25)
            _problem(r, 403, "blocked")
    finally:
        assert edge.stop() == 0, (tmp_path / "edge.log").read_text()


async def test_listeners_behind_live_get_the_last_segments_and_the_end_after_it_ends(
    live: Live, http: httpx.AsyncClient
) -> None:
    """A standard-HLS listener is ≈ 12 s behind: when the space ends, its playlists end with
    EXT-X-ENDLIST and the last segments are still served (not a 404 mid-sentence)."""
    r = await http.post("/api/spaces", json={"title": "Ending"}, headers=auth(live.host_key))
    assert r.status_code == 201, r.text
    space = r.json()
    sid = space["id"]
    speaker = WhipClient(f"{live.node.url}/api/spaces/{sid}/whip", space["host_token"], RTC)
    await speaker.publish(ToneTrack(660, amplitude=0.3))
    await speaker.wait_connected(10)
    try:
        await _wait_segments(http, f"/hls/{sid}/std.m3u8", 2, 30)
        joined = (await http.post(f"/api/spaces/{sid}/join")).json()
        r = await http.post(f"/api/spaces/{sid}/end", headers=auth(space["host_token"]))
        assert r.status_code == 200, r.text
    finally:
        await speaker.close()
    prefix = urlsplit(joined["std_playlist_url"]).path.rsplit("/", 1)[0]
    r = await http.get(f"{prefix}/std.m3u8")
    assert r.status_code == 200, r.text
    playlist = m3u8.loads(r.text)
    assert playlist.is_endlist and playlist.segments
    init = (await http.get(f"{prefix}/init.mp4")).content
    last = await http.get(f"{prefix}/{playlist.segments[-1].uri}")
    assert last.status_code == 200
    pcm = _decode(init, last.content)
    assert len(pcm) / RATE == pytest.approx(playlist.segments[-1].duration, abs=0.03)
    r = await http.get(f"{urlsplit(joined['playlist_url']).path}")
    assert r.status_code == 200 and r.text.rstrip().endswith("#EXT-X-ENDLIST")
