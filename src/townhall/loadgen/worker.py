"""One load-generator process: an event loop running many simulated LL-HLS listeners.

Each listener joins once (its own ticket), then follows hls.js's low-latency cadence on one
keep-alive connection bound to its own 127.x source address: a blocking playlist reload for
the next part (``_HLS_msn``/``_HLS_part``), then a GET of that part; the init section once.
Every second the worker sends a snapshot of its counters to the parent over a queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from . import stats
from .client import Connection, HttpError, Origin, Response, connect, fetch
from .hls import hint_position, scan, segments
from .player import Playout, absolute_part, part_position, start_position

logger = logging.getLogger(__name__)

KINDS = ("join", "playlist", "blocking", "init", "part", "segment")
"""Request kinds: join POST, plain playlist, blocking playlist reload, init section, part,
whole segment (standard-HLS mode)."""
MODES = ("ll-hls", "hls", "std")
"""Listener cadences: hls.js low-latency (parts, blocking reloads); standard HLS over the
LL-HLS playlist (whole 2 s segments, a plain playlist reload once per segment, like non-LL
players); standard HLS over the standard variant (``std_playlist_url`` of the join answer:
``std.m3u8`` and its 4 s ``std{n}.m4s`` segments, what an nginx edge serves)."""
HOLD_BACK_SEGMENTS = 3
"""Standard HLS: a player starts this many segments behind the newest (HOLD-BACK = 3 x
target duration)."""
RECENT_MEDIA = 30.0
"""A listener counts as distinct-and-present if it received media in the last 30 s."""


class Outbox(Protocol):
    """Where snapshots go (a ``multiprocessing.Queue`` in production, a list in tests)."""

    def put(self, item: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Plan:
    """What one worker does."""

    worker: int
    """Worker number."""
    space: str
    """Space id."""
    server: str
    """API base URL (joins)."""
    edge: str | None
    """Edge base URL replacing the host of the playlist URL, if any."""
    listeners: tuple[int, ...]
    """Global listener numbers this worker runs."""
    total_listeners: int
    """All listeners across workers (for the ramp schedule)."""
    sources: tuple[str, ...]
    """Source addresses, one per listener number (modulo); empty: no binding."""
    t0: float
    """Wall-clock (``time.time()``) start of the run."""
    ramp: float
    """Seconds over which listeners start, evenly spaced."""
    duration: float
    """Seconds from ``t0`` to the end of the run (hard stop)."""
    timeout: float = 10.0
    """Per-request deadline (a blocking reload may be held up to 3 target durations)."""
    warmup: float = 2.0
    """Seconds after a listener's playback start whose stalls count as start-up stalls."""
    interval: float = 1.0
    """Seconds between snapshots."""
    use_uvloop: bool = True
    """Run on uvloop if it is installed."""
    mode: str = "ll-hls"
    """``ll-hls`` (parts, blocking reloads) or ``hls`` (whole segments), see :data:`MODES`."""


