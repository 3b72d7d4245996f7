"""``townhall.listen.follow`` against a real LL-HLS origin: the real packager and store behind a
tiny Starlette app on 127.0.0.1, fed with a 440 Hz sine in real time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.listen import ListenError, PartReceived, RetryPolicy, follow
from townhall.packaging import PackagingConfig, ProgrammePackager, ProgrammeStore, Readiness

RATE = 48000
CHUNK = 4800  # 100 ms
TONE = 440.0
FAST_RETRY = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.05)
_PART = re.compile(r"part(\d+)\.(\d+)\.m4s")
_SEG = re.compile(r"seg(\d+)\.m4s")


def sine(start: int, count: int) -> npt.NDArray[np.int16]:
    t = (np.arange(start, start + count) / RATE).astype(np.float64)
    return (np.sin(2 * np.pi * TONE * t) * 12000).astype(np.int16)


def peak_hz(pcm: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * RATE / pcm.size)


@dataclass
class Logged:
    name: str
    query: str
    port: int
    edge: tuple[int, int] | None
    """Last part in the playlist when the request arrived."""


class Origin:
    """LL-HLS origin for one programme, with fault injection."""

    def __init__(self, directory: Path) -> None:
        self.config = PackagingConfig(fsync=False)
        self.packager = ProgrammePackager(self.config)
        self.store = ProgrammeStore(directory, self.packager.init_segment, self.config)
        self.log: list[Logged] = []
        self.fail_status: int | None = None
        self.ticketed = False
        self.pushed = 0
        self.app = Starlette(routes=[Route("/hls/{space}/{name}", self.serve)])

    # -- programme ---------------------------------------------------------------------------

    async def push_seconds(self, seconds: float, t0: float) -> None:
        """Push ``seconds`` of sine at once, captured from wall time ``t0`` on."""
        for _ in range(round(seconds * RATE / CHUNK)):
            await self._push_chunk(t0)

    async def _push_chunk(self, t0: float) -> None:
        events = self.packager.push(sine(self.pushed, CHUNK), t0 + self.pushed / RATE)
        self.pushed += CHUNK
        await self.store.publish(events)

    async def run_realtime(self, t0: float, until: float | None = None) -> None:
        """Push 100 ms chunks as they are 'captured' (each once its last sample is in)."""
        while until is None or self.pushed / RATE < until:
            ready_at = t0 + (self.pushed + CHUNK) / RATE
            await asyncio.sleep(max(0.0, ready_at - time.time()))
            await self._push_chunk(t0)

    async def finish(self) -> None:
        await self.store.publish(self.packager.finish())
        await self.store.finish()

    # -- HTTP --------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        name = request.path_params["name"]
        port = request.client.port if request.client else 0
        self.log.append(
            Logged(name, request.url.query, port, self.store.playlist.last_part_position())
        )
        if self.fail_status is not None:
            return Response("injected failure", status_code=self.fail_status)
        if self.ticketed:
            return JSONResponse(
                {"detail": "this space is ticketed: join to get a ticket"}, status_code=401
            )
        store = self.store
        if name == "live.m3u8":
            query = request.query_params
            check = store.check_request(query.get("_HLS_msn"), query.get("_HLS_part"))
            if check.readiness is Readiness.BAD_REQUEST:
                return Response(check.reason, status_code=400)
            if check.readiness is Readiness.WAIT and check.msn is not None:
                if not await store.wait_for_part(check.msn, check.part, store.blocking_timeout):
                    return Response("timeout", status_code=503)
            return Response(store.playlist_text(), media_type="application/vnd.apple.mpegurl")
        if name == "replay.m3u8":
            text = store.vod_text()
            return Response(text) if text is not None else Response(status_code=404)
        if name == "init.mp4":
            return Response(store.get_init(), media_type="audio/mp4")
        data: bytes | None = None
        if m := _PART.fullmatch(name):
            msn, idx = int(m[1]), int(m[2])
            data = store.get_part(msn, idx)
            if data is None and (msn, idx) == store.playlist.next_part_position():
                await store.wait_for_part(msn, idx, store.blocking_timeout)
                data = store.get_part(msn, idx)
        elif m := _SEG.fullmatch(name):
            data = store.get_segment(int(m[1]))
        if data is None:
            return Response("no such media", status_code=404)
        return Response(data, media_type="audio/mp4")


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields the base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def live_origin(
    directory: Path, history: float = 3.0, until: float | None = None
) -> AsyncIterator[tuple[Origin, str]]:
    """A live origin that already holds ``history`` seconds and keeps producing in real time."""
    origin = Origin(directory)
    t0 = time.time() - history
    await origin.push_seconds(history, t0)
    producer = asyncio.create_task(origin.run_realtime(t0, until))
    try:
        async with serving(origin.app) as base:
            yield origin, base
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


def absolute(part: str) -> int:
    m = _PART.fullmatch(part)
    assert m is not None, part
    return int(m[1]) * 4 + int(m[2])


async def test_follows_live_stream_like_a_low_latency_player(tmp_path: Path) -> None:
    events: list[PartReceived] = []
    async with live_origin(tmp_path / "prog") as (origin, base):
        report = await follow(
            f"{base}/hls/s1/live.m3u8",
            seconds=3.0,
            out=tmp_path / "out.wav",
            keep_pcm=True,
            on_part=events.append,
        )
    # audio: exactly --seconds of a 440 Hz tone, also in the WAV
    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        frames = wav.readframes(wav.getnframes())
    written = np.frombuffer(frames, dtype="<i2")
    assert written.size == 3 * RATE
    assert report.pcm is not None and np.array_equal(report.pcm, written)
    assert abs(peak_hz(written[RATE // 2 :]) - TONE) < 2.0
    assert np.sqrt(np.mean(written[RATE // 2 :].astype(np.float64) ** 2)) > 5000
    # figures
    assert report.live and not report.ended and report.stopped == "seconds"
    assert report.seconds >= 3.0 and report.parts == len(events) >= 6
    assert report.errors == 0 and report.skipped == 0
    assert report.stalls == 0 and report.stall_seconds == 0.0
    assert report.latency_p50 is not None and 0.0 < report.latency_p50 < 1.5
    assert report.latency_max is not None and report.latency_max < 1.5
    assert report.playout_latency_p50 is not None
    # a player holding PART-HOLD-BACK (1.536 s) plays later than parts arrive
    assert report.latency_p50 + 1.0 < report.playout_latency_p50 < 3.5
    assert report.bytes > sum(e.size for e in events)  # + init section
    # cadence: joined 3 parts behind the edge, then blocking reloads for consecutive parts
    playlists = [r for r in origin.log if r.name == "live.m3u8"]
    parts = [r for r in origin.log if r.name.startswith("part")]
    assert playlists[0].query == "" and playlists[0].edge is not None
    edge = playlists[0].edge[0] * 4 + playlists[0].edge[1]
    fetched = [absolute(r.name) for r in parts]
    assert fetched[0] == edge - 2
    assert fetched == list(range(fetched[0], fetched[0] + len(fetched)))
    blocking = [r.query for r in playlists[1:]]
    assert blocking and all(re.fullmatch(r"_HLS_msn=\d+&_HLS_part=\d+", q) for q in blocking)
    # two keep-alive connections: one for playlists, another for media
    playlist_ports = {r.port for r in playlists}
    media_ports = {r.port for r in origin.log if r.name != "live.m3u8"}
    assert len(playlist_ports) == 1 and len(media_ports) == 1
    assert playlist_ports != media_ports


async def test_live_stream_that_ends_is_followed_to_endlist(tmp_path: Path) -> None:
    async with live_origin(tmp_path / "prog", history=1.0, until=2.5) as (origin, base):
        task = asyncio.create_task(follow(f"{base}/hls/s1/live.m3u8", seconds=None))
        while origin.pushed / RATE < 2.5:
            await asyncio.sleep(0.05)
        await origin.finish()
        report = await asyncio.wait_for(task, 10)
    assert report.live and report.ended and report.stopped == "ended"
    assert report.stalls == 0 and report.errors == 0
    assert report.latency_p50 is not None and report.playout_latency_p50 is not None
    # joined about PART-HOLD-BACK behind the edge: 1.5 s of the 2.5 s programme, not all of it
    assert 1.4 < report.seconds < 3.0


async def test_replay_is_fetched_whole_without_latency(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "prog")
    await origin.push_seconds(5.0, time.time() - 60)
    await origin.finish()
    async with serving(origin.app) as base:
        report = await follow(f"{base}/hls/s1/replay.m3u8", seconds=None, keep_pcm=True)
        short = await follow(f"{base}/hls/s1/replay.m3u8", seconds=1.0, keep_pcm=True)
    assert not report.live and report.ended and report.stopped == "ended"
    assert report.parts == report.segments == 3  # 2.048 + 2.048 + the rest
    assert 5.0 <= report.seconds < 5.2
    assert report.latency_p50 is None and report.playout_latency_p50 is None
    assert report.stalls == 0 and report.errors == 0
    assert report.pcm is not None and abs(report.pcm.size / RATE - report.seconds) < 0.05
    assert abs(peak_hz(report.pcm) - TONE) < 2.0
    assert not short.ended and short.stopped == "seconds" and short.parts == 1
    assert short.pcm is not None and short.pcm.size == RATE
    names = [r.name for r in origin.log]
    assert names.count("replay.m3u8") == 2 and "part0.0.m4s" not in names


async def test_server_errors_are_retried_then_fail_cleanly(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "prog")
    origin.fail_status = 500
    async with serving(origin.app) as base:
        with pytest.raises(ListenError) as info:
            await follow(f"{base}/hls/s1/live.m3u8", seconds=2.0, retry=FAST_RETRY)
    assert "HTTP 500" in info.value.message and "gave up after 3 tries" in info.value.message
    assert len(origin.log) == 3
    assert info.value.report is not None and info.value.report.errors == 3


async def test_media_failing_mid_stream_keeps_the_partial_report(tmp_path: Path) -> None:
    async with live_origin(tmp_path / "prog") as (origin, base):
        seen: list[PartReceived] = []

        def break_after_two(event: PartReceived) -> None:
            seen.append(event)
            if len(seen) == 2:
                origin.fail_status = 503

        with pytest.raises(ListenError) as info:
            await follow(
                f"{base}/hls/s1/live.m3u8",
                seconds=10.0,
                retry=FAST_RETRY,
                on_part=break_after_two,
            )
    report = info.value.report
    assert report is not None and report.stopped == "error"
    assert report.parts == 2 and report.errors >= 3
    assert "HTTP 503" in info.value.message


async def test_connection_closed_by_server_fails_cleanly() -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ListenError) as info:
            await follow(f"http://127.0.0.1:{port}/hls/s1/live.m3u8", seconds=1.0, retry=FAST_RETRY)
    finally:
        server.close()
        await server.wait_closed()
    assert "RemoteProtocolError" in info.value.message


async def test_ticketed_space_says_so(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "prog")
    origin.ticketed = True
    async with serving(origin.app) as base:
        with pytest.raises(ListenError) as info:
            await follow(f"{base}/hls/s1/live.m3u8", seconds=1.0, retry=FAST_RETRY)
    message = info.value.message
    assert "'s1' is ticketed" in message and "/api/spaces/s1/join" in message
    assert "/hls/s1/t/<ticket>/live.m3u8" in message
    assert len(origin.log) == 1  # a refusal is not retried


async def test_missing_playlist_is_not_found(tmp_path: Path) -> None:
    origin = Origin(tmp_path / "prog")
    async with serving(origin.app) as base:
        with pytest.raises(ListenError) as info:
            await follow(f"{base}/hls/s1/replay.m3u8", seconds=None, retry=FAST_RETRY)
    assert "not found" in info.value.message
