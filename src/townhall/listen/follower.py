"""Asyncio LL-HLS follower: what a low-latency player does, measured.

Two HTTP/1.1 keep-alive connections, like a browser player: one carries the blocking playlist
reloads (``?_HLS_msn=M&_HLS_part=P`` for the next part, held by the origin until it exists), the
other the media GETs, so a part is never queued behind a held playlist request. The playlist
side runs ahead and queues what it discovers; the media side fetches in order, decodes off the
event loop and feeds the statistics (:mod:`.stats`).

A live playlist is joined PART-HOLD-BACK behind its end (the third part from the end with the
usual 3 x part target); a finished one (EXT-X-ENDLIST, e.g. a replay) is fetched whole, segment
by segment, without latency figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from townhall.listen.decode import SAMPLE_RATE, DecodeError, FragmentDecoder
from townhall.listen.playlist import MediaPlaylist, PlaylistError, parse_media_playlist, variants
from townhall.listen.schedule import Position, Unit, live_edge, plan, start_position, vod_plan
from townhall.listen.stats import PlayoutClock, arrival_latency, summarize

logger = logging.getLogger(__name__)

USER_AGENT = "townhall-listen/0.1"


@dataclass(frozen=True)
class PartReceived:
    """A part (or a whole segment) was received."""

    msn: int
    """Media sequence number of its segment."""
    part: int | None
    """Part index, None for a whole segment."""
    uri: str
    """Absolute URL it was fetched from."""
    size: int
    """Bytes received."""
    duration: float
    """Seconds of media."""
    received_at: float
    """Wall time its last byte arrived."""
    latency: float | None
    """Arrival latency (age of its newest sample), None for a replay, without PDT or for the
    parts already listed when joining."""
    playout_latency: float | None
    """Playout latency, if the simulated player has scheduled it already."""
    buffered: float
    """Seconds buffered ahead of the simulated play position after it arrived."""
    stalls: int
    """Underruns so far."""


@dataclass(frozen=True)
class ListenReport:
    """Outcome of following a playlist. Latencies are seconds (see :mod:`.stats`)."""

    url: str
    """The playlist followed."""
    live: bool
    """A live playlist (False: a replay / finished playlist)."""
    seconds: float
    """Seconds of audio received."""
    wall_seconds: float
    """Wall time spent following."""
    parts: int
    """Media objects fetched (parts; whole segments for a replay)."""
    segments: int
    """How many of ``parts`` were whole segments."""
    bytes: int
    """Media bytes received (init section included, playlists excluded)."""
    playlist_requests: int
    """Playlist responses received (blocking reloads included)."""
    latency_p50: float | None
    """Median arrival latency (age of a part's newest sample when it arrived)."""
    latency_p95: float | None
    """95th percentile of the arrival latency."""
    latency_max: float | None
    """Largest arrival latency."""
    playout_latency_p50: float | None
    """Median playout (mouth-to-ear) latency of the simulated player."""
    playout_latency_p95: float | None
    """95th percentile of the playout latency."""
    playout_latency_max: float | None
    """Largest playout latency."""
    startup_seconds: float | None
    """From the first request until the simulated player started playing."""
    stalls: int
    """Underruns of the simulated player."""
    stall_seconds: float
    """Total time spent re-buffering."""
    errors: int
    """Failed requests (retried or skipped) and undecodable media."""
    skipped: int
    """Parts or segments not played: gone from the window, GAP, or expired (404)."""
    ended: bool
    """The playlist ended (EXT-X-ENDLIST) and everything up to its end was fetched."""
    stopped: str
    """Why following stopped: ``ended``, ``seconds``, ``deadline``, ``interrupted``, ``error``."""
    pcm: npt.NDArray[np.int16] | None = field(default=None, repr=False, compare=False)
    """Decoded audio (mono s16 at ``sample_rate``) when ``keep_pcm`` was asked for."""
    sample_rate: int = SAMPLE_RATE
    """Rate of ``pcm`` and of the WAV file."""

    def to_dict(self) -> dict[str, Any]:
        """Everything but ``pcm``, JSON-ready."""
        data = asdict(self)
        data.pop("pcm")
        return data


class ListenError(Exception):
    """Following failed; ``report`` holds what was measured until then (None if nothing)."""

    def __init__(self, message: str, report: ListenReport | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.report = report


@dataclass(frozen=True)
class RetryPolicy:
    """How network errors, 5xx and 429 answers are retried."""

    attempts: int = 4
    """Retries after the first try."""
    backoff: float = 0.25
    """First delay, seconds; doubles each retry."""
    max_backoff: float = 4.0
    """Cap on one delay (also on a server's Retry-After)."""


class _Fatal(Exception):
    """Stop following with this message."""


@dataclass(frozen=True)
class _Job:
    unit: Unit
    url: str
    init_url: str | None
    backlog: bool


def describe_refusal(url: str, response: httpx.Response) -> str:
    """A clear message for a 4xx answer to ``url``."""
    status = response.status_code
    detail = _detail(response)
    path = httpx.URL(url).path
    parts = path.strip("/").split("/")
    ticketless = len(parts) == 3 and parts[0] == "hls" and parts[2].endswith(".m3u8")
    if status == 401 and ticketless:
        space = parts[1]
        return (
            f"space {space!r} is ticketed: {path} needs a ticket. Join the space "
            f"(POST /api/spaces/{space}/join with a listen grant) and follow the playlist_url it "
            f"returns (/hls/{space}/t/<ticket>/{parts[2]}). Server said: {status} {detail}"
        )
    if status == 401:
        return f"{url}: not authorised (ticket missing, expired or invalid): {status} {detail}"
    if status == 403:
        return f"{url}: forbidden: {detail}"
    if status in (404, 410):
        return f"{url}: not found: {detail}"
    return f"{url}: HTTP {status}: {detail}"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _Follower:
    def __init__(
        self,
        url: str,
        *,
        seconds: float | None,
        out: Path | None,
        on_part: Callable[[PartReceived], None] | None,
        keep_pcm: bool,
        decode: bool,
        retry: RetryPolicy,
        stop: asyncio.Event,
        clock: Callable[[], float],
        start_buffer: float | None,
    ) -> None:
        self.url = url
        self.seconds = seconds
        self.on_part = on_part
        self.keep_pcm = keep_pcm
        self.decode = decode
        self.retry = retry
        self.stop = stop
        self.clock = clock
        self.start_buffer = start_buffer
        self.out = out
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        common: dict[str, Any] = {
            "http1": True,
            "http2": False,
            "limits": limits,
            "timeout": httpx.Timeout(10.0),
            "follow_redirects": True,
            "headers": {"User-Agent": USER_AGENT},
        }
        self.playlist_http = httpx.AsyncClient(**common)
        self.media_http = httpx.AsyncClient(**common)
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.live = False
        self.blocking_read_timeout = 10.0
        # measurements
        self.media_seconds = 0.0
        self.parts = 0
        self.segments = 0
        self.bytes = 0
        self.playlist_requests = 0
        self.errors = 0
        self.skipped = 0
        self.latencies: list[float] = []
        self.playout_latencies: list[float] = []
        self.playout: PlayoutClock | None = None
        self.playlist_ended = False
        self.consumed_to_end = False
        self.failure: str | None = None
        self.stopped = "interrupted"
        # decoding
        self.init_url: str | None = None
        self.decoder: FragmentDecoder | None = None
        self.wav: wave.Wave_write | None = None
        self.samples_out = 0
        self.pcm_chunks: list[npt.NDArray[np.int16]] = []
        self.started = 0.0

    # -- HTTP ------------------------------------------------------------------------------------

    async def fetch(
        self, client: httpx.AsyncClient, url: str | httpx.URL, what: str, read_timeout: float
    ) -> httpx.Response:
        """A 2xx or 4xx answer; transport errors, 5xx and 429 are retried with backoff."""
        delay = self.retry.backoff
        problem = ""
        timeout = httpx.Timeout(10.0, read=read_timeout)
        for attempt in range(self.retry.attempts + 1):
            wait = delay
            try:
                response = await client.get(url, timeout=timeout)
            except httpx.HTTPError as exc:
                problem = f"{what} {url}: {type(exc).__name__}: {exc or 'no details'}"
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                problem = f"{what} {url}: HTTP {response.status_code}: {_detail(response)}"
                wait = max(delay, _retry_after(response) or 0.0)
            self.errors += 1
            if attempt == self.retry.attempts:
                break
            logger.warning("%s (retrying in %.2f s)", problem, wait)
            await asyncio.sleep(min(wait, self.retry.max_backoff))
            delay *= 2
        raise _Fatal(f"{problem} (gave up after {self.retry.attempts + 1} tries)")

    async def get_playlist(self, url: str | httpx.URL) -> tuple[httpx.Response, MediaPlaylist]:
        response = await self.fetch(self.playlist_http, url, "playlist", self.blocking_read_timeout)
        if response.status_code >= 400:
            raise _Fatal(describe_refusal(str(url), response))
        self.playlist_requests += 1
        try:
            return response, parse_media_playlist(response.text)
        except PlaylistError as exc:
            raise _Fatal(f"{url}: {exc}") from exc

    async def first_playlist(self) -> MediaPlaylist:
        response = await self.fetch(self.playlist_http, self.url, "playlist", 10.0)
        if response.status_code >= 400:
            raise _Fatal(describe_refusal(self.url, response))
        self.playlist_requests += 1
        found = variants(response.text)
        if found:  # multivariant: follow the first media playlist
            self.url = str(response.url.join(found[0]))
            logger.info("multivariant playlist: following %s", self.url)
            _, pl = await self.get_playlist(self.url)
            return pl
        try:
            return parse_media_playlist(response.text)
        except PlaylistError as exc:
            raise _Fatal(f"{self.url}: {exc}") from exc

    # -- playlist side ---------------------------------------------------------------------------

    def enqueue(self, pl: MediaPlaylist, units: tuple[Unit, ...], backlog: bool) -> None:
        base = httpx.URL(self.url)
        init_url = str(base.join(pl.map_uri)) if pl.map_uri else None
        for unit in units:
            self.queue.put_nowait(_Job(unit, str(base.join(unit.uri)), init_url, backlog))

    async def produce(self, pl: MediaPlaylist) -> None:
        try:
            if not self.live:
                self.enqueue(pl, vod_plan(pl).units, backlog=True)
                self.playlist_ended = True
                return
            position = start_position(pl, None)
            backlog = True
            while True:
                step = plan(pl, position)
                self.skipped += step.skipped
                self.enqueue(pl, step.units, backlog)
                backlog = False
                position = step.next_position
                if pl.ended:
                    self.playlist_ended = True
                    return
                pl, position = await self.reload(pl, position, bool(step.units))
        except _Fatal as exc:
            self.failure = str(exc)
            self.stop.set()
        finally:
            self.queue.put_nowait(None)

    async def reload(
        self, pl: MediaPlaylist, position: Position, progressed: bool
    ) -> tuple[MediaPlaylist, Position]:
        """Next playlist: a blocking reload for ``position`` (or a plain poll)."""
        if not pl.can_block_reload or not progressed:
            # No blocking reload (or a server that answered without the asked-for part):
            # poll at the part (or half the target) duration.
            await asyncio.sleep(pl.part_target or pl.target_duration / 2)
        self.blocking_read_timeout = 3.0 * pl.target_duration + 5.0
        url = httpx.URL(self.url)
        if pl.can_block_reload:
            params: dict[str, str] = {"_HLS_msn": str(position[0])}
            if pl.part_target is not None:
                params["_HLS_part"] = str(position[1])
            url = url.copy_merge_params(params)
        response, new = await self._reload_once(url)
        if response.status_code == 400:  # asked for something the server will not have: rejoin
            self.errors += 1
            logger.warning("blocking reload %s refused (%s): rejoining", url, _detail(response))
            _, new = await self.get_playlist(self.url)
            return new, start_position(new, None)
        assert new is not None
        edge = live_edge(new)
        if edge[0] + 2 < position[0]:
            logger.warning("playlist jumped (server restarted?): rejoining at the live edge")
            self.skipped += 1
            return new, start_position(new, None)
        return new, position

    async def _reload_once(self, url: httpx.URL) -> tuple[httpx.Response, MediaPlaylist | None]:
        response = await self.fetch(self.playlist_http, url, "playlist", self.blocking_read_timeout)
        if response.status_code == 400:
            return response, None
        if response.status_code >= 400:
            raise _Fatal(describe_refusal(str(url), response))
        self.playlist_requests += 1
        try:
            return response, parse_media_playlist(response.text)
        except PlaylistError as exc:
            raise _Fatal(f"{url}: {exc}") from exc

    # -- media side ------------------------------------------------------------------------------

    async def consume(self) -> None:
        try:
            while not self.stop.is_set():
                job = await self.queue.get()
                if job is None or self.stop.is_set():
                    if job is None and self.failure is None and self.playlist_ended:
                        self.consumed_to_end = True
                        self.stopped = "ended"
                    return
                await self.handle(job)
                if self.seconds is not None and self.media_seconds >= self.seconds - 1e-9:
                    self.stopped = "seconds"
                    return
        except _Fatal as exc:
            self.failure = str(exc)

    async def ensure_init(self, init_url: str | None) -> None:
        if init_url is None or init_url == self.init_url:
            return
        response = await self.fetch(self.media_http, init_url, "init section", 10.0)
        if response.status_code >= 400:
            raise _Fatal(describe_refusal(init_url, response))
        self.bytes += len(response.content)
        self.init_url = init_url
        if self.decode:
            try:
                self.decoder = await asyncio.to_thread(FragmentDecoder, response.content)
            except DecodeError as exc:
                raise _Fatal(f"{init_url}: {exc}") from exc

    async def handle(self, job: _Job) -> None:
        unit = job.unit
        if unit.gap:
            self.skipped += 1
            return
        await self.ensure_init(job.init_url)
        response = await self.fetch(self.media_http, job.url, "media", 10.0)
        received_at = self.clock()
        if response.status_code in (404, 410):  # expired before we got to it
            self.errors += 1
            self.skipped += 1
            logger.warning("%s", describe_refusal(job.url, response))
            return
        if response.status_code >= 400:
            raise _Fatal(describe_refusal(job.url, response))
        data = response.content
        self.parts += 1
        self.segments += unit.part is None
        self.bytes += len(data)
        self.media_seconds += unit.duration
        latency: float | None = None
        playout_latency: float | None = None
        buffered = 0.0
        if self.live and self.playout is not None:
            if unit.capture_start is not None and not job.backlog:
                latency = arrival_latency(received_at, unit.capture_start, unit.duration)
                self.latencies.append(latency)
            for played in self.playout.add(received_at, unit.duration, unit.capture_start):
                if played.latency is not None:
                    self.playout_latencies.append(played.latency)
                    playout_latency = played.latency
            buffered = self.playout.buffered(received_at)
        if self.decode:
            await asyncio.to_thread(self.sink, data, unit.duration)
        if self.on_part is not None:
            self.on_part(
                PartReceived(
                    msn=unit.msn,
                    part=unit.part,
                    uri=job.url,
                    size=len(data),
                    duration=unit.duration,
                    received_at=received_at,
                    latency=latency,
                    playout_latency=playout_latency,
                    buffered=buffered,
                    stalls=self.playout.stalls if self.playout else 0,
                )
            )

    def sink(self, data: bytes, duration: float) -> None:
        """Decode one fragment and write/keep its PCM (worker thread)."""
        if self.decoder is None:
            self.errors += 1
            return
        try:
            pcm = self.decoder.decode(data)
        except DecodeError as exc:
            logger.warning("%s: inserting %.3f s of silence", exc, duration)
            self.errors += 1
            pcm = np.zeros(round(duration * SAMPLE_RATE), dtype=np.int16)
        self.emit(pcm)

    def emit(self, pcm: npt.NDArray[np.int16]) -> None:
        if self.seconds is not None:
            room = max(0, round(self.seconds * SAMPLE_RATE) - self.samples_out)
            pcm = pcm[:room]
        if not pcm.size:
            return
        self.samples_out += pcm.size
        if self.wav is not None:
            self.wav.writeframes(pcm.astype("<i2", copy=False).tobytes())
        if self.keep_pcm:
            self.pcm_chunks.append(pcm)

    # -- running ---------------------------------------------------------------------------------

    def open_wav(self) -> None:
        if self.out is None:
            return
        try:
            wav = wave.open(str(self.out), "wb")  # noqa: SIM115 - closed in close_outputs
        except OSError as exc:
            raise ListenError(f"cannot write {self.out}: {exc}") from exc
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        self.wav = wav

    def close_outputs(self) -> None:
        if self.decoder is not None:
            try:
                self.emit(self.decoder.flush())
            except DecodeError as exc:
                logger.warning("%s", exc)
        if self.wav is not None:
            self.wav.close()
            self.wav = None

    async def run(self) -> ListenReport:
        self.started = self.clock()
        scheme = ""
        try:
            scheme = httpx.URL(self.url).scheme
        except httpx.InvalidURL:
            pass
        if scheme not in ("http", "https"):
            raise ListenError(f"not an http(s) URL: {self.url!r}")
        try:
            self.open_wav()
            try:
                pl = await self.first_playlist()
            except _Fatal as exc:
                self.stopped = "error"
                raise ListenError(str(exc), self.report()) from None
            await self.follow(pl)
        finally:
            await asyncio.to_thread(self.close_outputs)
            await self.playlist_http.aclose()
            await self.media_http.aclose()
        report = self.report()
        if self.failure is not None:
            raise ListenError(self.failure, report)
        return report

    async def follow(self, pl: MediaPlaylist) -> None:
        self.live = not pl.is_vod
        if self.live:
            start = self.start_buffer if self.start_buffer is not None else pl.hold_back_seconds()
            self.playout = PlayoutClock(start, pl.part_target or pl.target_duration)
        deadline: float | None = None
        if self.seconds is not None and self.live:
            deadline = self.seconds + pl.hold_back_seconds() + max(10.0, 3 * pl.target_duration)
        producer = asyncio.create_task(self.produce(pl))
        consumer = asyncio.create_task(self.consume())
        stopper = asyncio.create_task(self.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {consumer, stopper}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                self.stopped = "deadline"
            elif consumer not in done and self.failure is None:
                self.stopped = "interrupted"
        finally:
            for task in (producer, consumer, stopper):
                task.cancel()
            results = await asyncio.gather(producer, consumer, stopper, return_exceptions=True)
        for result in results:  # a bug, not a network problem: do not swallow it
            if isinstance(result, Exception):
                raise result
        if self.failure is not None:
            self.stopped = "error"
        if self.playout is not None:
            now = self.clock()
            for played in self.playout.finish(now, ended=self.consumed_to_end):
                if played.latency is not None:
                    self.playout_latencies.append(played.latency)

    def report(self) -> ListenReport:
        lat = summarize(self.latencies)
        play = summarize(self.playout_latencies)
        clock = self.playout
        pcm: npt.NDArray[np.int16] | None = None
        if self.keep_pcm:
            pcm = (
                np.concatenate(self.pcm_chunks) if self.pcm_chunks else np.zeros(0, dtype=np.int16)
            )
        startup = None
        if clock is not None and clock.started_at is not None:
            startup = clock.started_at - self.started
        return ListenReport(
            url=self.url,
            live=self.live,
            seconds=round(self.media_seconds, 6),
            wall_seconds=round(self.clock() - self.started, 3),
            parts=self.parts,
            segments=self.segments,
            bytes=self.bytes,
            playlist_requests=self.playlist_requests,
            latency_p50=lat.p50,
            latency_p95=lat.p95,
            latency_max=lat.max,
            playout_latency_p50=play.p50,
            playout_latency_p95=play.p95,
            playout_latency_max=play.max,
            startup_seconds=startup,
            stalls=clock.stalls if clock else 0,
            stall_seconds=round(clock.stall_seconds, 6) if clock else 0.0,
            errors=self.errors,
            skipped=self.skipped,
            ended=self.consumed_to_end,
            stopped=self.stopped,
            pcm=pcm,
        )


async def follow(
    url: str,
    *,
    seconds: float | None,
    out: Path | None = None,
    on_part: Callable[[PartReceived], None] | None = None,
    keep_pcm: bool = False,
    decode: bool | None = None,
    retry: RetryPolicy | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    start_buffer: float | None = None,
) -> ListenReport:
    """Follow ``url`` (a live LL-HLS playlist, or a finished/replay one) like a low-latency
    player and measure it.

    Stops at EXT-X-ENDLIST, once ``seconds`` of audio were received, when ``stop`` is set, or
    (live, with ``seconds``) at the latest ``seconds`` + hold-back + max(10 s, 3 target
    durations) of wall time. Audio is decoded only if ``out`` (a WAV file, mono s16 48 kHz,
    trimmed to ``seconds``) or ``keep_pcm`` asks for it, or ``decode=True``. ``on_part`` is called
    on the event loop for every part received. ``start_buffer`` overrides the simulated
    player's start threshold (default PART-HOLD-BACK). ``clock`` must be wall time (it is compared
    with PROGRAM-DATE-TIME).

    Raises :class:`ListenError` (with the partial report, if any) when the playlist cannot be
    fetched, is refused (401/403/404), or requests keep failing after the retries.
    """
    if seconds is not None and seconds <= 0:
        raise ValueError("seconds must be positive")
    do_decode = decode if decode is not None else (out is not None or keep_pcm)
    follower = _Follower(
        url,
        seconds=seconds,
        out=out,
        on_part=on_part,
        keep_pcm=keep_pcm,
        decode=do_decode,
        retry=retry or RetryPolicy(),
        stop=stop or asyncio.Event(),
        clock=clock,
        start_buffer=start_buffer,
    )
    return await follower.run()