@dataclass
class Counters:
    """Counters of one worker since the last snapshot (gauges are kept separately)."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[int]] = field(default_factory=lambda: {k: stats.empty() for k in KINDS})
    bytes: int = 0
    stalls: int = 0
    warmup_stalls: int = 0
    stalled_seconds: float = 0.0
    resyncs: int = 0
    joins: int = 0
    queued: int = 0
    """Waiting-room answers (202) received while joining."""

    def observe(self, kind: str, seconds: float, size: int) -> None:
        self.requests[kind] += 1
        self.latency[kind][stats.bucket(seconds)] += 1
        self.bytes += size


class Worker:
    """Runs the listeners of one :class:`Plan` and reports to an :class:`Outbox`."""

    def __init__(self, plan: Plan, outbox: Outbox) -> None:
        self.plan = plan
        self.outbox = outbox
        self.counters = Counters()
        self.players: dict[int, Playout] = {}
        self.active = 0
        self.started = 0
        self.joined = 0
        self.failed_joins = 0
        self.end = plan.t0 + plan.duration
        self._api = Origin.from_url(plan.server)
        self._edge = Origin.from_url(plan.edge) if plan.edge else None
        self._cpu0 = time.process_time()
        self._lag: list[int] = stats.empty()

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        tasks: list[asyncio.Task[None]] = []
        reporter = asyncio.create_task(self._report_loop())
        lag = asyncio.create_task(self._lag_loop())
        n = self.plan.total_listeners
        try:
            for number in self.plan.listeners:
                at = self.plan.t0 + self.plan.ramp * number / max(1, n)
                delay = at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.time() >= self.end:
                    break
                tasks.append(asyncio.create_task(self._listener(number)))
            remaining = self.end - time.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
        finally:
            for t in (*tasks, reporter, lag):
                t.cancel()
            await asyncio.gather(*tasks, reporter, lag, return_exceptions=True)
        final = self._final(time.time())
        self.outbox.put(final)
        return final

    async def _listener(self, number: int) -> None:
        sources = self.plan.sources
        source = sources[number % len(sources)] if sources else None
        self.started += 1
        conns: list[Connection] = []
        try:
            base = await self._join(source, conns)
            if base is None:
                return
            self.active += 1
            try:
                if self.plan.mode == "hls":
                    await self._play_segments(number, source, base, conns, "live.m3u8", b"seg")
                elif self.plan.mode == "std":
                    await self._play_segments(number, source, base, conns, "std.m3u8", b"std")
                else:
                    await self._play(number, source, base, conns)
            finally:
                self.active -= 1
        finally:
            for c in conns:
                c.close()

    async def _request(
        self,
        kind: str,
        origin: Origin,
        source: str | None,
        conns: list[Connection],
        method: str,
        target: str,
        body: bytes = b"",
    ) -> Response | None:
        """One request on this listener's connection to ``origin`` (reconnecting if needed).
        Returns the response (any status) or None after a transport error (counted)."""
        conn = next((c for c in conns if c.origin == origin and c.usable), None)
        started = time.perf_counter()
        try:
            if conn is None:
                for c in [c for c in conns if c.origin == origin]:
                    conns.remove(c)
                conn = await connect(origin, source, self.plan.timeout)
                conns.append(conn)
            ctype = "application/json" if body else ""
            response = await fetch(conn, method, target, self.plan.timeout, body, ctype)
        except HttpError as exc:
            self.counters.errors[f"{kind}:{exc.kind}"] += 1
            return None
        self.counters.observe(kind, time.perf_counter() - started, len(response.body))
        if response.status >= 400:
            self.counters.errors[f"{kind}:{response.status}"] += 1
        return response

    async def _join(self, source: str | None, conns: list[Connection]) -> tuple[Origin, str] | None:
        target = f"/api/spaces/{self.plan.space}/join"
        body = b""
        while time.time() < self.end:
            r = await self._request("join", self._api, source, conns, "POST", target, body)
            if r is not None and r.status == 202:  # the waiting room: keep our place, poll
                try:
                    wait = json.loads(r.body)
                    body = json.dumps({"queue_ticket": wait["queue_ticket"]}).encode()
                    pause = float(wait.get("poll_after") or 1.0)
                except (ValueError, KeyError, TypeError):
                    self.counters.errors["join:bad_body"] += 1
                    pause = 1.0
                self.counters.queued += 1
                await asyncio.sleep(pause * (0.9 + 0.2 * random.random()))
                continue
            if r is not None and r.status == 200:
                try:
                    key = "std_playlist_url" if self.plan.mode == "std" else "playlist_url"
                    url = str(json.loads(r.body)[key])
                except (ValueError, KeyError, TypeError):
                    self.counters.errors["join:bad_body"] += 1
                    self.failed_joins += 1
                    return None
                self.joined += 1
                self.counters.joins += 1
                parts = urlsplit(url)
                origin = self._edge or Origin.from_url(f"{parts.scheme}://{parts.netloc}")
                path = parts.path
                return origin, path[: path.rfind("/") + 1]
            if r is not None and r.status < 500 and r.status not in (408, 429):
                self.failed_joins += 1
                return None
            await asyncio.sleep(1.0 + random.random())  # 429/503/transport: back off, retry
        self.failed_joins += 1
        return None

    async def _play(
        self, number: int, source: str | None, base: tuple[Origin, str], conns: list[Connection]
    ) -> None:
        origin, prefix = base
        live = prefix + "live.m3u8"
        player: Playout | None = None
        init_loaded = False
        pps = 4
        next_pos: int | None = None
        last_listed = -1
        while time.time() < self.end:
            if next_pos is None:  # (re)start: plain reload, init once, start 3 parts behind
                r = await self._request("playlist", origin, source, conns, "GET", live)
                if r is None or r.status != 200:
                    await self._backoff()
                    continue
                view = scan(r.body)
                if view.last_part is None or view.first_part is None:
                    await self._backoff()
                    continue
                pps = view.parts_per_segment
                if player is None:
                    player = Playout(view.part_target, self.plan.warmup)
                    self.players[number] = player
                else:
                    player.restart()
                if not init_loaded:
                    r = await self._request(
                        "init", origin, source, conns, "GET", prefix + "init.mp4"
                    )
                    if r is None or r.status != 200:
                        await self._backoff()
                        continue
                    init_loaded = True
                last_listed = absolute_part(*view.last_part, pps)
                next_pos = start_position(last_listed, absolute_part(*view.first_part, pps))
            msn, idx = part_position(next_pos, pps)
            if next_pos > last_listed:  # blocking reload for the next part
                target = f"{live}?_HLS_msn={msn}&_HLS_part={idx}"
                r = await self._request("blocking", origin, source, conns, "GET", target)
                if r is None or r.status != 200:
                    if r is not None and r.status == 400:  # fell out of range: start again
                        self.counters.resyncs += 1
                        next_pos = None
                    await self._backoff()
                    continue
                hint = hint_position(r.body)
                if hint is not None:
                    last_listed = absolute_part(*hint, pps) - 1
                if next_pos > last_listed:
                    self.counters.errors["blocking:not_listed"] += 1
                    await self._backoff()
                    continue
            target = f"{prefix}part{msn}.{idx}.m4s"
            r = await self._request("part", origin, source, conns, "GET", target)
            if r is None or r.status != 200:
                if r is not None and r.status == 404:  # expired from the window: start again
                    self.counters.resyncs += 1
                    next_pos = None
                await self._backoff()
                continue
            assert player is not None
            stall = player.received(next_pos, time.time())
            if stall is not None:
                if stall.during_warmup:
                    self.counters.warmup_stalls += 1
                else:
                    self.counters.stalls += 1
                self.counters.stalled_seconds += stall.duration
            next_pos += 1

    async def _play_segments(
        self,
        number: int,
        source: str | None,
        base: tuple[Origin, str],
        conns: list[Connection],
        playlist: str,
        stem: bytes,
    ) -> None:
        """Standard HLS: a plain playlist reload once per segment duration (half of it when
        nothing new was listed), init once, then every new complete segment in order, starting
        :data:`HOLD_BACK_SEGMENTS` behind the newest."""
        origin, prefix = base
        live = prefix + playlist
        player: Playout | None = None
        init_loaded = False
        next_msn: int | None = None
        while time.time() < self.end:
            started = time.time()
            r = await self._request("playlist", origin, source, conns, "GET", live)
            if r is None or r.status != 200:
                await self._backoff()
                continue
            view = segments(r.body, stem)
            if view.first is None or view.last is None:
                await self._backoff()
                continue
            if player is None:
                player = Playout(view.duration, self.plan.warmup)
                self.players[number] = player
            if not init_loaded:
                r = await self._request("init", origin, source, conns, "GET", prefix + "init.mp4")
                if r is None or r.status != 200:
                    await self._backoff()
                    continue
                init_loaded = True
            if next_msn is None or next_msn < view.first:
                if next_msn is not None:  # fell behind the window: start again
                    self.counters.resyncs += 1
                    player.restart()
                next_msn = max(view.first, view.last - HOLD_BACK_SEGMENTS + 1)
            fetched = False
            while next_msn <= view.last and time.time() < self.end:
                target = f"{prefix}{stem.decode()}{next_msn}.m4s"
                r = await self._request("segment", origin, source, conns, "GET", target)
                if r is None or r.status != 200:
                    await self._backoff()
                    break
                stall = player.received(next_msn, time.time())
                if stall is not None:
                    if stall.during_warmup:
                        self.counters.warmup_stalls += 1
                    else:
                        self.counters.stalls += 1
                    self.counters.stalled_seconds += stall.duration
                next_msn += 1
                fetched = True
            wait = view.duration if fetched else view.duration / 2
            await asyncio.sleep(max(0.0, started + wait - time.time()))

    async def _backoff(self) -> None:
        await asyncio.sleep(0.25 + 0.5 * random.random())

    # -- reporting ---------------------------------------------------------------------------

    async def _lag_loop(self) -> None:
        step = 0.05
        while True:
            before = time.perf_counter()
            await asyncio.sleep(step)
            self._lag[stats.bucket(max(0.0, time.perf_counter() - before - step))] += 1

    async def _report_loop(self) -> None:
        nxt = self.plan.t0
        while True:
            nxt += self.plan.interval
            await asyncio.sleep(max(0.0, nxt - time.time()))
            self.outbox.put(self._snapshot(time.time()))

    def _snapshot(self, now: float) -> dict[str, Any]:
        c, self.counters = self.counters, Counters()
        lag, self._lag = self._lag, stats.empty()
        cpu = time.process_time()
        snap = {
            "type": "tick",
            "worker": self.plan.worker,
            "t": now - self.plan.t0,
            "active": self.active,
            "started": self.started,
            "joined": self.joined,
            "requests": dict(c.requests),
            "errors": dict(c.errors),
            "latency": c.latency,
            "bytes": c.bytes,
            "stalls": c.stalls,
            "warmup_stalls": c.warmup_stalls,
            "stalled_seconds": c.stalled_seconds,
            "resyncs": c.resyncs,
            "joins": c.joins,
            "queued": c.queued,
            "cpu_seconds": cpu - self._cpu0,
            "loop_lag": lag,
        }
        self._cpu0 = cpu
        return snap

    def _final(self, now: float) -> dict[str, Any]:
        last = self._snapshot(now)
        ended_stalls = 0
        for p in self.players.values():
            s = p.finish(now)
            if s is not None and not s.during_warmup:
                ended_stalls += 1
        recent = sum(
            1
            for p in self.players.values()
            if p.last_received_at is not None and p.last_received_at >= now - RECENT_MEDIA
        )
        last.update(
            {
                "type": "final",
                "distinct_listeners": recent,
                "stalls_at_end": ended_stalls,
                "listeners_started": self.started,
                "listeners_joined": self.joined,
                "failed_joins": self.failed_joins,
                "listeners_with_media": sum(1 for p in self.players.values() if p.parts),
                "parts_received": sum(p.parts for p in self.players.values()),
                "parts_skipped": sum(p.skipped for p in self.players.values()),
                "stalls_total": sum(p.stalls for p in self.players.values()),
                "listeners_stalled": sum(1 for p in self.players.values() if p.stalls),
                "warmup_stalls_total": sum(p.warmup_stalls for p in self.players.values()),
            }
        )
        return last


class LinesOutbox:
    """Snapshots as JSON lines on a text stream (the worker's stdout)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def put(self, item: dict[str, Any]) -> None:
        self.stream.write(json.dumps(item, separators=(",", ":")) + "\n")
        self.stream.flush()


def plan_to_json(plan: Plan) -> str:
    return json.dumps(asdict(plan))


def plan_from_json(text: str) -> Plan:
    data = json.loads(text)
    data["listeners"] = tuple(data["listeners"])
    data["sources"] = tuple(data["sources"])
    return Plan(**data)


def run_worker(plan: Plan, outbox: Outbox) -> None:
    """Process entry point: raise the file limit, pick the loop, run until the plan ends."""
    _raise_nofile()
    runner: Any = asyncio.run
    if plan.use_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # optional speed-up
            pass
    try:
        runner(Worker(plan, outbox).run())
    except Exception as exc:  # report instead of dying silently
        logger.exception("worker %d failed", plan.worker)
        outbox.put({"type": "crash", "worker": plan.worker, "error": repr(exc)})


def _raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    """``python -m townhall.loadgen.worker`` with the plan as JSON on stdin."""
    import sys

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plan = plan_from_json(sys.stdin.read())
    run_worker(plan, LinesOutbox(sys.stdout))


if __name__ == "__main__":
    main()
